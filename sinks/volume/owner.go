package volume

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/moby/moby/client"

	"github.com/mc-broker/mc-broker/broker/credential"
)

// Owner is who a volume belongs to: a user on a machine. mc-broker labels
// every volume it creates with its owner (LabelOwner, LabelOwnerName) and
// neither reads nor writes a volume another owner created, so that two
// users of one engine (a shared Linux dockerd, a build box reached over
// ssh) never take or leak each other's logins.
type Owner struct {
	// ID is compared: "uid<uid>-<12 hex digits>", the digits a hash of the
	// machine's id (/etc/machine-id on Linux, the hardware UUID on macOS,
	// else the host name), so that the same uid on two machines differs
	// and the machine id itself is not shown.
	ID string
	// Name is for people: "user@host".
	Name string
}

// CurrentOwner is the user running mc-broker on this machine, computed
// once.
var CurrentOwner = sync.OnceValue(func() Owner {
	uid := os.Getuid()
	name := strconv.Itoa(uid)
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	host, _ := os.Hostname()
	sum := sha256.Sum256([]byte("mc-broker volume owner\x00" + machineID()))
	return Owner{
		ID:   fmt.Sprintf("uid%d-%s", uid, hex.EncodeToString(sum[:6])),
		Name: name + "@" + host,
	}
})

// describe names the owner of a volume from its labels, for messages.
func describeOwner(labels map[string]string) string {
	id, name := labels[LabelOwner], labels[LabelOwnerName]
	uid, _, _ := strings.Cut(strings.TrimPrefix(id, "uid"), "-")
	switch {
	case name != "" && uid != "":
		return name + " (uid " + uid + ")"
	case name != "":
		return name
	}
	return id
}

// ForeignVolumeError is a volume mc-broker will neither read nor write for
// this user: one another owner created (Owner is set), or one mc-broker did
// not create that holds files other than the login and its companions
// (Files are some of them). Options.Adopt takes such a volume on.
type ForeignVolumeError struct {
	Volume string
	// Owner describes the other owner ("bob@box (uid 1001)").
	Owner string
	// Files are some of the other files found, volume-relative.
	Files []string
}

func (e *ForeignVolumeError) Error() string {
	if e.Owner != "" {
		return fmt.Sprintf("volume %s belongs to another user, %s, not to %s: mc-broker neither reads nor writes another user's login; use a volume of your own (e.g. volume: %s-%s in the config), or set adopt: true on this copy if the volume is really yours",
			e.Volume, e.Owner, CurrentOwner().Name, e.Volume, userPart(CurrentOwner().Name))
	}
	return fmt.Sprintf("volume %s was not made by mc-broker and holds other files (%s): it may be another program's, so mc-broker neither reads nor writes it; if it is this CLI's config volume, set adopt: true on this copy in the config, else use another volume",
		e.Volume, strings.Join(e.Files, ", "))
}

func userPart(name string) string {
	u, _, _ := strings.Cut(name, "@")
	return u
}

// checkOwner refuses a volume another owner created, unless adopted.
func (s *Sink) checkOwner(labels map[string]string) error {
	id := labels[LabelOwner]
	if s.o.Adopt || id == "" || id == CurrentOwner().ID {
		return nil
	}
	return &ForeignVolumeError{Volume: s.o.Volume, Owner: describeOwner(labels)}
}

// needsContentCheck reports whether a volume's files must be looked at
// before it is used: one mc-broker did not create (no LabelManaged), not
// adopted. A volume an older mc-broker created (LabelManaged but no
// LabelOwner) is used as before: docs/VOLUMES.md explains why, and how to
// give it an owner.
func needsContentCheck(labels map[string]string, adopt bool) bool {
	return !adopt && labels[LabelManaged] != "true"
}

// maxForeignShown is how many other files a ForeignVolumeError names.
const maxForeignShown = 3

// checkContents refuses a volume that holds anything but the directories
// down to Path, the login and its companions. It reads the volume's
// listing through helper container id as an archive and stops at the first
// few other entries; an allowed file bigger than a login counts as other,
// so nothing large is read.
func (s *Sink) checkContents(ctx context.Context, c *client.Client, id string) error {
	allowed := map[string]bool{"": true}
	if s.o.Path != "/" {
		parts := strings.Split(strings.TrimPrefix(s.o.Path, "/"), "/")
		for i := range parts {
			allowed[strings.Join(parts[:i+1], "/")] = true
		}
	}
	files := map[string]bool{strings.TrimPrefix(path.Join(s.o.Path, s.o.FileName), "/"): true}
	for name := range s.o.Companions {
		files[strings.TrimPrefix(path.Join(s.o.Path, name), "/")] = true
	}
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	res, err := c.CopyFromContainer(ctx, id, client.CopyFromContainerOptions{SourcePath: mountPoint})
	if err != nil {
		return err
	}
	defer res.Content.Close()
	tr := tar.NewReader(res.Content)
	var other []string
	for len(other) < maxForeignShown {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("the engine sent a broken archive: %w", err)
		}
		// Entries are named from the mount point's own name down.
		_, rel, _ := strings.Cut(strings.TrimPrefix(h.Name, "./"), "/")
		rel = strings.TrimSuffix(rel, "/")
		switch {
		case h.Typeflag == tar.TypeDir && allowed[rel]:
		case h.Typeflag == tar.TypeReg && files[rel] && h.Size <= credential.MaxSize:
		default:
			if h.Typeflag == tar.TypeDir {
				rel += "/"
			}
			other = append(other, rel)
		}
	}
	if len(other) == 0 {
		return nil
	}
	sort.Strings(other)
	return &ForeignVolumeError{Volume: s.o.Volume, Files: other}
}
