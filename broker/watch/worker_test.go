package watch

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mc-broker/mc-broker/broker"
	"github.com/mc-broker/mc-broker/broker/testenv"
	"github.com/mc-broker/mc-broker/sinks/dir"
	"github.com/mc-broker/mc-broker/sources/file"
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

// runWatcher runs a watcher over b with o until stop (or the test's end),
// and returns once it is ready.
func runWatcher(t *testing.T, b *broker.Broker, o Options) (stop func()) {
	t.Helper()
	ready := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	o.Load, o.Ready = func() (*broker.Broker, error) { return b, nil }, ready
	go func() { done <- Run(ctx, o) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
	t.Cleanup(stop)
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("Run: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("not ready within 10 s")
	}
	return stop
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
	logs := &testenv.Buffer{}
	stop := runWatcher(t, b, Options{StateDir: stateDir, Log: slog.New(slog.NewTextHandler(logs, nil))})
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
	stop()
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

// failingHost is the host's file whose write-backs fail while fail is set,
// counting the tries.
type failingHost struct {
	*file.Source
	fail  atomic.Bool
	tries atomic.Int32
}

func (h *failingHost) Update(ctx context.Context, decide broker.Decide) error {
	h.tries.Add(1)
	if h.fail.Load() {
		return errors.New("no space left on device")
	}
	return h.Source.Update(ctx, decide)
}

// TestWatchRetriesAFailingWriteBackWithBackoff: while the host's store
// cannot take a container's refresh, the copies have it at once and the
// write-back is tried again with backoff, not at every pass a container
// can cause by touching its copy; once the user logs in on the host there
// is nothing left to write back, and status stops saying it fails.
func TestWatchRetriesAFailingWriteBackWithBackoff(t *testing.T) {
	b, source, copies, stateDir := newBroker(t, 2)
	host := &failingHost{Source: b.Sources[0].(*file.Source)}
	host.fail.Store(true)
	b.Sources[0] = host
	b.StateDir = stateDir // backups: no take-back without one
	if err := os.WriteFile(source, mirrorLogin(1, hoursAhead(4)), 0o600); err != nil {
		t.Fatal(err)
	}
	stop := runWatcher(t, b, Options{StateDir: stateDir, RetryMin: time.Second, RetryMax: time.Minute})
	newer := mirrorLogin(2, hoursAhead(5))
	writeLogin(t, filepath.Dir(copies[0]), newer)
	waitFor(t, "the other copy to get the container's refresh", func() bool { got, _ := os.ReadFile(copies[1]); return bytes.Equal(got, newer) })
	waitFor(t, "the write-back to fail", func() bool { return host.tries.Load() >= 1 })
	// The container touches its copy, again and again: each a pass.
	for range 20 {
		writeLogin(t, filepath.Dir(copies[0]), newer)
		time.Sleep(5 * time.Millisecond)
	}
	if n := host.tries.Load(); n > 2 {
		t.Errorf("%d write-back tries within about 100 ms of passes, want at most 2 (backoff from 1 s)", n)
	}
	host.fail.Store(false)
	waitFor(t, "the retry to write the host", func() bool { got, _ := os.ReadFile(source); return bytes.Equal(got, newer) })

	// Failing again; then the user logs in on the host.
	host.fail.Store(true)
	newest := mirrorLogin(3, hoursAhead(6))
	writeLogin(t, filepath.Dir(copies[0]), newest)
	writing := func() string {
		st, _ := ReadState(stateDir)
		if st == nil || len(st.Sources) == 0 {
			return "?"
		}
		return st.Sources[0].WriteBack
	}
	waitFor(t, "the state file to say the write-back fails", func() bool { return writing() != "" && writing() != "?" })
	writeLogin(t, filepath.Dir(source), mirrorLogin(4, hoursAhead(7)))
	waitFor(t, "the state file to stop saying the write-back fails", func() bool { return writing() == "" })
	stop()
}

// slowHost is the host's file whose first write-back waits until the test
// lets it go on.
type slowHost struct {
	*file.Source
	gate chan struct{}
	once sync.Once
}

func (h *slowHost) Update(ctx context.Context, decide broker.Decide) error {
	h.once.Do(func() { <-h.gate })
	return h.Source.Update(ctx, decide)
}

// TestWatchCountsATakeBackBeforeDecidingTheNext: a container gives a
// second login while the write-back of its first is still running. With a
// limit of one login an hour, the second is refused (and the copy given
// the first back), not sent to the other copies because the first had not
// been counted yet, and then taken back from them as a login mc-broker
// had given them.
func TestWatchCountsATakeBackBeforeDecidingTheNext(t *testing.T) {
	b, source, copies, stateDir := newBroker(t, 2)
	host := &slowHost{Source: b.Sources[0].(*file.Source), gate: make(chan struct{})}
	b.Sources[0] = host
	b.StateDir = stateDir
	b.Rules.MaxTakeBacks = 1
	if err := os.WriteFile(source, mirrorLogin(1, hoursAhead(4)), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &testenv.Buffer{}
	runWatcher(t, b, Options{StateDir: stateDir, Log: slog.New(slog.NewTextHandler(logs, nil))})
	// Before the watcher stops, should the test fail first.
	release := sync.OnceFunc(func() { close(host.gate) })
	t.Cleanup(release)
	first, second := mirrorLogin(2, hoursAhead(5)), mirrorLogin(3, hoursAhead(6))
	writeLogin(t, filepath.Dir(copies[0]), first)
	waitFor(t, "the other copy to get the first login", func() bool { got, _ := os.ReadFile(copies[1]); return bytes.Equal(got, first) })
	writeLogin(t, filepath.Dir(copies[0]), second)
	waitFor(t, "the second login to be refused", func() bool { return strings.Contains(logs.String(), "gave too many logins lately") })
	release()
	waitFor(t, "the host and every copy to hold the first login", func() bool {
		h, _ := os.ReadFile(source)
		a, _ := os.ReadFile(copies[0])
		b, _ := os.ReadFile(copies[1])
		return bytes.Equal(h, first) && bytes.Equal(a, first) && bytes.Equal(b, first)
	})
	if strings.Contains(logs.String(), "TOKEN") {
		t.Error("a token reached the log")
	}
}

// pushedSink is a copy the watcher cannot see as files on this host and
// that pushes its changes (as a Docker volume copy with its resident agent
// does): a directory copy with WatchedFiles hidden, whose pushes the test
// sends, and whose reads can be held so that its store worker is busy.
type pushedSink struct {
	d      *dir.Sink
	pushes chan struct{}
	// hold, when it carries a channel, makes the next Read wait for it.
	hold chan chan struct{}
	// reading is told each time a Read starts.
	reading chan struct{}
}

func newPushedSink(d *dir.Sink) *pushedSink {
	return &pushedSink{d: d, pushes: make(chan struct{}, 1), hold: make(chan chan struct{}, 1), reading: make(chan struct{}, 16)}
}

func (p *pushedSink) Location() string { return p.d.Location() }

func (p *pushedSink) Read(ctx context.Context) ([]byte, error) {
	select {
	case p.reading <- struct{}{}:
	default:
	}
	select {
	case wait := <-p.hold:
		<-wait
	default:
	}
	return p.d.Read(ctx)
}

func (p *pushedSink) Update(ctx context.Context, decide broker.Decide) error {
	return p.d.Update(ctx, decide)
}

func (p *pushedSink) Changes(ctx context.Context, _ func(error)) <-chan struct{} {
	ch := make(chan struct{}, 1)
	ch <- struct{}{} // the first when watching starts
	go func() {
		defer close(ch)
		for {
			select {
			case <-ctx.Done():
				return
			case <-p.pushes:
				select {
				case ch <- struct{}{}:
				default:
				}
			}
		}
	}()
	return ch
}

func (p *pushedSink) push() { p.pushes <- struct{}{} }

// readingSource is the host's file, telling each read.
type readingSource struct {
	*file.Source
	reads chan []byte
}

func (s *readingSource) Read(ctx context.Context) ([]byte, error) {
	data, err := s.Source.Read(ctx)
	select {
	case s.reads <- data:
	default:
	}
	return data, err
}

// TestWatchAPushDuringAWaitingWriteDoesNotCancelIt: a host change is
// planned while a pushed copy's worker is still busy reading it, so the
// write waits; then the copy pushes a change (a volume agent that just
// started says "read me"). The read that push asks for must not take the
// waiting write's place: the copy must get the host's new login now, not
// at the host's next change. (Seen as the first host change after a
// volume agent started reaching no volume.)
func TestWatchAPushDuringAWaitingWriteDoesNotCancelIt(t *testing.T) {
	b, source, copies, stateDir := newBroker(t, 1)
	cp := newPushedSink(b.Copies[0].Sink.(*dir.Sink))
	b.Copies[0].Sink = cp
	host := &readingSource{Source: b.Sources[0].(*file.Source), reads: make(chan []byte, 64)}
	b.Sources[0] = host
	first := mirrorLogin(1, hoursAhead(4))
	if err := os.WriteFile(source, first, 0o600); err != nil {
		t.Fatal(err)
	}
	runWatcher(t, b, Options{StateDir: stateDir})
	holds := func(want []byte) bool { got, _ := os.ReadFile(copies[0]); return bytes.Equal(got, want) }
	waitFor(t, "the copy to hold the host's login", func() bool { return holds(first) })

	// The copy's worker is kept busy by a read that waits.
	release := make(chan struct{})
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	for len(cp.reading) > 0 {
		<-cp.reading
	}
	cp.hold <- release
	cp.push()
	select {
	case <-cp.reading:
	case <-time.After(5 * time.Second):
		t.Fatal("the push did not make the watcher read the copy")
	}

	// The host changes: the pass plans a write, which waits behind the read.
	second := mirrorLogin(2, hoursAhead(5))
	for len(host.reads) > 0 {
		<-host.reads
	}
	writeLogin(t, filepath.Dir(source), second)
	for deadline := time.After(5 * time.Second); ; {
		select {
		case got := <-host.reads:
			if !bytes.Equal(got, second) {
				continue
			}
		case <-deadline:
			t.Fatal("no pass read the host's change")
		}
		break
	}
	// The pass that read it has dispatched its write: a push now is taken
	// after it.
	cp.push()
	close(release)
	waitFor(t, "the copy to get the host's new login", func() bool { return holds(second) })
}
