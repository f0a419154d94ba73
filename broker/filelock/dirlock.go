package filelock

import (
	"context"
	"encoding/json"
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
	return DirLockRecorded(ctx, path, "", wait)
}

// DirLockRecorded is DirLock that also keeps a record, at record (a path
// in a directory only this program writes), of the lock directory it made
// and the process that holds it. A process killed while it held the lock
// leaves the directory behind, and the CLI and the next run would wait
// for it to go stale; the next DirLockRecorded finds the record of a
// process that is gone, and removes that directory at once.
func DirLockRecorded(ctx context.Context, path, record string, wait time.Duration) (release func(), err error) {
	deadline := time.Now().Add(wait)
	for {
		err := os.Mkdir(path, 0o700)
		if err == nil {
			break
		}
		if errors.Is(err, fs.ErrExist) && record != "" && removeLeftover(path, record) {
			continue
		}
		if errors.Is(err, fs.ErrNotExist) {
			return func() {}, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("cannot take the CLI's write lock %s: %w", path, errors.Unwrap(err))
		}
		// Lstat: in a copy directory a container may put anything at the
		// lock's path; a symlink is never followed.
		if st, serr := os.Lstat(path); serr == nil && st.IsDir() && time.Since(st.ModTime()) > dirLockStale {
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
	if record != "" {
		writeRecord(path, record)
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
		if record != "" {
			_ = os.Remove(record)
		}
	}, nil
}

// lockRecord is what DirLockRecorded keeps of a lock directory it made.
type lockRecord struct {
	PID int    `json:"pid"`
	Dev uint64 `json:"dev"`
	Ino uint64 `json:"ino"`
}

func dirID(path string) (dev, ino uint64, ok bool) {
	var st unix.Stat_t
	if unix.Lstat(path, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return 0, 0, false
	}
	return uint64(st.Dev), uint64(st.Ino), true
}

func writeRecord(path, record string) {
	dev, ino, ok := dirID(path)
	if !ok {
		return
	}
	data, _ := json.Marshal(lockRecord{PID: os.Getpid(), Dev: dev, Ino: ino})
	// Written in place: a record cut short does not parse, and then
	// nothing is removed on its word.
	if os.WriteFile(record, data, 0o600) != nil {
		_ = os.MkdirAll(filepath.Dir(record), 0o700)
		_ = os.WriteFile(record, data, 0o600)
	}
}

// removeLeftover removes the lock directory at path when record says a
// process that is gone made it; it reports whether it did.
func removeLeftover(path, record string) bool {
	data, err := os.ReadFile(record)
	if err != nil {
		return false
	}
	var r lockRecord
	if json.Unmarshal(data, &r) != nil || r.PID <= 0 || r.PID == os.Getpid() {
		return false
	}
	if err := unix.Kill(r.PID, 0); err == nil || errors.Is(err, unix.EPERM) {
		return false // still there (or a process that took its number)
	}
	dev, ino, ok := dirID(path)
	if !ok || dev != r.Dev || ino != r.Ino {
		return false // not the directory it made
	}
	_ = os.Remove(record)
	return unix.Rmdir(path) == nil
}
