package filelock

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// Claude Code serialises writes to its secure storage (the Keychain item on
// macOS, .credentials.json elsewhere) with a proper-lockfile lock: the
// directory $CLAUDE_CONFIG_DIR/.storage-write.lock, made with mkdir, counted
// stale when its mtime is older than 15 s, its mtime refreshed while held
// (checked in claude 2.1.332). Write-back takes the same lock, so that
// Claude's refresh and mc-broker's write-back never interleave between a
// read and a write of the login.
const (
	dirLockStale   = 15 * time.Second
	dirLockRefresh = dirLockStale / 3
	dirLockPoll    = 100 * time.Millisecond
)

// DirLockBusyError is a CLI lock that stayed held, and fresh, past the wait.
type DirLockBusyError struct {
	Path  string
	After time.Duration
}

func (e *DirLockBusyError) Error() string {
	return fmt.Sprintf("the CLI held its write lock %s for more than %s; nothing was written", e.Path, e.After)
}

// Hint says what to do.
func (e *DirLockBusyError) Hint() string {
	return "if no claude process runs, remove the lock directory; the next pass retries"
}

// DirLock takes the lock directory path, waiting up to wait. It returns
// a release function. A missing parent directory means the CLI has no
// config directory here, so there is nobody to exclude: release is a
// no-op.
func DirLock(ctx context.Context, path string, wait time.Duration) (release func(), err error) {
	return dirLock(ctx, path, wait, false)
}

// DirLockMarked is DirLock for a caller that holds mc-broker's own flock
// for path across the call and the release (every mc-broker that takes
// this lock does). It marks the directory it makes as mc-broker's, with the
// sticky bit, which Claude's proper-lockfile never sets. A marked directory
// found at path was then left by an mc-broker that was killed holding the
// lock (a live one would hold the flock), and is removed at once instead
// of blocking the CLI and the next run until it goes stale.
func DirLockMarked(ctx context.Context, path string, wait time.Duration) (release func(), err error) {
	return dirLock(ctx, path, wait, true)
}

// DirLockOwned takes mc-broker's own flock at own (a file in its state
// directory, so no container sees it; created when missing), then the
// lock directory path marked as DirLockMarked does; release lets go of
// both. With own empty it is DirLock.
func DirLockOwned(ctx context.Context, path, own string, wait time.Duration) (release func(), err error) {
	if own == "" {
		return DirLock(ctx, path, wait)
	}
	if err := os.MkdirAll(filepath.Dir(own), 0o700); err != nil {
		return nil, fmt.Errorf("cannot create lock directory: %w", err)
	}
	unlock, err := Lock(ctx, own, wait)
	if err != nil {
		return nil, err
	}
	rel, err := DirLockMarked(ctx, path, wait)
	if err != nil {
		unlock()
		return nil, err
	}
	return func() { rel(); unlock() }, nil
}

func dirLock(ctx context.Context, path string, wait time.Duration, marked bool) (release func(), err error) {
	deadline := time.Now().Add(wait)
	for {
		err := mkdirLock(path, marked)
		if err == nil {
			break
		}
		if errors.Is(err, fs.ErrNotExist) {
			return func() {}, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("cannot take the CLI's write lock %s: %w", path, errors.Unwrap(err))
		}
		// Lstat: in a copy directory a container may put anything at the
		// lock's path; a symlink is never followed.
		st, serr := os.Lstat(path)
		switch {
		case serr != nil || !st.IsDir():
		case marked && st.Mode()&fs.ModeSticky != 0:
			// A killed mc-broker's (see DirLockMarked).
			_ = unix.Rmdir(path)
			continue
		case time.Since(st.ModTime()) > dirLockStale:
			// Left by a process that died: proper-lockfile removes it too.
			_ = unix.Rmdir(path)
			continue
		}
		if time.Now().After(deadline) {
			return nil, &DirLockBusyError{Path: path, After: wait}
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(dirLockPoll):
		}
	}
	// Keep the mtime fresh while held, as proper-lockfile does, so that a
	// slow security call (a prompt) does not make the lock look stale.
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(dirLockRefresh)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case now := <-t.C:
				ts := unix.NsecToTimespec(now.UnixNano())
				_ = unix.UtimesNanoAt(unix.AT_FDCWD, path, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW)
			}
		}
	}()
	return func() {
		close(stop)
		<-done
		// Only the directory this lock made: rmdir fails on anything else.
		_ = unix.Rmdir(path)
	}, nil
}

// mkdirLock makes the lock directory, marked with the sticky bit when
// asked. Linux's mkdir sets it; where mkdir does not, it is set through
// the directory opened without following a symlink, never by path (in a
// copy directory a container could swap the path for a link).
func mkdirLock(path string, marked bool) error {
	mode := uint32(0o700)
	if marked {
		mode |= unix.S_ISVTX
	}
	if err := unix.Mkdir(path, mode); err != nil {
		return &fs.PathError{Op: "mkdir", Path: path, Err: err}
	}
	if !marked {
		return nil
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil // held all the same, only not marked
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if unix.Fstat(fd, &st) == nil && st.Mode&unix.S_ISVTX == 0 {
		_ = unix.Fchmod(fd, 0o700|unix.S_ISVTX)
	}
	return nil
}
