package file

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/mc-broker/mc-broker/broker"
	"github.com/mc-broker/mc-broker/broker/atomicfile"
	"github.com/mc-broker/mc-broker/broker/filelock"
)

var _ broker.WritableSource = (*Source)(nil)

// lockTimeout bounds the wait for each of the CLI's lock files: a CLI holds
// them for the few milliseconds of a write.
const lockTimeout = 10 * time.Second

// WithDirLock names a mkdir-style lock the CLI holds while writing its
// login (Claude Code: .storage-write.lock in its config directory); Update
// holds it too.
func (s *Source) WithDirLock(path string) *Source {
	s.dirLock = path
	return s
}

// WithOwnLock names mc-broker's own lock file (in its state directory) to
// hold around the CLI's write lock: a write lock left by a killed
// mc-broker is then recognised and removed by the next one instead of
// blocking the CLI until it goes stale (filelock.DirLockOwned).
func (s *Source) WithOwnLock(path string) *Source {
	s.ownLock = path
	return s
}

// WithLockFiles names the lock files the CLI flocks, in order, in the login
// file's directory around writing it (Codex: auth.lock, auth.json.lock).
// Update takes the same ones, so a write-back never interleaves with the
// CLI's own write.
func (s *Source) WithLockFiles(names []string) *Source {
	s.lockFiles = append([]string(nil), names...)
	return s
}

// WatchedFiles is the login file, for the watcher.
func (s *Source) WatchedFiles() []string { return []string{s.path} }

// Update writes a newer login back into the host's file (watch adopts a
// container's refresh this way). It takes the CLI's lock files, reads the
// current content, and replaces the file atomically with what decide
// returns, keeping its permission bits. A symlinked login file (a dotfile
// manager's) is replaced at the link's target, so the link survives.
func (s *Source) Update(ctx context.Context, decide broker.Decide) error {
	if err := s.CheckWriteBack(runtime.GOOS); err != nil {
		return err
	}
	if s.dirLock != "" {
		release, err := filelock.DirLockOwned(ctx, s.dirLock, s.ownLock, lockTimeout)
		if err != nil {
			return err
		}
		defer release()
	}
	target, err := filepath.EvalSymlinks(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		target = s.path
	} else if err != nil {
		return fmt.Errorf("cannot resolve %s: %w", s.path, errors.Unwrap(err))
	}
	dir := filepath.Dir(target)
	// The CLI takes its locks in its own directory (where the link is),
	// not beside a dotfile manager's target.
	for _, name := range s.lockFiles {
		unlock, err := filelock.Lock(ctx, filepath.Join(filepath.Dir(s.path), name), lockTimeout)
		if err != nil {
			return err
		}
		defer unlock()
	}
	current, err := s.Read(ctx)
	exists := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) && !isNotLoggedIn(err) {
		return err
	}
	next, write := decide(current, exists)
	if !write {
		return nil
	}
	mode := os.FileMode(0o600)
	if fi, err := os.Stat(target); err == nil {
		mode = fi.Mode().Perm() &^ 0o077 // never wider than the owner's
	}
	return atomicfile.Write(dir, filepath.Base(target), next, atomicfile.Options{Mode: mode})
}
