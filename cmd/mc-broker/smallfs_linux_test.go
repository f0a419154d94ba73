package main

import "syscall"

// mountSmallFS mounts a 64 KiB tmpfs on dir (root with CAP_SYS_ADMIN), to
// be filled; unmount takes it away.
func mountSmallFS(dir string) (unmount func(), err error) {
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=64k,mode=0700"); err != nil {
		return nil, err
	}
	return func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) }, nil
}
