package lockmirror

import (
	"os"
	"syscall"
)

// lockStat identifies the lock directory at path without following a
// symlink; see stat_linux.go.
func lockStat(path string) (id fileID, isDir bool, err error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return fileID{}, false, err
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		id = fileID{dev: uint64(st.Dev), ino: st.Ino,
			ctime: st.Ctimespec.Nano(), born: st.Birthtimespec.Nano()}
	}
	return id, fi.IsDir(), nil
}
