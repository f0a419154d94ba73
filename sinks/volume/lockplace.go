package volume

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"time"

	"github.com/mc-broker/mc-broker/broker/watch/lockmirror"
	"github.com/mc-broker/mc-broker/sinks/volume/resident"
)

// lockTimeout bounds one refresh-lock request to the agent: the watcher
// makes them on its one goroutine.
var lockTimeout = time.Second

// RefreshLockPlace is the copy's directory as a member of its login's
// refresh-lock mirroring (docs/LOCKMIRROR.md): name tells it from every
// directory on the host, place does the lock's file operations in the
// volume through the resident agent, and events says when the agent saw
// the lock beside the login change. While no agent serves the copy the
// place answers as a directory that is not there: nothing is mirrored into
// or out of it.
func (s *Sink) RefreshLockPlace() (name string, place lockmirror.Place, events <-chan struct{}) {
	name = "volume:" + s.o.Volume
	if !s.o.Engine.IsZero() {
		name += "@" + s.o.Engine.String()
	}
	return path.Clean(name + s.o.Path), volumePlace{s}, s.locks
}

func (s *Sink) lockChanged() {
	select {
	case s.locks <- struct{}{}:
	default:
	}
}

type volumePlace struct{ s *Sink }

// call makes one lock request through the agent.
func (p volumePlace) call(op string, data []byte) (resident.Reply, error) {
	conn, i := p.s.agent()
	if conn == nil {
		return resident.Reply{}, fmt.Errorf("no resident agent serves %s: %w", p.s.Location(), fs.ErrNotExist)
	}
	ctx, cancel := context.WithTimeout(context.Background(), lockTimeout)
	defer cancel()
	rep, err := conn.call(ctx, resident.Request{Op: op, File: i, Data: data})
	if err != nil {
		return rep, err
	}
	if rep.Err != "" {
		err := errors.New(rep.Err)
		switch {
		case rep.NotExist:
			err = fmt.Errorf("%w: %s", fs.ErrNotExist, rep.Err)
		case rep.Exist:
			err = fmt.Errorf("%w: %s", fs.ErrExist, rep.Err)
		}
		return rep, err
	}
	return rep, nil
}

func (p volumePlace) StatLock() (lockmirror.LockID, bool, error) {
	rep, err := p.call("lockstat", nil)
	if err != nil {
		return lockmirror.LockID{}, false, err
	}
	if rep.Lock == nil {
		return lockmirror.LockID{}, false, fs.ErrNotExist
	}
	l := rep.Lock
	return lockmirror.LockID{Dev: l.Dev, Ino: l.Ino, Ctime: l.Ctime, Born: l.Born}, l.IsDir, nil
}

func (p volumePlace) MkdirLock() error { _, err := p.call("lockmk", nil); return err }

func (p volumePlace) WriteOwner(o lockmirror.Owner) error {
	data, err := json.Marshal(o)
	if err != nil {
		return err
	}
	_, err = p.call("ownerw", data)
	return err
}

func (p volumePlace) ReadOwner() (*lockmirror.Owner, error) {
	rep, err := p.call("ownerr", nil)
	if err != nil || !rep.Exists {
		return nil, err
	}
	var o lockmirror.Owner
	if err := json.Unmarshal(rep.Data, &o); err != nil {
		return nil, err
	}
	return &o, nil
}

func (p volumePlace) RemoveOwner() error { _, err := p.call("ownerrm", nil); return err }
func (p volumePlace) RemoveLock() error  { _, err := p.call("lockrm", nil); return err }
