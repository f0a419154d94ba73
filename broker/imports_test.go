package broker_test

import (
	"os/exec"
	"strings"
	"testing"
)

// The core (broker/...) decides and schedules; the backends (sources/...,
// sinks/...) and the wiring (cmd/...) plug into it. The core importing one
// of them would tie every decision to a backend.
func TestCoreImportsNoPlugin(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", "github.com/mc-broker/mc-broker/broker/...").Output()
	if err != nil {
		t.Skip("go list:", err)
	}
	for _, p := range strings.Fields(string(out)) {
		for _, plugin := range []string{"/sources", "/sinks", "/cmd/", "/launch"} {
			if strings.HasPrefix(p, "github.com/mc-broker/mc-broker"+plugin) {
				t.Errorf("the core depends on %s", p)
			}
		}
	}
}
