//go:build !linux

package engine

import (
	"os/exec"
	"syscall"
)

// setProcAttr puts ssh in a process group of its own, so that a Ctrl-C at
// the terminal reaches mc-broker (which then removes its helper containers
// through ssh) and not ssh first. If mc-broker dies, ssh sees its standard
// input close and ends.
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}
