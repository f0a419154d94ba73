// Package dir is the directory sink: a copy of a login kept as one file in a
// directory that containers bind-mount as the CLI's config directory.
//
// Mounting the directory, not the file, lets a running container see each
// new copy: the sink replaces the file by rename (see broker/atomicfile), and
// a rename inside the container onto a mounted file would fail.
package dir

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mc-broker/mc-broker/broker"
	"github.com/mc-broker/mc-broker/broker/atomicfile"
	"github.com/mc-broker/mc-broker/broker/credential"
	"github.com/mc-broker/mc-broker/broker/filelock"
)

// DefaultLockTimeout is how long Update waits for mc-broker's own lock
// when Options.LockTimeout is zero.
const DefaultLockTimeout = 10 * time.Second

// CLILockTimeout is how long Update waits for each of the CLI's locks in the
// copy directory. A CLI holds them for the milliseconds of one write; a
// container that holds one longer only keeps its own copy from being
// updated (the write fails and is retried), never anyone else's.
const CLILockTimeout = 2 * time.Second

// Options describe one copy directory.
type Options struct {
	// Dir is the absolute path of the copy directory (what compose mounts as
	// the CLI's config directory).
	Dir string
	// FileName is the login file's name inside Dir: ".credentials.json",
	// "auth.json", "oauth_creds.json".
	FileName string
	// UID and GID, when set, own the file, Dir and the CLI lock files.
	UID, GID *int
	// LockFiles are the CLI's own lock files inside Dir, flocked in this
	// order around every update (Codex: "auth.lock", "auth.json.lock").
	LockFiles []string
	// WriteLock is the CLI's mkdir-style write lock inside Dir, held around
	// every update (Claude: ".storage-write.lock"), so that a CLI writing
	// its refreshed login and mc-broker never interleave.
	WriteLock string
	// LockDir holds mc-broker's own per-copy lock files (the state dir's
	// "locks"); created 0700 if missing. Required by Update.
	LockDir string
	// LockTimeout bounds the wait for mc-broker's own lock;
	// DefaultLockTimeout when zero. CLILockTimeout bounds the wait for each
	// of the CLI's locks in the copy directory (a container can hold
	// those); CLILockTimeout (the constant) when zero.
	LockTimeout    time.Duration
	CLILockTimeout time.Duration
	// Protect lists files this copy must never replace: the host's own
	// login files. Checked by identity (device and inode), so a symlinked
	// config directory or a relative path cannot slip past.
	Protect []string
}

// Sink is a copy directory. It implements broker.Sink.
type Sink struct {
	o Options
	// cleaned is when crashed runs' temporary files were last looked for
	// (unix ns): once a minute is enough, they are only removed when a
	// minute old.
	cleaned atomic.Int64
}

var _ broker.Sink = (*Sink)(nil)

// New returns the sink for o. Options are checked when the sink is used.
func New(o Options) *Sink {
	o.LockFiles = append([]string(nil), o.LockFiles...)
	return &Sink{o: o}
}

// SymlinkError reports a copy directory or copy file that is a symlink: the
// sink refuses to write through links, which could point anywhere (for
// example at the host's own login).
type SymlinkError struct {
	Path string
	// File is true when the link is the copy file, false when it is the
	// directory.
	File bool
}

func (e *SymlinkError) Error() string {
	if e.File {
		return "refusing to use " + e.Path + ": it is a symlink; remove it and let mc-broker write a real file there"
	}
	return "refusing to use " + e.Path + ": it is a symlink; point the config at the real directory"
}

// WatchedFiles is the copy file, for the watcher: a container's CLI that
// refreshes its login writes it there.
func (s *Sink) WatchedFiles() []string { return []string{s.Location()} }

// Location is the copy file's path.
func (s *Sink) Location() string { return filepath.Join(s.o.Dir, s.o.FileName) }

// Read returns the copy's bytes, at most credential.MaxSize+1 of them so that
// an oversized copy is judged broken rather than read whole. A missing
// directory or file gives an error matching fs.ErrNotExist.
func (s *Sink) Read(ctx context.Context) ([]byte, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := checkDir(s.o.Dir); err != nil {
		return nil, err
	}
	data, _, err := s.readFile()
	return data, err
}

var _ broker.TidyReader = (*Sink)(nil)

// ReadTidy is Read, and says whether the copy's mode or owner is not what
// Update would give it.
func (s *Sink) ReadTidy(ctx context.Context) ([]byte, bool, error) {
	if err := s.check(); err != nil {
		return nil, false, err
	}
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	if err := checkDir(s.o.Dir); err != nil {
		return nil, false, err
	}
	data, st, err := s.readFile()
	if err != nil {
		return nil, false, err
	}
	return data, st.mode != 0o600 || (s.o.UID != nil && int(st.uid) != *s.o.UID) || (s.o.GID != nil && int(st.gid) != *s.o.GID), nil
}

