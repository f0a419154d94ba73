package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mc-broker/mc-broker/broker/watch"
)

// TestWatchNamesTheDefaultConfigFile: a watcher started without --config
// that reads $XDG_CONFIG_HOME/mc-broker/config.yaml says so in its log and
// in the state file status reads, not "built-in defaults".
func TestWatchNamesTheDefaultConfigFile(t *testing.T) {
	f, _, errb := testFactory(t, nil)
	env, _ := f.Env()
	login, err := os.ReadFile("../../../testdata/fixtures/claude/credentials.valid.json")
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(env.Home, ".claude", ".credentials.json")
	os.MkdirAll(filepath.Dir(src), 0o700)
	if err := os.WriteFile(src, login, 0o600); err != nil {
		t.Fatal(err)
	}
	cfgFile := env.ConfigFile()
	os.MkdirAll(filepath.Dir(cfgFile), 0o700)
	cfg := "sources:\n  claude:\n    path: " + src + "\nsinks:\n  - source: claude\n    dir: " + filepath.Join(env.Home, "copy") + "\n"
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}

	ready := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	opts := &WatchOptions{f: f, LogLevel: "info", LogFormat: "text", MirrorLock: true, LockMirrorBound: time.Second, Ready: ready}
	go func() { done <- watchRun(ctx, opts, nil) }()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("watch ended: %v\n%s", err, errb)
	case <-time.After(10 * time.Second):
		t.Fatal("watch not ready within 10 s")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	st, err := watch.ReadState(env.StateDir())
	if err != nil || st == nil {
		t.Fatalf("state: %v, %v", st, err)
	}
	if st.Config != cfgFile {
		t.Errorf("state names the config %q, want %q", st.Config, cfgFile)
	}
	if !strings.Contains(errb.String(), "config="+cfgFile) {
		t.Errorf("the log does not name the config file:\n%s", errb)
	}
}

// TestStatusDatesTheLastPass: a watcher idle for days shows the day of its
// last pass, not a time of day that reads as today.
func TestStatusDatesTheLastPass(t *testing.T) {
	now := time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)
	ws := &watcherStatus{Running: true, State: &watch.State{PID: 42, StartedAt: now.Add(-96 * time.Hour), UpdatedAt: now.Add(-71 * time.Hour)}}
	var out strings.Builder
	printWatcher(&out, ws, now)
	if !strings.Contains(out.String(), "last pass 2026-11-29 10:00:00 UTC") {
		t.Errorf("status shows:\n%s\nwant the last pass with its day", out.String())
	}
}
