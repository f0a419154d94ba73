// Package watch keeps every copy and the host's store acting as one store
// while it runs: a first full sync, then event-driven passes. A change to a
// source is fanned out to its copies; a newer login written into a copy (a
// container's CLI refreshed it) is adopted into the host's store and fanned
// out to the other copies.
//
// Files are watched with inotify/kqueue through fsnotify, on the directories
// that hold them, never polled. Stores that are not files on this host (a
// Keychain item, a Docker volume) implement broker.ChangePoller and are
// asked on an interval.
//
// One goroutine owns all state: events, timers, pollers and reloads are
// handled in turn, so passes over one source never overlap.
package watch

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/mc-broker/mc-broker/broker"
)

// Defaults for Options.
const (
	DefaultQuiet        = 15 * time.Millisecond
	DefaultPollInterval = 30 * time.Second
	DefaultRetryMin     = 250 * time.Millisecond
	DefaultRetryMax     = 30 * time.Second
	// stopGrace is how long in-flight writes get after a stop request
	// before their context is cancelled (SIGTERM must exit within 2 s).
	stopGrace = 1500 * time.Millisecond
)

// Options configure a watcher.
type Options struct {
	// Load builds the broker from the current config. It is called at start
	// and on every reload; an error at start ends Run, an error on reload is
	// logged and the running config is kept.
	Load func() (*broker.Broker, error)
	// Reload asks for Load to be called again (SIGHUP).
	Reload <-chan struct{}
	// Quiet is how long a source or copy must see no event before it is
	// read: CLIs that write in place (Gemini) are seen mid-write otherwise.
	Quiet time.Duration
	// PollInterval is how often stores that cannot be watched as files
	// (Docker volumes, Keychain items) are asked whether they changed.
	PollInterval time.Duration
	// RetryMin and RetryMax bound the backoff of a failing copy.
	RetryMin, RetryMax time.Duration
	// StateDir holds the state file, the watcher lock and backups.
	StateDir string
	// ConfigFile names the config in the state file (empty: defaults).
	ConfigFile string
	Log        *slog.Logger
	Now        func() time.Time
	// Ready, when set, is closed once the first full sync is done and the
	// watches are in place.
	Ready chan<- struct{}
	// Recheck, when set, is asked at every poll whether the config should
	// be loaded again although no SIGHUP came (the built-in defaults gain
	// their Docker volumes once an engine answers).
	Recheck func() bool
	// NoLockMirror turns refresh-lock mirroring off (mirror.go);
	// LockMirrorBound caps how long a mirrored lock is held
	// (lockmirror.DefaultBound when 0).
	NoLockMirror    bool
	LockMirrorBound time.Duration
}