// Update creates the directory if needed, takes mc-broker's lock for this
// copy and then the CLI's lock files, reads the current copy, and writes what
// decide returns. When decide declines, the copy file is not touched.
func (s *Sink) Update(ctx context.Context, decide broker.Decide) error {
	if err := s.check(); err != nil {
		return err
	}
	if s.o.LockDir == "" {
		return fmt.Errorf("cannot update %s: no lock directory configured", s.Location())
	}
	if err := ctx.Err(); err != nil {
		return err
	}

	// mc-broker's own lock first, so that a failure to take it leaves the
	// copy directory as it was (not even created).
	unlock, err := s.ownLock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	if err := s.ensureDir(); err != nil {
		return err
	}
	if err := s.refuseProtected(); err != nil {
		return err
	}
	// Under mc-broker's lock no other mc-broker writes here: a temporary
	// file older than a minute is a crashed run's, and may hold a login.
	if now := time.Now().UnixNano(); now-s.cleaned.Load() > int64(time.Minute) {
		s.cleaned.Store(now)
		atomicfile.RemoveStale(s.o.Dir, time.Minute)
	}
	// The CLIs write by temporary file and rename, so the file can be read
	// and the new one written and synced without their locks. Their locks
	// are taken only around the last check and the rename: the CLI (which
	// reads and writes under them) sees the file before or after the
	// write, never in between, and waits for a rename, not for an fsync.
	// A container may write the file at any moment (a CLI without locks,
	// or one that ignores them): the write goes ahead only if the file is
	// still the one decided on, checked under the locks just before the
	// rename; otherwise the decision is made again with what is there now.
	for range maxTries {
		current, seen, err := s.readFile()
		exists := err == nil
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		next, write := decide(current, exists)
		if !write {
			if exists {
				return s.tighten()
			}
			return nil
		}
		release := func() {}
		err = atomicfile.Write(s.o.Dir, s.o.FileName, next, atomicfile.Options{
			Mode: 0o600, UID: s.o.UID, GID: s.o.GID,
			BeforeRename: func() error {
				var err error
				if release, err = s.cliLocks(ctx); err != nil {
					return err
				}
				if !s.unchanged(seen) {
					return errChanged
				}
				return nil
			},
			AfterRename: func() { release(); release = func() {} },
		})
		release()
		if errors.Is(err, errChanged) {
			continue
		}
		var ce *atomicfile.ChownError
		if errors.As(err, &ce) {
			return chownHint(ce)
		}
		return err
	}
	return fmt.Errorf("%s kept changing while it was being written; the next pass tries again", s.Location())
}

// ownLock takes mc-broker's own lock for this copy.
func (s *Sink) ownLock(ctx context.Context) (func(), error) {
	timeout := s.o.LockTimeout
	if timeout == 0 {
		timeout = DefaultLockTimeout
	}
	if err := mkdir0700(s.o.LockDir); err != nil {
		return nil, fmt.Errorf("cannot create lock directory: %w", err)
	}
	return filelock.Lock(ctx, s.lockPath(), timeout)
}

// cliLocks takes the CLI's own locks in the copy directory; release
// lets go of those taken, also when one could not be.
func (s *Sink) cliLocks(ctx context.Context) (release func(), err error) {
	var held []func()
	release = func() {
		for i := len(held) - 1; i >= 0; i-- {
			held[i]()
		}
	}
	if s.o.WriteLock != "" {
		// mc-broker's own lock is held: a marked lock directory there
		// is a killed mc-broker's, removed at once.
		r, err := filelock.DirLockMarked(ctx, filepath.Join(s.o.Dir, s.o.WriteLock), s.cliLockTimeout())
		if err != nil {
			return release, err
		}
		held = append(held, r)
	}
	for _, name := range s.o.LockFiles {
		path := filepath.Join(s.o.Dir, name)
		unlock, err := filelock.Lock(ctx, path, s.cliLockTimeout())
		if err != nil {
			return release, err
		}
		held = append(held, unlock)
		if err := s.own(path); err != nil {
			return release, err
		}
	}
	return release, nil
}

var _ broker.Eraser = (*Sink)(nil)

