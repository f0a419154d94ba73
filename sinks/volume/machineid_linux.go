package volume

import (
	"os"
	"strings"
)

// machineID is systemd's machine id (dbus's on older systems), else the
// host name.
func machineID() string {
	for _, f := range []string{"/etc/machine-id", "/var/lib/dbus/machine-id"} {
		if b, err := os.ReadFile(f); err == nil && strings.TrimSpace(string(b)) != "" {
			return strings.TrimSpace(string(b))
		}
	}
	h, _ := os.Hostname()
	return "host:" + h
}
