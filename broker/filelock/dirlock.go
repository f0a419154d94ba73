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
	if record != "" {
		// A lock a killed process left goes first; then the record of
		// what this one is about to make, before the mkdir, so that a
		// process killed right after it still leaves one.
		removeLeftover(path, record)
	}
	// Not taken: the pending record must not outlive this attempt, or a
	// lock the CLI makes later could be taken for this process's.
	forget := func() {
		if record != "" {
			_ = os.Remove(record)
		}
	}
	for {
		if record != "" {
			writeRecord(record, lockRecord{PID: os.Getpid(), Pending: time.Now().UnixNano()})
		}
		err := os.Mkdir(path, 0o700)
		if err == nil {
			break
		}
		if errors.Is(err, fs.ErrNotExist) {
			forget()
			return func() {}, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			forget()
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
			forget()
			return nil, &DirLockBusyError{Path: path, After: wait}
		}
		select {
		case <-ctx.Done():
			forget()
			return nil, ctx.Err()
		case <-time.After(dirLockPoll):
		}
	}
	if record != "" {
		if dev, ino, ok := dirID(path); ok {
			writeRecord(record, lockRecord{PID: os.Getpid(), Dev: dev, Ino: ino})
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
		if record != "" {
			_ = os.Remove(record)
		}
	}, nil
}

// lockRecord is what DirLockRecorded keeps of a lock directory it made:
// the directory's identity once made, or, just before the mkdir, when it
// was about to make one (Pending, in ns).
type lockRecord struct {
	PID     int    `json:"pid"`
	Dev     uint64 `json:"dev,omitempty"`
	Ino     uint64 `json:"ino,omitempty"`
	Pending int64  `json:"pending,omitempty"`
}

// pendingSlack is how long after a pending record a lock directory may
// have been made and still count as the recording process's: its mkdir
// follows the record at once.
const pendingSlack = time.Second

func dirID(path string) (dev, ino uint64, ok bool) {
	var st unix.Stat_t
	if unix.Lstat(path, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return 0, 0, false
	}
	return uint64(st.Dev), uint64(st.Ino), true
}

// dirChanged is when path, a directory, last changed (a fresh mkdir: when
// it was made).
func dirChanged(path string) (time.Time, bool) {
	var st unix.Stat_t
	if unix.Lstat(path, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return time.Time{}, false
	}
	return time.Unix(statCtime(&st)), true
}

func writeRecord(record string, r lockRecord) {
	data, _ := json.Marshal(r)
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
	if r.Pending != 0 {
		// Killed between the record and the record of what it made: the
		// directory is its own only if made right after.
		// (File systems stamp times with a coarse clock, a little behind
		// the one the record was written with: the slack goes both ways.)
		at, ok := dirChanged(path)
		pending := time.Unix(0, r.Pending)
		if !ok || at.Before(pending.Add(-pendingSlack)) || at.After(pending.Add(pendingSlack)) {
			return false
		}
	} else if dev, ino, ok := dirID(path); !ok || dev != r.Dev || ino != r.Ino {
		return false // not the directory it made
	}
	_ = os.Remove(record)
	return unix.Rmdir(path) == nil
}
