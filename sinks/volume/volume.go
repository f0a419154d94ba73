// Package volume is the Docker named volume sink: a copy of a login kept as
// one file in a named volume that containers mount as the CLI's config
// directory.
//
// It writes without running anything: a helper container is created (never
// started) from an empty image with the volume mounted and networking
// disabled, the file goes in with CopyToContainer as a tar whose headers
// carry mode 0600 and the owner, and the container is removed. Reads use
// CopyFromContainer the same way. This works the same against Docker
// Desktop, where volumes live inside a VM, and needs no image pull.
//
// The engine replaces a file non-atomically (it removes the old file, then
// writes the new one), so a container reading at that instant can find no
// file; the CLIs treat that as "no login yet" for one read and the next
// read finds the new file. docs/VOLUMES.md has the details.
package volume

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/mc-broker/mc-broker/broker"
	"github.com/mc-broker/mc-broker/broker/credential"
	"github.com/mc-broker/mc-broker/broker/filelock"
	"github.com/mc-broker/mc-broker/sinks/volume/engine"
)

// DefaultLockTimeout is how long Update waits for mc-broker's own lock.
const DefaultLockTimeout = 10 * time.Second

// ValidName matches the volume names Docker accepts.
var ValidName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]+$`)

// Options describe one volume copy.
type Options struct {
	// Volume is the named volume; created (labelled) when missing.
	Volume string
	// Path is the directory inside the volume that holds the file, "/" or
	// "" for the volume root.
	Path string
	// FileName is the login file's name: ".credentials.json", "auth.json",
	// "oauth_creds.json".
	FileName string
	// UID and GID own the file and the directories down to it (0 when
	// unset: root, the user most containers run as).
	UID, GID *int
	// LockDir holds mc-broker's own lock file per volume and path, so two
	// runs on this host never interleave a read, decide and write.
	// Required by Update.
	LockDir     string
	LockTimeout time.Duration
	// Shared is the run's engine handle, shared by all volume copies.
	Shared *Shared
	// Companions are non-secret files (by name) written beside the login
	// when absent (credential.Companions). They are checked and written
	// through the helper container Update uses anyway, so they cost no
	// container of their own. A file the container wrote is never replaced;
	// the engine cannot create-if-absent, so one a container writes in the
	// instant between the check and the copy could be.
	Companions map[string][]byte
}

// Sink is one volume copy. It implements broker.Sink, broker.ChangePoller
// and broker.Closer.
type Sink struct {
	o Options

	// kept is the helper container the last Read made, kept for the
	// Update that usually follows in the same pass (a pass reads every
	// copy, then writes those that need it): a changed copy then costs
	// one container, not two. Update and EndPass remove it.
	keptMu sync.Mutex
	kept   string
	keptOn *engine.Engine

	// The poll helper: one created-never-started container kept for
	// Changed, so that polling with nothing changed creates no container.
	pollMu  sync.Mutex
	pollID  string
	pollOn  *engine.Engine
	last    container.PathStat
	lastErr bool // the previous stat found no file
	polled  bool
}

var (
	_ broker.Sink         = (*Sink)(nil)
	_ broker.ChangePoller = (*Sink)(nil)
	_ broker.Closer       = (*Sink)(nil)
)

// New returns the sink for o. Options are checked when the sink is used.
func New(o Options) *Sink {
	o.Path = cleanPath(o.Path)
	return &Sink{o: o}
}

func cleanPath(p string) string {
	if p == "" {
		return "/"
	}
	return path.Clean("/" + p)
}

// Location is how people see the copy: `volume NAME:/path/file`.
func (s *Sink) Location() string {
	return "volume " + s.o.Volume + ":" + path.Join(s.o.Path, s.o.FileName)
}

// containerPath is the file's path inside a helper container.
func (s *Sink) containerPath() string {
	return path.Join(mountPoint, s.o.Path, s.o.FileName)
}

// VolumeError is a failure of one volume copy, naming the copy. It wraps
// the cause: *engine.UnreachableError, *engine.TooOldError, or the engine's
// answer.
type VolumeError struct {
	Volume string
	Op     string
	Err    error
}

func (e *VolumeError) Error() string {
	var ue *engine.UnreachableError
	var te *engine.TooOldError
	if errors.As(e.Err, &ue) || errors.As(e.Err, &te) {
		return e.Err.Error()
	}
	return "volume " + e.Volume + ": " + e.Op + ": " + e.Err.Error()
}

func (e *VolumeError) Unwrap() error { return e.Err }

func (s *Sink) check() error {
	if s.o.Shared == nil {
		return errors.New("volume copy " + s.o.Volume + ": no engine handle configured")
	}
	if !ValidName.MatchString(s.o.Volume) {
		return fmt.Errorf("%q is not a valid volume name (letters, digits, '_', '.', '-'; at least two characters)", s.o.Volume)
	}
	if s.o.FileName == "" || strings.ContainsRune(s.o.FileName, '/') || s.o.FileName == "." || s.o.FileName == ".." {
		return fmt.Errorf("copy file name %q is not a plain file name", s.o.FileName)
	}
	if strings.Contains(s.o.Path, "..") {
		return fmt.Errorf("path %q inside volume %s must not contain ..", s.o.Path, s.o.Volume)
	}
	return nil
}

// Read returns the copy's bytes, or an error matching fs.ErrNotExist when
// the volume or the file does not exist. It never creates the volume.
func (s *Sink) Read(ctx context.Context) ([]byte, error) {
	e, err := s.connect(ctx)
	if err != nil {
		return nil, err
	}
	c := e.Client()
	exists, err := s.volumeExists(ctx, c)
	if err != nil {
		return nil, s.fail(e, "inspect volume", err)
	}
	if !exists {
		return nil, fmt.Errorf("volume %s does not exist: %w", s.o.Volume, fs.ErrNotExist)
	}
	id, err := s.o.Shared.createHelper(ctx, c, s.o.Volume, "copy")
	if err != nil {
		return nil, s.fail(e, "create helper container", err)
	}
	data, _, err := s.readFile(ctx, c, id)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		removeHelper(ctx, c, id)
		return nil, s.fail(e, "read "+s.containerPathInVolume(), err)
	}
	s.keep(ctx, e, id)
	return data, err
}

// keep keeps helper id for the next Update (removing one kept before).
func (s *Sink) keep(ctx context.Context, e *engine.Engine, id string) {
	s.keptMu.Lock()
	old, oldOn := s.kept, s.keptOn
	s.kept, s.keptOn = id, e
	s.keptMu.Unlock()
	if old != "" {
		removeHelper(ctx, oldOn.Client(), old)
	}
}

// takeKept returns the helper Read kept on engine e, if any; the caller
// removes it.
func (s *Sink) takeKept(ctx context.Context, e *engine.Engine) string {
	s.keptMu.Lock()
	id, on := s.kept, s.keptOn
	s.kept, s.keptOn = "", nil
	s.keptMu.Unlock()
	if id != "" && on != e {
		removeHelper(ctx, on.Client(), id)
		return ""
	}
	return id
}

var _ broker.PassEnder = (*Sink)(nil)

// EndPass removes the helper a Read kept and no Update used.
func (s *Sink) EndPass(ctx context.Context) {
	s.keptMu.Lock()
	id, on := s.kept, s.keptOn
	s.kept, s.keptOn = "", nil
	s.keptMu.Unlock()
	if id != "" {
		removeHelper(ctx, on.Client(), id)
	}
}

// Update reads the copy, calls decide, and writes what it returns, all
// through one helper container and under mc-broker's lock for this volume
// and path. A missing volume is created (labelled) only when there is
// something to write.
func (s *Sink) Update(ctx context.Context, decide broker.Decide) error {
	if s.o.LockDir == "" {
		return fmt.Errorf("cannot update %s: no lock directory configured", s.Location())
	}
	e, err := s.connect(ctx)
	if err != nil {
		return err
	}
	c := e.Client()
	unlock, err := s.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()

	exists, err := s.volumeExists(ctx, c)
	if err != nil {
		return s.fail(e, "inspect volume", err)
	}
	var (
		id      string
		current []byte
		hdr     *tar.Header
		found   bool
	)
	if exists {
		if id = s.takeKept(ctx, e); id == "" {
			id, err = s.o.Shared.createHelper(ctx, c, s.o.Volume, "copy")
			if err != nil {
				return s.fail(e, "create helper container", err)
			}
		}
		defer func() { removeHelper(ctx, c, id) }()
		current, hdr, err = s.readFile(ctx, c, id)
		found = err == nil
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return s.fail(e, "read "+s.containerPathInVolume(), err)
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	next, write := decide(current, found)
	var missing []file
	if write || found {
		missing = s.missingCompanions(ctx, c, id)
	}
	if !write {
		switch {
		case found && !s.ownedRight(hdr):
			// Left as it is, but readable by others or owned by someone
			// else: write the same bytes again with the right mode and
			// owner (a volume file's metadata cannot be changed without a
			// container that runs).
			next = current
		case found && len(missing) > 0:
			next = nil // only the companions
		default:
			return nil
		}
	}
	if !exists {
		if err := s.createVolume(ctx, c); err != nil {
			return s.fail(e, "create volume", err)
		}
		id, err = s.o.Shared.createHelper(ctx, c, s.o.Volume, "copy")
		if err != nil {
			return s.fail(e, "create helper container", err)
		}
		defer func() { removeHelper(ctx, c, id) }()
	}
	var files []file
	if next != nil {
		files = append(files, file{s.o.FileName, next})
	}
	if err := s.writeFiles(ctx, c, id, append(files, missing...)); err != nil {
		return s.fail(e, "write "+s.containerPathInVolume(), err)
	}
	return nil
}

// ErasedContent is what a volume copy holds once revoke has taken its login
// out: an empty JSON object, which every CLI reads as "not logged in". The
// engine API cannot delete a file without running a container (docker cp
// only adds), and mc-broker runs none; so the login's bytes are replaced,
// under the same lock as a write, and the volume itself is left alone.
const ErasedContent = "{}\n"

var (
	_ broker.Eraser      = (*Sink)(nil)
	_ broker.ErasedNoter = (*Sink)(nil)
)

// Erase replaces the copy's login with ErasedContent when erase agrees. A
// missing volume or file, or one that holds ErasedContent already, is left
// as it is; the volume is never created.
func (s *Sink) Erase(ctx context.Context, erase func(current []byte) bool) (bool, error) {
	erased := false
	err := s.Update(ctx, func(current []byte, exists bool) ([]byte, bool) {
		if !exists || string(current) == ErasedContent || !erase(current) {
			return nil, false
		}
		erased = true
		return []byte(ErasedContent), true
	})
	return erased && err == nil, err
}

// ErasedNote says how the login was taken out.
func (s *Sink) ErasedNote() string {
	return "the file now holds {} (not logged in): the engine cannot delete a file without running a container; the volume is kept"
}

// file is one file written into the volume, beside the login.
type file struct {
	name string
	data []byte
}

// missingCompanions lists the companion files not in the volume yet; id is
// the helper container ("" when the volume does not exist: all missing).
func (s *Sink) missingCompanions(ctx context.Context, c *client.Client, id string) []file {
	var out []file
	names := make([]string, 0, len(s.o.Companions))
	for name := range s.o.Companions {
		names = append(names, name)
	}
	sort.Strings(names)
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	for _, name := range names {
		if id != "" {
			_, err := c.ContainerStatPath(ctx, id, client.ContainerStatPathOptions{Path: path.Join(mountPoint, s.o.Path, name)})
			if !cerrdefs.IsNotFound(err) {
				continue // there (or unknown: never risk replacing it)
			}
		}
		out = append(out, file{name, s.o.Companions[name]})
	}
	return out
}

// connect checks the options and returns the run's engine.
func (s *Sink) connect(ctx context.Context) (*engine.Engine, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	e, err := s.o.Shared.engine(ctx)
	if err != nil {
		return nil, &VolumeError{Volume: s.o.Volume, Op: "connect", Err: err}
	}
	return e, nil
}

func (s *Sink) containerPathInVolume() string { return path.Join(s.o.Path, s.o.FileName) }

// fail wraps an engine error for this copy, noticing an engine that went
// away.
func (s *Sink) fail(e *engine.Engine, op string, err error) error {
	return &VolumeError{Volume: s.o.Volume, Op: op, Err: s.o.Shared.classify(e, err)}
}

func (s *Sink) lock(ctx context.Context) (func(), error) {
	if err := os.MkdirAll(s.o.LockDir, 0o700); err != nil {
		return nil, fmt.Errorf("cannot create lock directory: %w", err)
	}
	timeout := s.o.LockTimeout
	if timeout == 0 {
		timeout = DefaultLockTimeout
	}
	return filelock.Lock(ctx, LockFile(s.o.LockDir, s.o.Volume, s.o.Path), timeout)
}

// LockFile is mc-broker's own lock file, in lockDir, for the copy at path
// inside volume: one per volume and path, named by a hash.
func LockFile(lockDir, volume, dir string) string {
	sum := sha256.Sum256([]byte("volume\x00" + volume + "\x00" + cleanPath(dir)))
	return path.Join(lockDir, "volume-"+hex.EncodeToString(sum[:])[:16]+".lock")
}

func (s *Sink) volumeExists(ctx context.Context, c *client.Client) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	_, err := c.VolumeInspect(ctx, s.o.Volume, client.VolumeInspectOptions{})
	if cerrdefs.IsNotFound(err) {
		return false, nil
	}
	return err == nil, err
}

func (s *Sink) createVolume(ctx context.Context, c *client.Client) error {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	_, err := c.VolumeCreate(ctx, client.VolumeCreateOptions{
		Name:   s.o.Volume,
		Labels: map[string]string{LabelManaged: "true"},
	})
	return err
}

func (s *Sink) uid() int {
	if s.o.UID != nil {
		return *s.o.UID
	}
	return 0
}

func (s *Sink) gid() int {
	if s.o.GID != nil {
		return *s.o.GID
	}
	return 0
}

func (s *Sink) ownedRight(h *tar.Header) bool {
	return h != nil && h.FileInfo().Mode().Perm() == 0o600 && h.Uid == s.uid() && h.Gid == s.gid()
}

// readFile reads the copy through helper container id. The header is the
// file's, for its mode and owner.
func (s *Sink) readFile(ctx context.Context, c *client.Client, id string) ([]byte, *tar.Header, error) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	res, err := c.CopyFromContainer(ctx, id, client.CopyFromContainerOptions{SourcePath: s.containerPath()})
	if cerrdefs.IsNotFound(err) {
		return nil, nil, fmt.Errorf("no copy in volume %s: %w", s.o.Volume, fs.ErrNotExist)
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
		return nil, nil, fmt.Errorf("%s is a directory, not a file: remove it from the volume", s.containerPathInVolume())
	case h.Typeflag == tar.TypeSymlink:
		return nil, nil, fmt.Errorf("%s is a symlink: remove it from the volume and let mc-broker write a real file", s.containerPathInVolume())
	case h.Typeflag != tar.TypeReg:
		return nil, nil, fmt.Errorf("%s is not a regular file", s.containerPathInVolume())
	}
	// At most MaxSize+1 bytes, so that an oversized copy is judged broken
	// rather than read whole.
	data, err := io.ReadAll(io.LimitReader(tr, credential.MaxSize+1))
	if err != nil {
		return nil, nil, err
	}
	return data, h, nil
}

// writeFiles puts files into the volume through helper container id as a
// tar holding the directories from the volume root down to Path (0700) and
// the files (0600), all owned by UID/GID.
func (s *Sink) writeFiles(ctx context.Context, c *client.Client, id string, files []file) error {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	now := time.Now()
	// The archive is unpacked at the container's root, so that its first
	// entry is the mount point itself: that is how the volume root gets
	// its mode and owner (an entry for "." inside the volume is skipped).
	root := strings.TrimPrefix(mountPoint, "/")
	dirs := []string{root + "/"}
	if s.o.Path != "/" {
		parts := strings.Split(strings.TrimPrefix(s.o.Path, "/"), "/")
		for i := range parts {
			dirs = append(dirs, root+"/"+strings.Join(parts[:i+1], "/")+"/")
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
		name := root + path.Join(s.o.Path, f.name)
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
		DestinationPath: "/",
		Content:         &buf,
	})
	return err
}

// Changed reports whether the copy may have changed since the previous
// call. It stats the file through one long-lived helper container (created
// on the first call, never started, removed by Close), so polling with
// nothing changed creates no container and reads no secret. The first call
// reports true.
func (s *Sink) Changed(ctx context.Context) (bool, error) {
	e, err := s.connect(ctx)
	if err != nil {
		return false, err
	}
	c := e.Client()
	s.pollMu.Lock()
	defer s.pollMu.Unlock()
	if s.pollID != "" && s.pollOn != e {
		// Reconnected: the engine usually just restarted and still has the
		// old poll helper, which would hold the volume in use beside the
		// new one until the next run cleaned up.
		_ = removeHelper(ctx, c, s.pollID)
		s.pollID, s.pollOn = "", nil
	}
	if s.pollID == "" {
		exists, err := s.volumeExists(ctx, c)
		if err != nil {
			return false, s.fail(e, "inspect volume", err)
		}
		if !exists {
			// No volume yet: do not create it (a Changed call must not
			// change anything); it is a change once it appears.
			changed := !s.polled || !s.lastErr
			s.polled, s.lastErr = true, true
			return changed, nil
		}
		id, err := s.o.Shared.createHelper(ctx, c, s.o.Volume, "poll")
		if err != nil {
			return false, s.fail(e, "create poll container", err)
		}
		s.pollID, s.pollOn = id, e
	}
	sctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	res, err := c.ContainerStatPath(sctx, s.pollID, client.ContainerStatPathOptions{Path: s.containerPath()})
	missing := cerrdefs.IsNotFound(err)
	if missing {
		// A missing file and a missing container both answer 404: make
		// sure the poll container is still there (someone may have pruned
		// it), and make another next time if not.
		if _, ierr := c.ContainerInspect(sctx, s.pollID, client.ContainerInspectOptions{}); cerrdefs.IsNotFound(ierr) {
			s.pollID = ""
			return true, nil
		}
	}
	if err != nil && !missing {
		return false, s.fail(e, "stat "+s.containerPathInVolume(), err)
	}
	changed := !s.polled || missing != s.lastErr || (!missing && !sameStat(res.Stat, s.last))
	s.polled, s.lastErr = true, missing
	if !missing {
		s.last = res.Stat
	}
	return changed, nil
}

func sameStat(a, b container.PathStat) bool {
	return a.Size == b.Size && a.Mode == b.Mode && a.Mtime.Equal(b.Mtime) && a.LinkTarget == b.LinkTarget
}

// Close removes the poll helper container, if any.
func (s *Sink) Close() error {
	s.pollMu.Lock()
	defer s.pollMu.Unlock()
	if s.pollID == "" {
		return nil
	}
	err := removeHelper(context.Background(), s.pollOn.Client(), s.pollID)
	s.pollID, s.pollOn = "", nil
	return err
}
