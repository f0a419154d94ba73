// Package volume is the named volume sink: a copy of a login kept as one
// file in a Docker (or Podman) named volume that containers mount as the
// CLI's config directory.
//
// It writes without running anything: a helper container is created (never
// started) from an empty image with the volume mounted and networking
// disabled, the file goes in with CopyToContainer as a tar whose headers
// carry mode 0600 and the owner, and the container is removed. Reads use
// CopyFromContainer the same way. This works the same against Docker
// Desktop, where volumes live inside a VM, and needs no image pull.
//
// Podman mounts a container's volumes only when it starts, but resolves a
// copy whose destination lies inside a volume mount to the volume itself:
// there the archive is unpacked at the mount point rather than at the
// container's root (see files.go). Every write is read back through a fresh
// helper container; a copy the engine reports written but that is not in
// the volume fails.
//
// Volumes carry their owner (Owner); one another user created, or one
// mc-broker did not create that holds other files, is neither read nor
// written unless the copy adopts it (ForeignVolumeError).
//
// The engine replaces a file non-atomically (it removes the old file, then
// writes the new one), so a container reading at that instant can find no
// file; the CLIs treat that as "no login yet" for one read and the next
// read finds the new file. docs/VOLUMES.md has the details.
package volume

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
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
	// Engine is the engine the volume is on (the config's engine: or
	// context:); the zero Selection is the environment's engine.
	Engine engine.Selection
	// Adopt uses the volume whoever created it: one labelled with another
	// owner, or one mc-broker did not create that holds other files. Off,
	// such a volume is refused (ForeignVolumeError).
	Adopt bool
	// Companions are non-secret files (by name) written beside the login
	// when absent (credential.Companions). They are checked and written
	// through the helper container Update uses anyway, so they cost no
	// container of their own; WriteIfAbsent then reports what Update did.
	// A file the container wrote is never replaced; the engine cannot
	// create-if-absent, so one a container writes in the instant between
	// the check and the copy could be.
	Companions map[string][]byte
	// LockFiles and WriteLock are the CLI's own locks beside the login
	// (credential.Facts): the resident agent takes them around each write
	// it makes in the volume, as the directory sink does on the host.
	LockFiles []string
	WriteLock string
}

// Sink is one volume copy. It implements broker.Sink, broker.ChangePoller,
// broker.CompanionWriter and broker.Closer.
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

	// What the last Update did with each companion: true when it created
	// it, false when it was there already (see WriteIfAbsent).
	compMu   sync.Mutex
	compDone map[string]bool

	// sup is the resident agent the copy follows changes through, once
	// Changes was called (agent.go).
	supMu sync.Mutex
	sup   *agentSup

	// locks signals that Claude's refresh lock beside the login may have
	// changed (lockplace.go).
	locks chan struct{}
}

var (
	_ broker.Sink            = (*Sink)(nil)
	_ broker.ChangePoller    = (*Sink)(nil)
	_ broker.Closer          = (*Sink)(nil)
	_ broker.CompanionWriter = (*Sink)(nil)
)

// New returns the sink for o. Options are checked when the sink is used.
func New(o Options) *Sink {
	o.Path = cleanPath(o.Path)
	return &Sink{o: o, locks: make(chan struct{}, 1)}
}

func cleanPath(p string) string {
	if p == "" {
		return "/"
	}
	return path.Clean("/" + p)
}

// Location is how people see the copy: `volume NAME:/path/file`, with
// ` on ENGINE` for a copy on an engine the config names.
func (s *Sink) Location() string {
	loc := "volume " + s.o.Volume + ":" + path.Join(s.o.Path, s.o.FileName)
	if !s.o.Engine.IsZero() {
		loc += " on " + s.o.Engine.String()
	}
	return loc
}

// containerPath is the file's path inside a helper container.
func (s *Sink) containerPath() string { return s.pathOf(s.o.FileName) }

// pathOf is the path, inside a helper container, of the file name beside
// the login.
func (s *Sink) pathOf(name string) string { return path.Join(mountPoint, s.o.Path, name) }

// VolumeError is a failure of one volume copy, naming the copy. It wraps
// the cause: *engine.UnreachableError, *engine.TooOldError,
// *ForeignVolumeError, *NotWrittenError, or the engine's answer.
type VolumeError struct {
	Volume string
	Op     string
	Err    error
}

