// Package file reads a login from a file on the host: the CLI's own
// credentials file, or any file for the opaque "file" kind.
package file

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"syscall"

	"github.com/mc-broker/mc-broker/broker/credential"
)

// Source is a login kept in one file.
type Source struct {
	name      string
	kind      credential.Kind
	path      string
	lockFiles []string
	dirLock   string
	// ownLock: see WithOwnLock.
	ownLock string
	// noLockMirror: see WithoutLockMirror.
	noLockMirror bool
}

// New returns the source called name that reads path as kind.
func New(name string, kind credential.Kind, path string) *Source {
	return &Source{name: name, kind: kind, path: path}
}

func (s *Source) Name() string          { return s.name }
func (s *Source) Kind() credential.Kind { return s.kind }
func (s *Source) Location() string      { return s.path }

// missingReason says why a missing file means "not logged in". On macOS
// Claude Code keeps its login in the Keychain and removes the file, so a
// missing file there says little about whether the user is logged in: this
// source reads the file only because the config says store: file, or names
// a path of its own.
func missingReason(kind credential.Kind, goos string) string {
	if goos == "darwin" && kind.Name() == "claude" {
		return "no file here; on macOS Claude Code keeps its login in the Keychain: remove store: file and path from this source (store: auto reads the Keychain)"
	}
	return "no file here"
}

// HostFileError refuses a write into the host's own Claude Code file on
// macOS: Claude Code deletes that file when it uses the Keychain, or
// prefers it over the Keychain when it finds one.
type HostFileError struct{ Path string }

func (e *HostFileError) Error() string {
	return "refusing to write " + e.Path + ": on macOS Claude Code keeps its login in the Keychain and deletes or prefers this file"
}

// CheckWriteBack returns *HostFileError when writing the source back would
// write a Claude file on macOS (goos "darwin"). Write-back into a file
// source calls it first.
func (s *Source) CheckWriteBack(goos string) error {
	if goos == "darwin" && s.kind.Name() == "claude" {
		return &HostFileError{Path: s.path}
	}
	return nil
}

// Read returns the file's bytes. It follows symlinks (dotfile managers link
// ~/.claude and the like) but reads only regular files, and at most one byte
// more than credential.MaxSize so that an oversized file is judged broken
// without being read whole.
func (s *Source) Read(ctx context.Context) ([]byte, error) {
	// O_NONBLOCK: a FIFO where the file belongs must not hang sync; it is
	// refused below as not a file.
	f, err := os.OpenFile(s.path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, &credential.NotLoggedInError{Reason: missingReason(s.kind, runtime.GOOS)}
	}
	if err != nil {
		return nil, fmt.Errorf("cannot read: %w", errors.Unwrap(err))
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("cannot read: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, &NotAFileError{Path: s.path, Mode: st.Mode()}
	}
	data, err := io.ReadAll(io.LimitReader(f, credential.MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("cannot read: %w", err)
	}
	return data, nil
}

// NotAFileError is a source path that names something other than a
// regular file: most often a directory, which Docker creates on the host
// when it bind-mounts a login file that does not exist yet.
type NotAFileError struct {
	Path string
	Mode fs.FileMode
}

func (e *NotAFileError) Error() string {
	return filepath.Base(e.Path) + " is " + describeType(e.Mode) + ", not a file"
}

// Hint says how to get a file there again.
func (e *NotAFileError) Hint() string {
	if e.Mode.IsDir() {
		return "Docker creates an empty directory on the host when it bind-mounts a file that does not exist: " +
			"remove it (rmdir " + e.Path + ") and log in again, or set the source's path to the credentials file"
	}
	return "set the source's path to the credentials file"
}

// describeType names a non-regular file's type as a user would.
func describeType(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe (FIFO)"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	}
	return "a special file"
}

func isNotLoggedIn(err error) bool {
	var nl *credential.NotLoggedInError
	return errors.As(err, &nl)
}
