// Package atomicfile replaces a file so that readers see either the old
// content or the new one, never a mix, and the new content survives a crash
// once Write returns.
//
// Write goes through a temporary file in the target's directory: create it
// 0600, write, chmod, chown if asked, fsync, close, rename over the target,
// then fsync the directory. Errors name paths, never the data.
package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// TempPattern is the os.CreateTemp pattern of the temporary files Write
// leaves in the target directory while it works (and after a crash).
const TempPattern = ".mc-broker-*.tmp"

// Options qualify a Write.
type Options struct {
	// Mode is the new file's permission bits; 0600 when zero. The umask does
	// not apply.
	Mode os.FileMode
	// UID and GID, when set, give the new file to that owner and group (nil
	// leaves that side as the process creates it).
	UID, GID *int
	// BeforeRename, when set, is called with the new content safely on
	// disk, just before it replaces the target; an error stops the write
	// (the target is left as it was) and is returned as it is. A writer
	// uses it to check that nobody replaced the target since it was read.
	BeforeRename func() error
	// AfterRename, when set, is called right after the rename (before the
	// directory is synced): a writer that took a lock in BeforeRename
	// lets it go there, so that the lock is held for the rename only.
	AfterRename func()
}

// ChownError reports that the new file could not be given to the requested
// owner. Path is the target, not the temporary file.
type ChownError struct {
	Path     string
	UID, GID *int
	Err      error
}

func (e *ChownError) Error() string {
	return "cannot give " + e.Path + " to " + Owner(e.UID, e.GID) + ": " + e.Err.Error()
}

func (e *ChownError) Unwrap() error { return e.Err }

// Owner renders a uid/gid pair for messages: "uid 1000", "gid 20",
// "uid 1000, gid 1000".
func Owner(uid, gid *int) string {
	var parts []string
	if uid != nil {
		parts = append(parts, "uid "+strconv.Itoa(*uid))
	}
	if gid != nil {
		parts = append(parts, "gid "+strconv.Itoa(*gid))
	}
	if len(parts) == 0 {
		return "its current owner"
	}
	return strings.Join(parts, ", ")
}

// Write atomically replaces dir/name with data. name must be a plain file
// name. A symlink at dir/name is replaced, not followed. On any error the
// temporary file is removed and dir/name is left as it was, except when only
// the final directory sync fails: then the new content is in place and the
// error says so. A directory sync the file system does not support
// (EINVAL, ENOTSUP) is not an error.
func Write(dir, name string, data []byte, o Options) (err error) {
	if err := checkName(name); err != nil {
		return err
	}
	target := filepath.Join(dir, name)
	mode := o.Mode
	if mode == 0 {
		mode = 0o600
	}

	f, err := os.CreateTemp(dir, TempPattern)
	if err != nil {
		return fmt.Errorf("cannot write %s: %w", target, err)
	}
	tmp := f.Name()
	closed := false
	defer func() {
		if err != nil {
			if !closed {
				_ = f.Close()
			}
			_ = os.Remove(tmp)
		}
	}()

	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("cannot write %s: %w", target, err)
	}
	if err = f.Chmod(mode); err != nil {
		return fmt.Errorf("cannot write %s: %w", target, err)
	}
	if o.UID != nil || o.GID != nil {
		uid, gid := -1, -1
		if o.UID != nil {
			uid = *o.UID
		}
		if o.GID != nil {
			gid = *o.GID
		}
		if cerr := f.Chown(uid, gid); cerr != nil {
			var pe *fs.PathError
			if errors.As(cerr, &pe) {
				cerr = pe.Err
			}
			err = &ChownError{Path: target, UID: o.UID, GID: o.GID, Err: cerr}
			return err
		}
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("cannot write %s: %w", target, err)
	}
	closed = true
	if err = f.Close(); err != nil {
		return fmt.Errorf("cannot write %s: %w", target, err)
	}
	if o.BeforeRename != nil {
		if err = o.BeforeRename(); err != nil {
			return err
		}
	}
	err = os.Rename(tmp, target)
	if o.AfterRename != nil && err == nil {
		o.AfterRename()
	}
	if err != nil {
		return fmt.Errorf("cannot write %s: %w", target, err)
	}
	if serr := syncDir(dir); serr != nil {
		// The rename happened: there is no temporary file left to remove.
		return fmt.Errorf("wrote %s but could not sync its directory: %w", target, serr)
	}
	return nil
}

func checkName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsRune(name, '/') || strings.ContainsRune(name, filepath.Separator) {
		return fmt.Errorf("invalid file name %q: want a plain name without directories", name)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	cerr := d.Close()
	if errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOTSUP) {
		err = nil
	}
	if err != nil {
		return err
	}
	return cerr
}

// RemoveStale removes temporary files Write left in dir when its process
// died between creating and renaming them (kill -9, power loss). They may
// hold a login, in a directory a container sees. Only files matching
// TempPattern and older than age are removed, so a Write in progress in
// another process is never touched. It returns how many it removed.
func RemoveStale(dir string, age time.Duration) int {
	matches, _ := filepath.Glob(filepath.Join(dir, TempPattern))
	n := 0
	for _, m := range matches {
		fi, err := os.Lstat(m)
		if err != nil || !fi.Mode().IsRegular() || time.Since(fi.ModTime()) < age {
			continue
		}
		if os.Remove(m) == nil {
			n++
		}
	}
	return n
}