func (o *Options) defaults() {
	if o.Quiet <= 0 {
		o.Quiet = DefaultQuiet
	}
	if o.PollInterval <= 0 {
		o.PollInterval = DefaultPollInterval
	}
	if o.RetryMin <= 0 {
		o.RetryMin = DefaultRetryMin
	}
	if o.RetryMax < o.RetryMin {
		o.RetryMax = DefaultRetryMax
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Run watches until ctx is done. It returns nil after a clean stop: writes
// in flight are finished (or, after stopGrace, cancelled) first.
func Run(ctx context.Context, o Options) error {
	o.defaults()
	release, err := lockState(o.StateDir)
	if err != nil {
		return err
	}
	defer release()

	b, err := o.Load()
	if err != nil {
		return err
	}
	fsw, err := fsnotify.NewBufferedWatcher(4096)
	if err != nil {
		return err
	}
	defer fsw.Close()

	// Writes get their own context: a stop request lets them finish, and
	// only cancels them after stopGrace.
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	go func() {
		select {
		case <-ctx.Done():
			t := time.NewTimer(stopGrace)
			defer t.Stop()
			select {
			case <-t.C:
				cancelWork()
			case <-work.Done():
			}
		case <-work.Done():
		}
	}()

	w := &watcher{
		o:        o,
		log:      o.Log,
		fsw:      fsw,
		work:     work,
		watched:  map[string]bool{},
		deadline: map[string]time.Time{},
		since:    map[string]time.Time{},
		state:    newState(o.Now(), o.ConfigFile),
	}
	w.install(b)
	defer w.closeAll()
	w.log.Info("watching", "sources", len(b.Sources), "copies", len(b.Copies), "config", configName(o.ConfigFile))
	for name := range w.groups {
		w.reconcile(name)
	}
	w.saveState()
	w.started = true
	if o.Ready != nil {
		close(o.Ready)
	}
	return w.loop(ctx)
}

func configName(file string) string {
	if file == "" {
		return "built-in defaults"
	}
	return file
}

// watcher is owned by the goroutine running loop.
type watcher struct {
	o    Options
	log  *slog.Logger
	fsw  *fsnotify.Watcher
	work context.Context
	b    *broker.Broker

	groups map[string]*group     // by source name
	files  map[string][]*fileRef // cleaned path -> owners
	dirs   map[string]bool       // directories that hold watched files

	watched  map[string]bool      // paths with an fsnotify watch
	deadline map[string]time.Time // source name -> when to reconcile
	since    map[string]time.Time // source name -> first unhandled event

	state   *State
	mirrors lockMirrors
	// started is set after the first full pass: from then on a directory
	// that appears gets a pass of its own.
	started bool
}

func (w *watcher) loop(ctx context.Context) error {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	poll := time.NewTicker(w.o.PollInterval)
	defer poll.Stop()
	for {
		w.armTimer(timer)
		select {
		case <-ctx.Done():
			w.log.Info("stopping")
			w.saveState()
			return nil
		case ev, ok := <-w.fsw.Events:
			if !ok {
				return errors.New("file watcher closed")
			}
			w.onEvent(ev)
		case err, ok := <-w.fsw.Errors:
			if !ok {
				return errors.New("file watcher closed")
			}
			// An overflow means events were lost: look at everything.
			w.log.Warn("file watcher error; checking every source and copy", "error", err)
			w.rewatch()
			for name := range w.groups {
				w.schedule(name, 0)
			}
		case <-timer.C:
			w.runDue()
		case <-poll.C:
			w.rewatch()
			w.pollStores()
			if w.o.Recheck != nil && w.o.Recheck() {
				w.reload()
			}
		case <-w.o.Reload:
			w.reload()
		}
	}
}

// armTimer sets timer to the earliest deadline.
func (w *watcher) armTimer(t *time.Timer) {
	var next time.Time
	for _, d := range w.deadline {
		if next.IsZero() || d.Before(next) {
			next = d
		}
	}
	if d := w.mirrorDeadline(); !d.IsZero() && (next.IsZero() || d.Before(next)) {
		next = d
	}
	if !t.Stop() {
		select {
		case <-t.C:
		default:
		}
	}
	if next.IsZero() {
		t.Reset(time.Hour)
		return
	}
	t.Reset(max(0, next.Sub(w.o.Now())))
}

func (w *watcher) runDue() {
	w.expireMirrors()
	now := w.o.Now()
	for name, d := range w.deadline {
		if !d.After(now) {
			delete(w.deadline, name)
			delete(w.since, name)
			if _, ok := w.groups[name]; ok {
				w.reconcile(name)
			}
		}
	}
	w.saveState()
}

// debounce pushes the group's pass back until its files have been quiet for
// Quiet, but never more than 20 quiet windows after the first event, so that
// a source rewritten without pause is still fanned out.
func (w *watcher) debounce(name string) {
	now := w.o.Now()
	first, ok := w.since[name]
	if !ok {
		first = now
		w.since[name] = now
	}
	at := now.Add(w.o.Quiet)
	if limit := first.Add(20 * w.o.Quiet); at.After(limit) {
		at = limit
	}
	w.deadline[name] = at
}

// schedule asks for a pass after d, unless one is due sooner.
func (w *watcher) schedule(name string, d time.Duration) {
	at := w.o.Now().Add(d)
	if cur, ok := w.deadline[name]; !ok || at.Before(cur) {
		w.deadline[name] = at
	}
}

// backoff is the wait before retry number attempt (1, 2, ...), with ±25%
// jitter so that many failing copies do not retry in lockstep.
func (w *watcher) backoff(attempt int) time.Duration {
	d := w.o.RetryMin
	for i := 1; i < attempt && d < w.o.RetryMax; i++ {
		d *= 2
	}
	d = min(d, w.o.RetryMax)
	jitter := time.Duration(rand.Int64N(int64(d)/2+1)) - d/4
	return d + jitter
}

func (w *watcher) pollStores() {
	for name, g := range w.groups {
		for _, p := range g.pollers {
			changed, err := p.Changed(w.work)
			if err != nil {
				w.log.Debug("change check failed; the next pass reports it", "source", name, "error", err)
				changed = true
			}
			if changed {
				g.polledChanged = true
				w.schedule(name, 0)
			}
		}
	}
}

func (w *watcher) reload() {
	b, err := w.o.Load()
	if err != nil {
		w.log.Error("config reload failed; the running config stays in use", "error", err)
		return
	}
	w.closeAll()
	w.started = false
	w.install(b)
	w.log.Info("config reloaded", "sources", len(b.Sources), "copies", len(b.Copies))
	w.state.reset(b)
	for name := range w.groups {
		w.reconcile(name)
	}
	w.started = true
	w.saveState()
}

func (w *watcher) closeAll() {
	w.closeMirrors()
	if w.b == nil {
		return
	}
	for _, s := range w.b.Sources {
		closeIt(s, w.log)
	}
	for _, c := range w.b.Copies {
		closeIt(c.Sink, w.log)
	}
}

func closeIt(v any, log *slog.Logger) {
	if c, ok := v.(broker.Closer); ok {
		if err := c.Close(); err != nil {
			log.Warn("cleanup failed", "error", err)
		}
	}
}

func (w *watcher) saveState() {
	w.state.UpdatedAt = w.o.Now()
	if err := w.state.save(w.o.StateDir); err != nil {
		w.log.Warn("cannot write the state file", "error", err)
	}
}

// exists reports whether path names something (a broken symlink counts).
func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

func clean(p string) string { return filepath.Clean(p) }
