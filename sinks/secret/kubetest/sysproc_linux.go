package kubetest

import "syscall"

// sysProcAttr ends etcd and kube-apiserver with the test binary, even when
// it is killed before it can stop them.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