// Erase takes the login out of the copy (mc-broker revoke): under the
// same locks as Update, it reads the file and, when erase agrees, unlinks
// it from the directory (a symlink put there is removed, never followed).
// A missing directory or file is left as it is; the directory is never
// created.
func (s *Sink) Erase(ctx context.Context, erase func(current []byte) bool) (bool, error) {
	if err := s.check(); err != nil {
		return false, err
	}
	if s.o.LockDir == "" {
		return false, fmt.Errorf("cannot erase %s: no lock directory configured", s.Location())
	}
	if err := checkDir(s.o.Dir); errors.Is(err, fs.ErrNotExist) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	unlock, err := s.ownLock(ctx)
	if err != nil {
		return false, err
	}
	defer unlock()
	release, err := s.cliLocks(ctx)
	defer release()
	if err != nil {
		return false, err
	}
	if err := s.refuseProtected(); err != nil {
		return false, err
	}
	// Under the lock, any temporary file of mc-broker's here is a
	// crashed run's, and may hold the login.
	atomicfile.RemoveStale(s.o.Dir, 0)
	data, _, err := s.readFile()
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil || !erase(data) {
		return false, err
	}
	d, err := os.OpenFile(s.o.Dir, os.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return false, err
	}
	defer d.Close()
	if err := unix.Unlinkat(int(d.Fd()), s.o.FileName, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return false, fmt.Errorf("cannot remove %s: %w", s.Location(), err)
	}
	return true, d.Sync()
}

func (s *Sink) cliLockTimeout() time.Duration {
	if s.o.CLILockTimeout > 0 {
		return s.o.CLILockTimeout
	}
	return CLILockTimeout
}

// maxTries bounds how often Update decides again because the copy changed
// under it.
const maxTries = 3

var errChanged = errors.New("the copy changed since it was read")

// fileStat is what tells one state of the copy file from another.
type fileStat struct {
	exists   bool
	dev, ino uint64
	size     int64
	mtime    int64
	ctime    int64
	mode     fs.FileMode
	uid, gid uint32
}

func statOf(fi fs.FileInfo) fileStat {
	st := fileStat{exists: true, size: fi.Size(), mtime: fi.ModTime().UnixNano(), mode: fi.Mode().Perm()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.dev, st.ino = uint64(sys.Dev), uint64(sys.Ino)
		st.ctime = ctimeOf(sys)
		st.uid, st.gid = sys.Uid, sys.Gid
	}
	return st
}

// unchanged reports whether the copy file is still what seen described.
func (s *Sink) unchanged(seen fileStat) bool {
	fi, err := os.Lstat(s.Location())
	if errors.Is(err, fs.ErrNotExist) {
		return !seen.exists
	}
	return err == nil && seen.exists && statOf(fi) == seen
}

// refuseProtected stops a copy from replacing one of the host's own login
// files, however the two paths came to name the same file.
func (s *Sink) refuseProtected() error {
	target, err := os.Lstat(s.Location())
	if err != nil {
		return nil // nothing there yet, so it is not a host file
	}
	for _, p := range s.o.Protect {
		if pi, err := os.Stat(p); err == nil && os.SameFile(target, pi) {
			return fmt.Errorf("refusing to write %s: it is the host's own login file %s; choose a copy directory outside the CLI's config directory", s.Location(), p)
		}
	}
	return nil
}

// tighten gives a copy that is left as it is the mode and owner it would
// have been written with: a login file readable by others is not kept so
// just because its content is current. Only metadata changes (no new inode,
// no new mtime), and only when it is wrong. It works on the open file, so a
// container that swaps the file for a symlink between a check and the
// change cannot make it change anything else.
func (s *Sink) tighten() error {
	path := s.Location()
	f, err := openRegular(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if fi.Mode().Perm() != 0o600 {
		if err := f.Chmod(0o600); err != nil {
			return fmt.Errorf("cannot make %s private (mode 0600): %w", path, err)
		}
	}
	return s.ownFile(f, fi)
}

// openRegular opens path for reading without following a symlink or
// blocking on a FIFO, and checks that it is a regular file.
func openRegular(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, syscall.ELOOP) {
		return nil, &SymlinkError{Path: path, File: true}
	}
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err == nil {
		err = checkRegular(path, fi)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// check validates the options.
func (s *Sink) check() error {
	if s.o.Dir == "" || !filepath.IsAbs(s.o.Dir) {
		return fmt.Errorf("copy directory %q is not an absolute path", s.o.Dir)
	}
	if err := checkName(s.o.FileName); err != nil {
		return fmt.Errorf("copy file name: %w", err)
	}
	for _, name := range s.o.LockFiles {
		if err := checkName(name); err != nil {
			return fmt.Errorf("lock file name: %w", err)
		}
		if name == s.o.FileName {
			return fmt.Errorf("lock file %q is the copy file itself", name)
		}
	}
	return nil
}

func checkName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsRune(name, '/') || strings.ContainsRune(name, filepath.Separator) {
		return fmt.Errorf("%q is not a plain file name", name)
	}
	return nil
}

// lockPath is mc-broker's own lock file for this copy: one per directory,
// named by a hash of the cleaned path, outside the directory so containers
// never see it.
func (s *Sink) lockPath() string {
	sum := sha256.Sum256([]byte(filepath.Clean(s.o.Dir)))
	return filepath.Join(s.o.LockDir, hex.EncodeToString(sum[:])[:16]+".lock")
}

// checkDir refuses a directory that is a symlink or not a directory.
func checkDir(dir string) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		return &SymlinkError{Path: dir}
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	return nil
}

