package lockmirror

import (
	"os"
	"syscall"
)

// lockStat identifies the lock directory at path without following a
// symlink; see stat_linux.go.
func lockStat(path string) (id LockID, isDir bool, err error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return LockID{}, false, err
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		id = LockID{Dev: uint64(st.Dev), Ino: st.Ino,
			Ctime: st.Ctimespec.Nano(), Born: st.Birthtimespec.Nano()}
	}
	return id, fi.IsDir(), nil
}
