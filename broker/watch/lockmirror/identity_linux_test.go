package lockmirror

import (
	"os"
	"strings"
	"testing"
)

func TestProcStartIsField22(t *testing.T) {
	stat := "1234 (a b) c) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 200 18446744073709551615"
	if got := procStart(stat); got != "987654" {
		t.Errorf("procStart = %q, want the 22nd field 987654", got)
	}
	if got := procStart("garbage"); got != "" {
		t.Errorf("procStart of garbage = %q", got)
	}
}

func TestSelfMatchesProc(t *testing.T) {
	id := Self()
	if id.PID != os.Getpid() {
		t.Errorf("pid %d, want %d", id.PID, os.Getpid())
	}
	ns, err := os.Readlink("/proc/self/ns/pid")
	if err != nil {
		t.Skip("no /proc/self/ns/pid")
	}
	mid, _ := os.ReadFile("/etc/machine-id")
	if want := "linux:" + strings.TrimSpace(string(mid)) + ":" + ns; id.PIDDomain != want {
		t.Errorf("pidDomain %q, want %q", id.PIDDomain, want)
	}
	host, _ := os.Hostname()
	if want := host + "#" + ns; id.PIDSpace != want {
		t.Errorf("pidSpace %q, want %q", id.PIDSpace, want)
	}
	if id.ProcStart == "" || strings.Trim(id.ProcStart, "0123456789") != "" {
		t.Errorf("procStart %q, want clock ticks", id.ProcStart)
	}
}
