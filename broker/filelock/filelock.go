// Package filelock takes exclusive flock(2) locks on files, waiting with a
// bounded poll so that a stuck holder turns into a clear error instead of a
// hang.
//
// flock locks belong to an open file description: two Lock calls on the same
// path exclude each other even inside one process, and the kernel releases a
// lock when its holder dies.
package filelock

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

const (
	firstBackoff = time.Millisecond
	maxBackoff   = 50 * time.Millisecond
)

// TimeoutError reports a lock that stayed held for the whole wait.
type TimeoutError struct {
	Path   string
	Waited time.Duration
}

func (e *TimeoutError) Error() string {
	return fmt.Sprintf("%s is locked by another process (waited %s)", e.Path, e.Waited)
}

// Lock takes an exclusive lock on path, creating it 0600 if it is missing.
// It polls until the lock is free, ctx is done (the error then wraps
// ctx.Err()) or timeout has passed (*TimeoutError); a timeout of zero or less
// tries once. A path that is a symlink or not a regular file is refused.
//
// unlock releases the lock and closes the file; calling it again does
// nothing.
func Lock(ctx context.Context, path string, timeout time.Duration) (unlock func(), err error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("waiting for lock %s: %w", path, err)
	}
	fd, err := open(path)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	delay := firstBackoff
	for {
		err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			_ = unix.Close(fd)
			return nil, fmt.Errorf("cannot lock %s: %w", path, err)
		}
		left := timeout - time.Since(start)
		if left <= 0 {
			_ = unix.Close(fd)
			return nil, &TimeoutError{Path: path, Waited: max(timeout, 0)}
		}
		t := time.NewTimer(min(delay, left))
		select {
		case <-ctx.Done():
			t.Stop()
			_ = unix.Close(fd)
			return nil, fmt.Errorf("waiting for lock %s: %w", path, ctx.Err())
		case <-t.C:
		}
		delay = min(delay*2, maxBackoff)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			_ = unix.Flock(fd, unix.LOCK_UN)
			_ = unix.Close(fd)
		})
	}, nil
}

// open opens path for locking without following a symlink and without
// blocking on a FIFO, and checks that it is a regular file.
func open(path string) (int, error) {
	var fd int
	var err error
	for {
		fd, err = unix.Open(path, unix.O_RDONLY|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0o600)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if errors.Is(err, unix.ELOOP) {
		return -1, fmt.Errorf("refusing to lock %s: it is a symlink", path)
	}
	if err != nil {
		return -1, fmt.Errorf("cannot open lock file %s: %w", path, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		_ = unix.Close(fd)
		return -1, fmt.Errorf("cannot open lock file %s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		_ = unix.Close(fd)
		return -1, fmt.Errorf("refusing to lock %s: it is not a regular file", path)
	}
	return fd, nil
}
