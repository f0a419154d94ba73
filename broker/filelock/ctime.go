package filelock

import "golang.org/x/sys/unix"

func statCtime(st *unix.Stat_t) (sec, nsec int64) { return st.Ctim.Sec, st.Ctim.Nsec }
