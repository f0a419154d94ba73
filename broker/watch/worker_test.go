package watch

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mc-broker/mc-broker/broker"
	"github.com/mc-broker/mc-broker/sinks/dir"
)

// gatedSink is a directory copy whose writes, once closed, wait after
// they are done until the test lets them return: the watcher then holds
// the write as in flight while the copy already changed again.
type gatedSink struct {
	*dir.Sink
	gate chan chan struct{}
}

func (g *gatedSink) Update(ctx context.Context, decide broker.Decide) error {
	err := g.Sink.Update(ctx, decide)
	select {
	case wait := <-g.gate:
		<-wait
	default:
	}
	return err
}

// TestWatchRepairsACopyChangedWhileItsRepairWasInFlight: a container
// writes a bad login into its copy, the watcher repairs it, and the
// container writes another bad one before the watcher has taken in the
// result of the repair. The second one asks for the very write that is
// still in flight; once that is in, the copy must be looked at again and
// repaired, not left holding what the container wrote.
func TestWatchRepairsACopyChangedWhileItsRepairWasInFlight(t *testing.T) {
	b, source, copies, stateDir := newBroker(t, 2)
	gate := make(chan chan struct{}, 1)
	d := b.Copies[0].Sink.(*dir.Sink)
	b.Copies[0].Sink = &gatedSink{Sink: d, gate: gate}
	// Plausible logins: the host's expires in 4 h.
	host := mirrorLogin(1, hoursAhead(4))
	if err := os.WriteFile(source, host, 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	ready := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{Load: func() (*broker.Broker, error) { return b, nil }, StateDir: stateDir, Ready: ready,
			Log: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("Run: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("not ready within 10 s")
	}
	holds := func(want []byte) bool { got, _ := os.ReadFile(copies[0]); return bytes.Equal(got, want) }
	waitFor(t, "the copy to hold the host's login", func() bool { return holds(host) })

	// The next write to the copy is held once done.
	release := make(chan struct{})
	gate <- release
	// Claims to expire in a year: refused, repaired.
	writeLogin(t, filepath.Dir(copies[0]), mirrorLogin(2, hoursAhead(24*365)))
	waitFor(t, "the first bad login to be repaired", func() bool { return holds(host) })
	// Newer and plausible, but padded past any login's size: refused for
	// another reason, which is logged once the pass has run.
	padded := bytes.Replace(mirrorLogin(3, hoursAhead(5)), []byte(`{"claudeAiOauth"`), []byte(`{"pad":"`+strings.Repeat("x", 70<<10)+`","claudeAiOauth"`), 1)
	writeLogin(t, filepath.Dir(copies[0]), padded)
	waitFor(t, "the second bad login to be refused", func() bool { return strings.Contains(logs.String(), "more than a login ever is") })
	close(release)
	waitFor(t, "the second bad login to be repaired once the first repair is in", func() bool { return holds(host) })

	got, _ := os.ReadFile(source)
	if !bytes.Equal(got, host) {
		t.Error("the host's login changed")
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
}

// TestWarnOncePerRule: a container that writes one bad login after another,
// each with another expiry or size, gets one warning an hour per rule it
// breaks, not one per login.
func TestWarnOncePerRule(t *testing.T) {
	sw := &sourceWorker{warned: map[string]warning{}}
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	steps := []struct {
		loc, why string
		after    time.Duration
		want     bool
	}{
		{"a", "its login claims to expire at 9999-12-31T00:00:00Z", 0, true},
		{"a", "its login claims to expire at 9999-12-30T00:00:00Z", time.Second, false},
		{"b", "its login claims to expire at 9999-12-30T00:00:00Z", 0, true},
		{"a", "it is 1000000 bytes, more than a login ever is (65536)", 0, true},
		{"a", "it is 2000000 bytes, more than a login ever is (65536)", time.Minute, false},
		{"a", "it is 3000000 bytes, more than a login ever is (65536)", time.Hour, true},
	}
	for i, s := range steps {
		now = now.Add(s.after)
		if got := sw.warn(s.loc, s.why, now); got != s.want {
			t.Errorf("step %d (%s: %s): warn=%v, want %v", i, s.loc, s.why, got, s.want)
		}
	}
}

// TestWatchWarnsOnceAboutACopyItCannotRead: a FIFO where a copy's login
// belongs is never opened for a blocking read; the watcher warns once,
// naming the copy and why, and says so when it can read it again.
func TestWatchWarnsOnceAboutACopyItCannotRead(t *testing.T) {
	b, _, copies, stateDir := newBroker(t, 2)
	if err := os.MkdirAll(filepath.Dir(copies[0]), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(copies[0], 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	ready := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{Load: func() (*broker.Broker, error) { return b, nil }, StateDir: stateDir, Ready: ready,
			Log: slog.New(slog.NewTextHandler(logs, nil))})
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("Run: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("not ready within 10 s: a FIFO in a copy blocks the watcher")
	}
	const msg = `msg="copy cannot be read; looked at again when it changes" source=claude copy=` + "%s"
	waitFor(t, "a warning naming the FIFO", func() bool {
		return strings.Contains(logs.String(), fmt.Sprintf(msg, copies[0])) && strings.Contains(logs.String(), "is not a regular file")
	})
	// Passes on the other copy do not repeat it.
	src, _ := os.ReadFile(b.Sources[0].Location())
	writeLogin(t, filepath.Dir(b.Sources[0].Location()), bytes.Replace(src, []byte("4102444800000"), []byte("4102444900000"), 1))
	waitFor(t, "the other copy to follow", func() bool { got, _ := os.ReadFile(copies[1]); return bytes.Contains(got, []byte("4102444900000")) })
	if n := strings.Count(logs.String(), "copy cannot be read"); n != 1 {
		t.Errorf("%d warnings about the FIFO, want 1", n)
	}
	if err := os.Remove(copies[0]); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the copy to be written once the FIFO is gone", func() bool {
		got, _ := os.ReadFile(copies[0])
		return bytes.Contains(got, []byte("4102444900000")) && strings.Contains(logs.String(), "copy readable again")
	})
}
