package lockmirror

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
)

// Place is a directory of a group that is not on this host's file system:
// a copy in a Docker volume, reached through the engine's resident agent.
// Its methods mean what they mean for a directory here (see Local); errors
// matching fs.ErrNotExist say the directory, or the lock, is not there (a
// place that cannot be reached now says so too: nothing runs in it that
// mc-broker can hold back). A Place must answer quickly: the watcher calls
// it on its one goroutine.
type Place interface {
	// StatLock identifies the lock directory, without following a link.
	StatLock() (id LockID, isDir bool, err error)
	// MkdirLock takes the lock (mode 0755): fs.ErrExist when it is held.
	MkdirLock() error
	// WriteOwner writes the owner file by temp file + rename (0644).
	WriteOwner(o Owner) error
	// ReadOwner reads the owner file; nil without error when there is none.
	ReadOwner() (*Owner, error)
	// RemoveOwner removes the owner file, RemoveLock the lock directory
	// (rmdir: never one someone put something in).
	RemoveOwner() error
	RemoveLock() error
}

// Local is a directory on this host: a Place as the Mirror uses its
// directories (the resident agent uses it inside the engine).
type Local string

func (d Local) StatLock() (LockID, bool, error) { return lockStat(filepath.Join(string(d), LockName)) }
func (d Local) MkdirLock() error                { return os.Mkdir(filepath.Join(string(d), LockName), 0o755) }
func (d Local) WriteOwner(o Owner) error        { return writeOwner(string(d), o) }
func (d Local) ReadOwner() (*Owner, error)      { return ReadOwner(string(d)) }

func (d Local) RemoveOwner() error {
	err := os.Remove(filepath.Join(string(d), OwnerName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

func (d Local) RemoveLock() error { return os.Remove(filepath.Join(string(d), LockName)) }

// place is dir's Place: the one Options.Places names, else dir on this
// host.
func (m *Mirror) place(dir string) Place {
	if p, ok := m.o.Places[dir]; ok {
		return p
	}
	return Local(dir)
}
