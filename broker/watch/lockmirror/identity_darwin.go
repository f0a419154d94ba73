package lockmirror

import (
	"os"
	"os/exec"
	"strings"
)

// self on macOS and other systems: claude's Linux build was read for this;
// its macOS build asks `ps -o lstart=` for a process's start (LC_ALL=C,
// TZ=UTC). The pid domain written here is not checked against the macOS
// build: a Claude Code that sees a domain other than its own never takes
// the lock over, and one that sees its own finds mc-broker alive and does
// not either, so both readings keep it waiting.
func self() Identity {
	pid := os.Getpid()
	host, _ := os.Hostname()
	id := Identity{PID: pid, PIDDomain: "darwin:" + strings.ToLower(host), PIDSpace: host}
	cmd := exec.Command("ps", "-o", "lstart=", "-p", itoa(pid))
	cmd.Env = append(os.Environ(), "LC_ALL=C", "TZ=UTC")
	if out, err := cmd.Output(); err == nil {
		id.ProcStart = strings.TrimSpace(string(out))
	}
	return id
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

// startOf is the procStart of a running pid; ok is false when there is no
// such process.
func startOf(pid int) (start string, ok bool) {
	cmd := exec.Command("ps", "-o", "lstart=", "-p", itoa(pid))
	cmd.Env = append(os.Environ(), "LC_ALL=C", "TZ=UTC")
	out, err := cmd.Output()
	if err != nil || strings.TrimSpace(string(out)) == "" {
		return "", false
	}
	return strings.TrimSpace(string(out)), true
}
