package engine

import (
	"os/exec"
	"syscall"
)

// setProcAttr puts ssh in a process group of its own, so that a Ctrl-C at
// the terminal reaches mc-broker (which then removes its helper containers
// through ssh) and not ssh first, and ends ssh if mc-broker dies.
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