func (e *VolumeError) Error() string {
	var ue *engine.UnreachableError
	var te *engine.TooOldError
	var fe *ForeignVolumeError
	if errors.As(e.Err, &ue) || errors.As(e.Err, &te) || errors.As(e.Err, &fe) {
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
// the volume or the file does not exist. It never creates the volume, and
// refuses a volume that is not this user's (ForeignVolumeError).
func (s *Sink) Read(ctx context.Context) ([]byte, error) {
	if data, exists, ok := s.readViaAgent(ctx); ok {
		if !exists {
			return nil, fmt.Errorf("no %s in volume %s: %w", s.containerPathInVolume(), s.o.Volume, fs.ErrNotExist)
		}
		return data, nil
	}
	e, h, err := s.connect(ctx)
	if err != nil {
		return nil, err
	}
	c := e.Client()
	labels, exists, err := s.inspectVolume(ctx, c)
	if err != nil {
		return nil, s.fail(h, e, "inspect volume", err)
	}
	if !exists {
		return nil, fmt.Errorf("volume %s does not exist: %w", s.o.Volume, fs.ErrNotExist)
	}
	if err := s.checkOwner(labels); err != nil {
		return nil, s.fail(h, e, "check owner", err)
	}
	id, err := s.o.Shared.createHelper(ctx, c, s.o.Volume, "copy")
	if err != nil {
		return nil, s.fail(h, e, "create helper container", err)
	}
	if needsContentCheck(labels, s.o.Adopt) {
		if err := s.checkContents(ctx, c, id); err != nil {
			removeHelper(ctx, c, id)
			return nil, s.fail(h, e, "check contents", err)
		}
	}
	data, _, err := s.readFile(ctx, c, id, s.o.FileName)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		removeHelper(ctx, c, id)
		return nil, s.fail(h, e, "read "+s.containerPathInVolume(), err)
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
// and path; what was written is then read back through a fresh helper. A
// missing volume is created (labelled with its owner) only when there is
// something to write. A volume that is not this user's is refused
// (ForeignVolumeError) before anything is read.
func (s *Sink) Update(ctx context.Context, decide broker.Decide) error {
	s.compMu.Lock()
	s.compDone = nil
	s.compMu.Unlock()
	done, err := s.update(ctx, decide, s.o.Companions)
	if err == nil {
		s.compMu.Lock()
		s.compDone = done
		s.compMu.Unlock()
	}
	return err
}

// update is Update with the companions to check; it returns what it did
// with each (true: created).
func (s *Sink) update(ctx context.Context, decide broker.Decide, companions map[string][]byte) (map[string]bool, error) {
	if s.o.LockDir == "" {
		return nil, fmt.Errorf("cannot update %s: no lock directory configured", s.Location())
	}
	e, h, err := s.connect(ctx)
	if err != nil {
		return nil, err
	}
	c := e.Client()
	unlock, err := s.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if done, ok, err := s.updateViaAgent(ctx, decide, companions); ok {
		return done, err
	}

	labels, exists, err := s.inspectVolume(ctx, c)
	if err != nil {
		return nil, s.fail(h, e, "inspect volume", err)
	}
	var (
		id      string
		current []byte
		hdr     *fileHeader
		found   bool
	)
	if exists {
		if err := s.checkOwner(labels); err != nil {
			return nil, s.fail(h, e, "check owner", err)
		}
		if id = s.takeKept(ctx, e); id == "" {
			id, err = s.o.Shared.createHelper(ctx, c, s.o.Volume, "copy")
			if err != nil {
				return nil, s.fail(h, e, "create helper container", err)
			}
		}
		defer func() { removeHelper(ctx, c, id) }()
		if needsContentCheck(labels, s.o.Adopt) {
			if err := s.checkContents(ctx, c, id); err != nil {
				return nil, s.fail(h, e, "check contents", err)
			}
		}
		current, hdr, err = s.readFile(ctx, c, id, s.o.FileName)
		found = err == nil
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, s.fail(h, e, "read "+s.containerPathInVolume(), err)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	next, write := decide(current, found)
	done := map[string]bool{}
	var missing []file
	if write || found {
		missing, err = s.missingCompanions(ctx, c, id, companions, done)
		if err != nil {
			return nil, s.fail(h, e, "look for companion files", err)
		}
	}
	if !write {
		switch {
		case found && !s.ownedRight(hdr, e.Podman()):
			// Left as it is, but readable by others or owned by someone
			// else: write the same bytes again with the right mode and
			// owner (a volume file's metadata cannot be changed without a
			// container that runs).
			next = current
		case found && len(missing) > 0:
			next = nil // only the companions
		default:
			return done, nil
		}
	}
	if !exists {
		labels, err := s.createVolume(ctx, c)
		if err != nil {
			return nil, s.fail(h, e, "create volume", err)
		}
		// Created just now by someone else (another user's run): its
		// labels are theirs.
		if err := s.checkOwner(labels); err != nil {
			return nil, s.fail(h, e, "check owner", err)
		}
		id, err = s.o.Shared.createHelper(ctx, c, s.o.Volume, "copy")
		if err != nil {
			return nil, s.fail(h, e, "create helper container", err)
		}
		defer func() { removeHelper(ctx, c, id) }()
	}
	var files []file
	if next != nil {
		files = append(files, file{s.o.FileName, next})
	}
	files = append(files, missing...)
	if err := s.writeFiles(ctx, c, id, files, e.Podman()); err != nil {
		return nil, s.fail(h, e, "write "+s.containerPathInVolume(), err)
	}
	if err := s.verify(ctx, c, files, e.Podman()); err != nil {
		return nil, s.fail(h, e, "read back "+s.containerPathInVolume(), err)
	}
	for _, f := range missing {
		done[f.name] = true
	}
	if !exists {
		// A volume made just now: the resident agent (when one runs)
		// mounts it from now on.
		s.pokeAgent()
	}
	return done, nil
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

// missingCompanions lists the companions not in the volume yet, and marks
// those that are in done (false); id is the helper container ("" when the
// volume does not exist: all missing).
func (s *Sink) missingCompanions(ctx context.Context, c *client.Client, id string, companions map[string][]byte, done map[string]bool) ([]file, error) {
	var out []file
	names := make([]string, 0, len(companions))
	for name := range companions {
		if name == s.o.FileName || strings.ContainsRune(name, '/') || name == "." || name == ".." || name == "" {
			return nil, fmt.Errorf("%q cannot be a companion file of %s", name, s.Location())
		}
		names = append(names, name)
	}
	sort.Strings(names)
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	for _, name := range names {
		if id != "" {
			_, err := c.ContainerStatPath(ctx, id, client.ContainerStatPathOptions{Path: s.pathOf(name)})
			if !cerrdefs.IsNotFound(err) {
				done[name] = false
				continue // there (or unknown: never risk replacing it)
			}
		}
		out = append(out, file{name, companions[name]})
	}
	return out, nil
}

// connect checks the options and returns the copy's engine.
func (s *Sink) connect(ctx context.Context) (*engine.Engine, *engineHandle, error) {
	if err := s.check(); err != nil {
		return nil, nil, err
	}
	h := s.o.Shared.on(s.o.Engine)
	e, err := h.engine(ctx)
	if err != nil {
		return nil, nil, &VolumeError{Volume: s.o.Volume, Op: "connect", Err: err}
	}
	return e, h, nil
}

func (s *Sink) containerPathInVolume() string { return path.Join(s.o.Path, s.o.FileName) }

// fail wraps an engine error for this copy, noticing an engine that went
// away.
func (s *Sink) fail(h *engineHandle, e *engine.Engine, op string, err error) error {
	return &VolumeError{Volume: s.o.Volume, Op: op, Err: h.classify(e, err)}
}

func (s *Sink) lock(ctx context.Context) (func(), error) {
	if err := os.MkdirAll(s.o.LockDir, 0o700); err != nil {
		return nil, fmt.Errorf("cannot create lock directory: %w", err)
	}
	timeout := s.o.LockTimeout
	if timeout == 0 {
		timeout = DefaultLockTimeout
	}
	return filelock.Lock(ctx, lockFileOn(s.o.LockDir, s.o.Engine, s.o.Volume, s.o.Path), timeout)
}

// LockFile is mc-broker's own lock file, in lockDir, for the copy at path
// inside volume on the environment's engine: one per volume and path,
// named by a hash.
func LockFile(lockDir, volume, dir string) string {
	return lockFileOn(lockDir, engine.Selection{}, volume, dir)
}

// lockFileOn is LockFile for a volume on the engine sel names: the same
// volume name on two engines is two locks.
func lockFileOn(lockDir string, sel engine.Selection, volume, dir string) string {
	key := "volume\x00" + volume + "\x00" + cleanPath(dir)
	if !sel.IsZero() {
		key += "\x00" + sel.Host + "\x00" + sel.Context
	}
	sum := sha256.Sum256([]byte(key))
	return path.Join(lockDir, "volume-"+hex.EncodeToString(sum[:])[:16]+".lock")
}

// inspectVolume returns the volume's labels, and whether it exists.
func (s *Sink) inspectVolume(ctx context.Context, c *client.Client) (map[string]string, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	res, err := c.VolumeInspect(ctx, s.o.Volume, client.VolumeInspectOptions{})
	if cerrdefs.IsNotFound(err) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return res.Volume.Labels, true, nil
}

// createVolume creates the volume labelled with its owner and returns the
// labels of the volume now there: Docker answers a create of an existing
// volume with that volume, Podman with an error, and either way another
// run may have made it in between.
func (s *Sink) createVolume(ctx context.Context, c *client.Client) (map[string]string, error) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	me := CurrentOwner()
	res, err := c.VolumeCreate(ctx, client.VolumeCreateOptions{
		Name: s.o.Volume,
		Labels: map[string]string{
			LabelManaged:   "true",
			LabelOwner:     me.ID,
			LabelOwnerName: me.Name,
		},
	})
	if err == nil {
		return res.Volume.Labels, nil
	}
	labels, exists, ierr := s.inspectVolume(ctx, c)
	if ierr != nil || !exists {
		return nil, err
	}
	return labels, nil
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