// ensureDir creates the copy directory when it is missing, takes away
// what others may do in it (a login lives there), and gives it to UID/GID
// when they are set. The existing directory is changed through an open descriptor,
// never a path a symlink could redirect.
func (s *Sink) ensureDir() error {
	dir := s.o.Dir
	if err := mkdir0700(dir); err != nil {
		return fmt.Errorf("cannot create copy directory: %w", err)
	}
	if err := checkDir(dir); err != nil {
		return err
	}
	d, err := os.OpenFile(dir, os.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NOFOLLOW, 0)
	if errors.Is(err, syscall.ELOOP) || errors.Is(err, syscall.ENOTDIR) {
		return &SymlinkError{Path: dir}
	}
	if err != nil {
		return err
	}
	defer d.Close()
	fi, err := d.Stat()
	if err != nil {
		return err
	}
	// Take away what others may do; never add anything (a directory the
	// user made read-only stays read-only, and the write then says so).
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		if err := d.Chmod(perm & 0o700); err != nil {
			return fmt.Errorf("cannot make copy directory %s private (mode 0700): %w", dir, err)
		}
	}
	return s.ownFile(d, fi)
}

// mkdir0700 creates dir and its missing parents. MkdirAll applies the
// umask; a directory it creates here is made 0700 whatever the umask.
func mkdir0700(dir string) error {
	if _, err := os.Lstat(dir); !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return os.Chmod(dir, 0o700)
}

// chownTo returns the uid and gid to give something owned as fi (-1 for a
// side that is right already, or not set).
func (s *Sink) chownTo(fi fs.FileInfo) (uid, gid int) {
	uid, gid = -1, -1
	st, ok := fi.Sys().(*syscall.Stat_t)
	if s.o.UID != nil && (!ok || int(st.Uid) != *s.o.UID) {
		uid = *s.o.UID
	}
	if s.o.GID != nil && (!ok || int(st.Gid) != *s.o.GID) {
		gid = *s.o.GID
	}
	return uid, gid
}

// own gives path (never followed if a symlink) to UID/GID when they are set
// and it is not theirs already.
func (s *Sink) own(path string) error {
	if s.o.UID == nil && s.o.GID == nil {
		return nil
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return err
	}
	uid, gid := s.chownTo(fi)
	if uid == -1 && gid == -1 {
		return nil
	}
	return s.chownErr(path, os.Lchown(path, uid, gid))
}

// ownFile is own for an open file.
func (s *Sink) ownFile(f *os.File, fi fs.FileInfo) error {
	if s.o.UID == nil && s.o.GID == nil {
		return nil
	}
	uid, gid := s.chownTo(fi)
	if uid == -1 && gid == -1 {
		return nil
	}
	return s.chownErr(f.Name(), f.Chown(uid, gid))
}

func (s *Sink) chownErr(path string, err error) error {
	if err == nil {
		return nil
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return chownHint(&atomicfile.ChownError{Path: path, UID: s.o.UID, GID: s.o.GID, Err: err})
}

// chownHint adds what to do to a failed chown.
func chownHint(ce *atomicfile.ChownError) error {
	hint := "check uid/gid in the config"
	if errors.Is(ce.Err, fs.ErrPermission) {
		hint = "run as root, or remove uid/gid from the config"
	}
	return fmt.Errorf("%w (%s)", ce, hint)
}

// readFile reads the copy file without following a symlink or blocking on
// a FIFO, at most credential.MaxSize+1 bytes so that an oversized copy is
// judged broken rather than read whole. It also returns what the file was
// (to tell later whether it changed).
func (s *Sink) readFile() ([]byte, fileStat, error) {
	f, err := openRegular(s.Location())
	if err != nil {
		return nil, fileStat{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fileStat{}, err
	}
	data, err := io.ReadAll(io.LimitReader(f, credential.MaxSize+1))
	if err != nil {
		return nil, fileStat{}, err
	}
	return data, statOf(fi), nil
}

func checkRegular(path string, fi fs.FileInfo) error {
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		return &SymlinkError{Path: path, File: true}
	case fi.IsDir():
		return fmt.Errorf("%s is a directory, not a file", path)
	case !fi.Mode().IsRegular():
		return fmt.Errorf("%s is not a regular file", path)
	}
	return nil
}
