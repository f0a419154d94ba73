package main

import "golang.org/x/sys/unix"

// lockBirthMs is a lock directory's birth time in milliseconds, as Node and
// Bun report birthtimeMs.
func lockBirthMs(path string) (float64, bool) {
	var st unix.Statx_t
	if unix.Statx(unix.AT_FDCWD, path, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_BTIME, &st) != nil || st.Mask&unix.STATX_BTIME == 0 {
		return 0, false
	}
	return float64(st.Btime.Sec)*1e3 + float64(st.Btime.Nsec)/1e6, true
}
