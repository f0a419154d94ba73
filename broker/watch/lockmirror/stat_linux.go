package lockmirror

import "golang.org/x/sys/unix"

// lockStat identifies the lock directory at path without following a
// symlink. born is the birth time in nanoseconds since the epoch, 0 when
// the file system does not record it.
func lockStat(path string) (id LockID, isDir bool, err error) {
	var st unix.Statx_t
	mask := unix.STATX_TYPE | unix.STATX_INO | unix.STATX_BTIME | unix.STATX_CTIME
	if err := unix.Statx(unix.AT_FDCWD, path, unix.AT_SYMLINK_NOFOLLOW, mask, &st); err != nil {
		return LockID{}, false, err
	}
	id = LockID{Dev: unix.Mkdev(st.Dev_major, st.Dev_minor), Ino: st.Ino,
		Ctime: st.Ctime.Sec*1e9 + int64(st.Ctime.Nsec)}
	if st.Mask&unix.STATX_BTIME != 0 {
		id.Born = st.Btime.Sec*1e9 + int64(st.Btime.Nsec)
	}
	return id, st.Mode&unix.S_IFMT == unix.S_IFDIR, nil
}
