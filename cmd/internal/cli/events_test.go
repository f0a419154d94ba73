package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mc-broker/mc-broker/broker/watch"
)

// TestProblemRunner: the on_problem command gets the event as JSON on
// stdin and its kind and source in the environment; the notifier gets a
// title and a text as arguments; a command that hangs is killed, with
// what it started, and the next event still goes out.
func TestProblemRunner(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "events")
	notifier := filepath.Join(dir, "notify-send")
	os.WriteFile(notifier, []byte("#!/bin/sh\nfor a in \"$@\"; do echo \"$a\"; done >> "+filepath.Join(dir, "notified")+"\n"), 0o755)
	var logs bytes.Buffer
	p := newProblemRunner(slog.New(slog.NewTextHandler(&logs, nil)), "", false)
	p.configure(`if [ "$MC_BROKER_EVENT" = hang ]; then sleep 60 & sleep 60; fi; { echo "$MC_BROKER_EVENT $MC_BROKER_SOURCE"; cat; } >> `+out, true)
	p.lookPath = func(name string) (string, error) { return filepath.Join(dir, name), nil }
	p.goos, p.timeout = "linux", 500*time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stopped := make(chan struct{})
	go func() { p.run(ctx); close(stopped) }()

	at := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	p.send(watch.Event{Event: "hang", Source: "claude"})
	p.send(watch.Event{Event: watch.RefreshEnding, Source: "work-claude", Kind: "claude", At: at, Message: "work-claude's refresh token ends", Fix: "mc-broker login work-claude", Fingerprint: "sha256:0123456789ab"})
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(string(readOr(filepath.Join(dir, "notified"))), "mc-broker login work-claude\n") {
		if time.Now().After(deadline) {
			cancel()
			<-stopped
			t.Fatalf("not delivered; logs:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The notifier runs after the command: both are done. The runner's
	// logs are read once it has stopped.
	cancel()
	<-stopped
	lines := strings.SplitN(strings.TrimSpace(string(readOr(out))), "\n", 2)
	if lines[0] != "refresh-token-ending work-claude" {
		t.Errorf("environment: %q", lines[0])
	}
	var e watch.Event
	if err := json.Unmarshal([]byte(lines[1]), &e); err != nil || e.Fingerprint != "sha256:0123456789ab" || e.Fix != "mc-broker login work-claude" || !e.At.Equal(at) {
		t.Errorf("stdin: %v %+v", err, e)
	}
	if got := string(readOr(filepath.Join(dir, "notified"))); !strings.Contains(got, "--\nmc-broker: work-claude\nwork-claude's refresh token ends — mc-broker login work-claude\n") {
		t.Errorf("notifier arguments:\n%s", got)
	}
	if !strings.Contains(logs.String(), "the on_problem command failed") || !strings.Contains(logs.String(), "event=hang") {
		t.Errorf("the hung command is not reported:\n%s", logs.String())
	}
}

func readOr(path string) []byte {
	data, _ := os.ReadFile(path)
	return data
}
