package service

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// fakeManager plays systemctl --user and launchctl: it records every
// command and keeps the state a real service manager would, so tests can
// assert exact command sequences and what a re-install sees.
type fakeManager struct {
	t         *testing.T
	ran       [][]string
	reachable bool
	active    bool // systemd: active; launchd: loaded and running
	enabled   bool
	plist     string // launchd: the plist it was bootstrapped from
	failOn    string // a command (joined argv) that fails with exit 5
}

func newFake(t *testing.T) *fakeManager { return &fakeManager{t: t, reachable: true} }

func (f *fakeManager) Run(_ context.Context, argv ...string) ([]byte, error) {
	f.ran = append(f.ran, argv)
	cmd := strings.Join(argv, " ")
	fail := func(code int, out string) ([]byte, error) {
		return []byte(out), &CommandError{Argv: argv, ExitCode: code, Output: strings.TrimSpace(out)}
	}
	if cmd == f.failOn {
		return fail(5, "Bootstrap failed: 5: Input/output error\n")
	}
	if !f.reachable {
		if argv[0] == "launchctl" {
			return fail(125, "Domain does not support specified action\n")
		}
		return fail(1, "Failed to connect to bus: No medium found\n")
	}
	switch {
	case cmd == "systemctl --user is-active "+Unit:
		if f.active {
			return []byte("active\n"), nil
		}
		return fail(3, "inactive\n")
	case cmd == "systemctl --user daemon-reload":
	case cmd == "systemctl --user enable "+Unit:
		f.enabled = true
	case cmd == "systemctl --user restart "+Unit:
		f.active = true
	case cmd == "systemctl --user disable --now "+Unit:
		f.enabled, f.active = false, false
	case strings.HasPrefix(cmd, "launchctl print gui/"):
		if !f.active {
			return fail(113, fmt.Sprintf("Bad request.\nCould not find service %q in domain for user gui: 501\n", Label))
		}
		return []byte(launchctlPrintRunning), nil
	case strings.HasPrefix(cmd, "launchctl bootout gui/"):
		if !f.active {
			return fail(3, "Boot-out failed: 3: No such process\n")
		}
		f.active = false
	case strings.HasPrefix(cmd, "launchctl enable gui/"):
		f.enabled = true
	case strings.HasPrefix(cmd, "launchctl bootstrap gui/"):
		if f.active {
			return fail(5, "Bootstrap failed: 5: Input/output error\n")
		}
		data, err := os.ReadFile(argv[3])
		if err != nil {
			return fail(5, "Bootstrap failed: 5: Input/output error\n")
		}
		f.plist, f.active = string(data), true
	default:
		f.t.Errorf("unexpected command %q", cmd)
		return fail(64, "usage")
	}
	return nil, nil
}

func (f *fakeManager) assertRan(t *testing.T, want ...string) {
	t.Helper()
	got := make([]string, len(f.ran))
	for i, a := range f.ran {
		got[i] = strings.Join(a, " ")
	}
	if want == nil {
		want = []string{}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("commands run:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	f.ran = nil
}

const launchctlPrintRunning = `gui/501/io.github.mc-broker.watch = {
	active count = 1
	path = /Users/me/Library/LaunchAgents/io.github.mc-broker.watch.plist
	type = LaunchAgent
	state = running

	program = /usr/local/bin/mc-broker
	arguments = {
		/usr/local/bin/mc-broker
		watch
	}

	endpoints = {
		"x" = {
			state = active
		}
	}
	pid = 4242
	last exit code = (never exited)
}
`

// world is a temporary HOME with an mc-broker binary in it.
type world struct {
	home, bin string
	env       map[string]string
	fake      *fakeManager
	tempDirs  []string
}

func newWorld(t *testing.T) *world {
	t.Helper()
	home := t.TempDir()
	bin := filepath.Join(home, "bin", "mc-broker")
	writeExecutable(t, bin)
	return &world{home: home, bin: bin, env: map[string]string{}, fake: newFake(t)}
}

func writeExecutable(t *testing.T, path string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
}

func (w *world) service(t *testing.T, goos, config string) *Service {
	t.Helper()
	s, err := New(Options{
		GOOS: goos, Home: w.home, UID: 501, Binary: w.bin, ConfigFile: config,
		Getenv: func(k string) string { return w.env[k] }, Runner: w.fake, TempDirs: w.tempDirs,
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// tree lists every path under root, to prove that nothing was created.
func tree(t *testing.T, root string) []string {
	t.Helper()
	var paths []string
	err := filepath.WalkDir(root, func(p string, _ os.DirEntry, err error) error {
		paths = append(paths, p)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return paths
}
