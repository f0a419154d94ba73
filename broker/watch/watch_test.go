package watch

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mc-broker/mc-broker/broker/kinds/claude"

	"github.com/mc-broker/mc-broker/broker"
	"github.com/mc-broker/mc-broker/sinks/dir"
	"github.com/mc-broker/mc-broker/sources/file"
)

// newBroker is a Claude source at home/.credentials.json and n directory
// copies, on real files under a temporary directory.
func newBroker(t *testing.T, n int) (b *broker.Broker, source string, copies []string, stateDir string) {
	t.Helper()
	root := t.TempDir()
	data, err := os.ReadFile("../../testdata/fixtures/claude/credentials.valid.json")
	if err != nil {
		t.Fatal(err)
	}
	source = filepath.Join(root, "home", ".credentials.json")
	if err := os.MkdirAll(filepath.Dir(source), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(source, data, 0o600); err != nil {
		t.Fatal(err)
	}
	stateDir = filepath.Join(root, "state")
	b = &broker.Broker{Sources: []broker.Source{file.New("claude", claude.Kind, source)}}
	for i := range n {
		s := dir.New(dir.Options{Dir: filepath.Join(root, "copies", string(rune('a'+i))), FileName: ".credentials.json", LockDir: filepath.Join(stateDir, "locks")})
		b.Copies = append(b.Copies, broker.Copy{Source: "claude", Sink: s})
		copies = append(copies, s.Location())
	}
	return b, source, copies, stateDir
}

// TestRunReadyLockAndStop: Ready is closed once every copy is written and
// the watches are in place; while Run runs, Running reports it and a second
// Run fails with an *AlreadyRunningError; cancelling ctx stops it cleanly.
func TestRunReadyLockAndStop(t *testing.T) {
	b, source, copies, stateDir := newBroker(t, 2)
	ready := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{Load: func() (*broker.Broker, error) { return b, nil }, StateDir: stateDir, Ready: ready})
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("Run returned before it was ready: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("Run was not ready within 10 s")
	}
	for _, c := range copies {
		if _, err := os.Stat(c); err != nil {
			t.Errorf("ready, but a copy is not written: %v", err)
		}
	}
	if !Running(stateDir) {
		t.Error("Running says no watcher runs")
	}
	err := Run(context.Background(), Options{Load: func() (*broker.Broker, error) { return b, nil }, StateDir: stateDir})
	var running *AlreadyRunningError
	if !errors.As(err, &running) || running.PID != os.Getpid() || !strings.Contains(err.Error(), "stop it first") {
		t.Errorf("a second Run: %v, want an *AlreadyRunningError naming pid %d", err, os.Getpid())
	}

	// The watches are in place: a refresh on the host reaches the copies.
	data, _ := os.ReadFile(source)
	data = bytes.Replace(data, []byte("4102444800000"), []byte("4102444900000"), 1)
	tmp := source + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, source); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, c := range copies {
		for got, _ := os.ReadFile(c); !bytes.Contains(got, []byte("4102444900000")); got, _ = os.ReadFile(c) {
			if time.Now().After(deadline) {
				t.Fatalf("%s did not follow the host within 5 s", c)
			}
			time.Sleep(time.Millisecond)
		}
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run after cancel: %v, want nil", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Run did not stop within 2 s of cancel")
	}
	if Running(stateDir) {
		t.Error("Running says a stopped watcher runs")
	}
	st, err := ReadState(stateDir)
	if err != nil || st == nil || st.PID != os.Getpid() || len(st.Sources) != 1 || len(st.Sources[0].Copies) != 2 {
		t.Errorf("state file after stop: %+v, %v", st, err)
	}
}
