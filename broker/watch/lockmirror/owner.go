package lockmirror

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// Names of Claude Code's refresh lock in its config directory (checked
// against claude 2.1.332): a directory taken with mkdir, and the owner file
// written beside it once the directory is held.
const (
	LockName  = ".oauth_refresh.lock"
	OwnerName = ".oauth_refresh.lock.owner"
)

// maxOwnerSize is how much of an owner file is read; Claude Code reads at
// most 4096 bytes of it too.
const maxOwnerSize = 4096

// Owner is the JSON Claude Code writes to OwnerName after taking the lock.
// A waiting Claude Code reads it only to decide whether the holder is gone
// and the lock may be taken over: it never takes over a lock whose owner is
// in another pid domain or pid space, or whose process is alive.
type Owner struct {
	PID       int    `json:"pid"`
	ProcStart string `json:"procStart,omitempty"`
	// PIDDomain names the machine and pid namespace: on Linux
	// "linux:<machine-id>:<readlink /proc/self/ns/pid>".
	PIDDomain string `json:"pidDomain"`
	// PIDSpace is "<hostname>#<readlink /proc/self/ns/pid>".
	PIDSpace string `json:"pidSpace"`
	// LockBirthtimeMs is the lock directory's birth time, in milliseconds
	// with a fraction (as Node and Bun report st_birthtime).
	LockBirthtimeMs float64 `json:"lockBirthtimeMs"`
	// LegacyLockBirthtimeMs is the birth time of Claude Code's older lock
	// (<config dir>.lock, beside the directory); mc-broker never takes it.
	LegacyLockBirthtimeMs float64 `json:"legacyLockBirthtimeMs,omitempty"`
}

// Identity names a process the way Claude Code names a lock holder.
type Identity struct {
	PID       int
	ProcStart string
	PIDDomain string
	PIDSpace  string
}

// Self is the running process's identity, computed as Claude Code computes
// its own (see identity_*.go).
func Self() Identity { return self() }

// names reports whether o names the process id.
func (id Identity) names(o *Owner) bool {
	return o.PID == id.PID && o.ProcStart == id.ProcStart && o.PIDDomain == id.PIDDomain && o.PIDSpace == id.PIDSpace
}

// writeOwner writes dir's owner file by temp file + rename, as Claude Code
// does, so that a reader never sees half of it. It holds no secret: 0644,
// so that a container's user can read it.
func writeOwner(dir string, o Owner) error {
	data, err := json.Marshal(o)
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, OwnerName+".mc-broker-"+strconv.Itoa(o.PID)+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_EXCL, 0o644)
	if errors.Is(err, fs.ErrExist) {
		// Left by a killed mc-broker with the same pid: ours to replace.
		_ = os.Remove(tmp)
		f, err = os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_EXCL, 0o644)
	}
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, OwnerName)); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// ReadOwner reads dir's owner file; nil without error when there is none.
// A container can put anything there: a symlink is not followed, a FIFO
// is not waited on, and only a regular file is read, at most
// maxOwnerSize+1 bytes.
func ReadOwner(dir string) (*Owner, error) {
	path := filepath.Join(dir, OwnerName)
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return nil, err
	} else if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxOwnerSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxOwnerSize {
		return nil, fmt.Errorf("%s: larger than %d bytes", filepath.Join(dir, OwnerName), maxOwnerSize)
	}
	var o Owner
	if err := json.Unmarshal(data, &o); err != nil {
		return nil, fmt.Errorf("%s: not an owner record: %v", filepath.Join(dir, OwnerName), err)
	}
	return &o, nil
}

// RemoveLeftovers removes refresh locks in dirs whose owner is a process
// of this machine and pid namespace that is gone: the mirrors of an
// mc-broker that was killed (kill -9, power loss) before it could take them
// down, or a lock of a host Claude Code that died holding it. A waiting
// Claude Code in a container never takes over a lock whose owner is in
// another pid domain, so without this such a leftover would block its
// refreshes. A lock without an owner file, or whose owner lives or is
// from another machine or namespace, is left alone. It returns how many it
// removed.
func RemoveLeftovers(dirs []string, self Identity) int {
	n := 0
	for _, dir := range dirs {
		owner, err := ReadOwner(dir)
		if err != nil || owner == nil || owner.PIDDomain != self.PIDDomain || owner.PIDSpace != self.PIDSpace {
			continue
		}
		if owner.PID == self.PID && owner.ProcStart == self.ProcStart {
			continue // ours, alive
		}
		if start, alive := startOf(owner.PID); alive && start == owner.ProcStart {
			continue
		}
		if fi, err := os.Lstat(filepath.Join(dir, LockName)); err != nil || !fi.IsDir() {
			continue
		}
		// The owner file first, then the directory, as Claude Code does.
		_ = os.Remove(filepath.Join(dir, OwnerName))
		if os.Remove(filepath.Join(dir, LockName)) == nil {
			n++
		}
	}
	return n
}
