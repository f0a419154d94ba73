// Package scripts holds no Go code: its test runs scripts/test-env.sh as
// make test does, against an npm registry that does not answer.
package scripts

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// An unreachable npm registry must not fail make test outside CI (the
// README says the real-CLI tests skip), and must fail it at once, saying
// why, under CI=true.
func TestTestEnvWithTheRegistryUnreachable(t *testing.T) {
	for _, tool := range []string{"npm", "systemd-analyze"} {
		// Without systemd-analyze the script would install it first.
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not found (make test's test-env installs or reports it)", tool)
		}
	}
	// A port nothing listens on: connections are refused.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	registry := "http://" + l.Addr().String() + "/"
	l.Close()

	// A copy of the script in a tree without .cache/clis, so that it has
	// something to install.
	root := t.TempDir()
	script, err := os.ReadFile("test-env.sh")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "scripts"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "scripts", "test-env.sh"), script, 0o755); err != nil {
		t.Fatal(err)
	}

	for _, ci := range []string{"", "true"} {
		cmd := exec.Command(filepath.Join(root, "scripts", "test-env.sh"))
		cmd.Env = append(os.Environ(), "CI="+ci, "npm_config_registry="+registry, "npm_config_cache="+filepath.Join(root, "npm-cache"))
		start := time.Now()
		out, err := cmd.CombinedOutput()
		took := time.Since(start)
		failed := err != nil
		if failed != (ci == "true") {
			t.Errorf("CI=%q: exit error %v, want failure only under CI=true\n%s", ci, err, out)
		}
		if !strings.Contains(string(out), registry+" does not answer") {
			t.Errorf("CI=%q: output does not name the registry:\n%s", ci, out)
		}
		if took > 30*time.Second {
			t.Errorf("CI=%q: took %v; an unreachable registry must be found out within seconds", ci, took)
		}
		if _, err := os.Stat(filepath.Join(root, ".cache", "clis", "node_modules")); err == nil {
			t.Errorf("CI=%q: installed something from an unreachable registry", ci)
		}
	}
}
