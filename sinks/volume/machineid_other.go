//go:build !linux

package volume

import (
	"os"
	"os/exec"
	"regexp"
)

var platformUUID = regexp.MustCompile(`"IOPlatformUUID" = "([0-9A-Fa-f-]+)"`)

// machineID is the Mac's hardware UUID (what System Information shows),
// else the host name, which macOS may change with the network. It runs
// ioreg once per process, and only when a volume copy is used.
func machineID() string {
	out, err := exec.Command("/usr/sbin/ioreg", "-rd1", "-c", "IOPlatformExpertDevice").Output()
	if err == nil {
		if m := platformUUID.FindSubmatch(out); m != nil {
			return string(m[1])
		}
	}
	h, _ := os.Hostname()
	return "host:" + h
}
