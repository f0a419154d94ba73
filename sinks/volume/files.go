package volume

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/mc-broker/mc-broker/broker/credential"
)

// fileHeader is a file's tar header as the engine sends it: its mode, and
// (from Docker, not Podman) its owner.
type fileHeader = tar.Header

// readFile reads the file name beside the login through helper container
// id. Only a regular file is read, and at most credential.MaxSize+1 bytes
// of it, so that an oversized copy is judged broken rather than read whole.
func (s *Sink) readFile(ctx context.Context, c *client.Client, id, name string) ([]byte, *fileHeader, error) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	rel := path.Join(s.o.Path, name)
	res, err := c.CopyFromContainer(ctx, id, client.CopyFromContainerOptions{SourcePath: s.pathOf(name)})
	if cerrdefs.IsNotFound(err) {
		return nil, nil, fmt.Errorf("no %s in volume %s: %w", rel, s.o.Volume, fs.ErrNotExist)
	}
	if err != nil {
		return nil, nil, err
	}
	defer res.Content.Close()
	tr := tar.NewReader(res.Content)
	h, err := tr.Next()
	if err != nil {
		return nil, nil, fmt.Errorf("the engine sent a broken archive: %w", err)
	}
	switch {
	case h.Typeflag == tar.TypeDir:
		return nil, nil, fmt.Errorf("%s is a directory, not a file: remove it from the volume", rel)
	case h.Typeflag == tar.TypeSymlink:
		return nil, nil, fmt.Errorf("%s is a symlink: remove it from the volume and let mc-broker write a real file", rel)
	case h.Typeflag != tar.TypeReg:
		return nil, nil, fmt.Errorf("%s is not a regular file", rel)
	}
	data, err := io.ReadAll(io.LimitReader(tr, credential.MaxSize+1))
	if err != nil {
		return nil, nil, err
	}
	return data, h, nil
}

// ownedRight reports whether the login's mode is 0600 and, where the engine
// says (Docker; Podman's archives name the reading container's user
// instead), whether its owner is UID/GID.
func (s *Sink) ownedRight(h *fileHeader, podman bool) bool {
	if h == nil || h.FileInfo().Mode().Perm() != 0o600 {
		return false
	}
	return podman || (h.Uid == s.uid() && h.Gid == s.gid())
}

// writeFiles puts files into the volume through helper container id as a
// tar holding the volume root and the directories down to Path (0700) and
// the files (0600), all owned by UID/GID.
//
// Docker unpacks an archive into a created container's volumes, but skips
// an entry for the destination directory itself: the archive is unpacked
// at the container's root, with the mount point as its first entry, which
// is how the volume root gets its mode and owner. Podman mounts volumes
// only when a container starts, so an archive unpacked at the root lands in
// the container's own layer; but it resolves a destination inside a volume
// mount to the volume: there the archive is unpacked at the mount point,
// with "./" as the root's entry.
func (s *Sink) writeFiles(ctx context.Context, c *client.Client, id string, files []file, podman bool) error {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	now := time.Now()
	root, dest := strings.TrimPrefix(mountPoint, "/")+"/", "/"
	if podman && !dockerStyleOnPodman {
		root, dest = "./", mountPoint
	}
	dirs := []string{root}
	if s.o.Path != "/" {
		parts := strings.Split(strings.TrimPrefix(s.o.Path, "/"), "/")
		for i := range parts {
			dirs = append(dirs, root+strings.Join(parts[:i+1], "/")+"/")
		}
	}
	for _, d := range dirs {
		if err := tw.WriteHeader(&tar.Header{
			Typeflag: tar.TypeDir, Name: d, Mode: 0o700,
			Uid: s.uid(), Gid: s.gid(), ModTime: now, Format: tar.FormatPAX,
		}); err != nil {
			return err
		}
	}
	for _, f := range files {
		name := root + strings.TrimPrefix(path.Join(s.o.Path, f.name), "/")
		if err := tw.WriteHeader(&tar.Header{
			Typeflag: tar.TypeReg, Name: name, Mode: 0o600, Size: int64(len(f.data)),
			Uid: s.uid(), Gid: s.gid(), ModTime: now, Format: tar.FormatPAX,
		}); err != nil {
			return err
		}
		if _, err := tw.Write(f.data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	_, err := c.CopyToContainer(ctx, id, client.CopyToContainerOptions{
		DestinationPath: dest,
		Content:         &buf,
	})
	return err
}

// dockerStyleOnPodman makes writes to Podman unpack at the container's
// root as for Docker: what mc-broker did before, for the test that shows
// such a write is caught.
var dockerStyleOnPodman = false

// NotWrittenError is a write the engine accepted but that a fresh helper
// container does not find in the volume: what Podman did before mc-broker
// wrote at the mount point. It is reported as a failed copy, never as
// written.
type NotWrittenError struct {
	Volume string
	Path   string // inside the volume
	Found  string // what the fresh container found instead
}

func (e *NotWrittenError) Error() string {
	return fmt.Sprintf("the engine accepted the write of %s, but a fresh container finds %s in volume %s: the copy is not in the volume (please report this with `docker version` or `podman version`)", e.Path, e.Found, e.Volume)
}

// verify reads files back through a fresh helper container, one that
// played no part in the write, and fails unless each is in the volume with
// the bytes written and mode 0600 (and, on Docker, the owner).
func (s *Sink) verify(ctx context.Context, c *client.Client, files []file, podman bool) error {
	if len(files) == 0 {
		return nil
	}
	id, err := s.o.Shared.createHelper(ctx, c, s.o.Volume, "copy")
	if err != nil {
		return err
	}
	defer removeHelper(ctx, c, id)
	for _, f := range files {
		rel := path.Join(s.o.Path, f.name)
		got, h, err := s.readFile(ctx, c, id, f.name)
		switch {
		case cerrdefs.IsNotFound(err) || isNotExist(err):
			return &NotWrittenError{Volume: s.o.Volume, Path: rel, Found: "no file"}
		case err != nil:
			return err
		case !bytes.Equal(got, f.data):
			return &NotWrittenError{Volume: s.o.Volume, Path: rel, Found: fmt.Sprintf("other bytes (%d, not %d)", len(got), len(f.data))}
		case !s.ownedRight(h, podman):
			return &NotWrittenError{Volume: s.o.Volume, Path: rel, Found: fmt.Sprintf("mode %04o owner %d:%d, not 0600 %d:%d", h.FileInfo().Mode().Perm(), h.Uid, h.Gid, s.uid(), s.gid())}
		}
	}
	return nil
}

func isNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }
