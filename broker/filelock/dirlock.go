package filelock

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"
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
	deadline := time.Now().Add(wait)
	for {
		err := os.Mkdir(path, 0o700)
		if err == nil {
			break
		}
		if errors.Is(err, fs.ErrNotExist) {
			return func() {}, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("cannot take the CLI's write lock %s: %w", path, errors.Unwrap(err))
		}
		if st, serr := os.Stat(path); serr == nil && time.Since(st.ModTime()) > dirLockStale {
			// Left by a process that died: proper-lockfile removes it too.
			os.Remove(path)
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
				os.Chtimes(path, now, now)
			}
		}
	}()
	return func() {
		close(stop)
		<-done
		os.Remove(path)
	}, nil
}
