// Package watch keeps every copy and the host's store acting as one store
// while it runs. It only schedules: every decision is broker.Plan's and
// every read and write a broker.Pass's.
//
// Each login (source) has a worker goroutine that runs its passes one after
// another, and each of its stores a worker of its own for writes (and, for
// stores that are not files here, reads), each with the store's own
// deadline: a hung Docker engine, a slow `security` call, or a container
// holding a lock in its copy delays only that store, never another copy or
// another login.
//
// Files are watched with inotify/kqueue through fsnotify, on the
// directories that hold them, never polled; a file event starts a pass at
// once (CLIs and mc-broker replace files by rename, so what is read is
// whole), and only content that looks half-written (Gemini CLI writes in
// place) is looked at again a moment later. Stores that are not files on
// this host (a Keychain item, a Docker volume) implement
// broker.ChangePoller and are asked on an interval, on their own workers.
package watch

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"sync"
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
	// Quiet is how soon content that looks half-written (a CLI writing its
	// file in place) is read again. Whole files are read at once.
	Quiet time.Duration
	// PollInterval is how often stores that cannot be watched as files
	// (Docker volumes, Keychain items) are asked whether they changed.
	PollInterval time.Duration
	// RetryMin and RetryMax bound the backoff of a failing store.
	RetryMin, RetryMax time.Duration
	// StateDir holds the state file, the watcher lock, the memory and
	// backups.
	StateDir string
	// ConfigFile names the config in the state file (empty: defaults).
	ConfigFile string
	Log        *slog.Logger
	Now        func() time.Time
	// Ready, when set, is closed once every login's first full pass is done
	// (its writes included) and the watches are in place.
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
	// OnEvent, when set, is told what needs the user (events.go): called
	// from the workers, it must not block.
	OnEvent func(Event)
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
		o:       o,
		log:     o.Log,
		fsw:     fsw,
		work:    work,
		watched: map[string]bool{},
		main:    make(chan func(), 64),
		// How many writes of files on this host run at once.
		fileSlots: make(chan struct{}, 64),
		state:     newState(o.Now(), o.ConfigFile),
		saver:     newSaver(),
	}
	saverCtx, stopSaver := context.WithCancel(context.Background())
	defer stopSaver()
	go w.saver.run(saverCtx)
	w.install(b)
	w.log.Info("watching", "sources", len(b.Sources), "copies", len(b.Copies), "config", configName(o.ConfigFile))
	err = w.loop(ctx)
	w.stopWorkers()
	w.saveNow()
	return err
}

func configName(file string) string {
	if file == "" {
		return "built-in defaults"
	}
	return file
}

// watcher is owned by the goroutine running loop; the workers report to
// it through main.
type watcher struct {
	o    Options
	log  *slog.Logger
	fsw  *fsnotify.Watcher
	work context.Context
	b    *broker.Broker

	workers map[string]*sourceWorker
	// stop ends the current config's workers; wg waits for them.
	stop context.CancelFunc
	wg   sync.WaitGroup

	files   map[string][]*sourceWorker // cleaned path -> logins with a store there
	dirs    map[string]bool            // directories that hold watched files
	watched map[string]bool            // paths with an fsnotify watch

	// main carries work the workers hand back to this goroutine.
	main chan func()
	// fileSlots bounds the writes of files on this host running at once.
	fileSlots chan struct{}

	state   *State
	saver   *saver
	mirrors lockMirrors
	// ready is closed once every worker's first full pass is done.
	ready   chan struct{}
	started bool
}

// onMain runs f on the watcher's goroutine.
func (w *watcher) onMain(f func()) { w.main <- f }

// install makes b the running config: workers, watched files, mirrors.
func (w *watcher) install(b *broker.Broker) {
	w.b = b
	w.workers = map[string]*sourceWorker{}
	w.files = map[string][]*sourceWorker{}
	w.dirs = map[string]bool{}
	ctx, cancel := context.WithCancel(w.work)
	w.stop = cancel
	w.state.reset(b)
	mems := b.Memories()
	for _, s := range b.Sources {
		mem := broker.NewMemory()
		if b.StateDir != "" {
			mem = mems.Load(s.Name())
		}
		sw := newSourceWorker(w, s, b.CopiesOf(s.Name()), mem)
		w.workers[s.Name()] = sw
		w.track(sw, s)
		for _, c := range sw.pass.Copies {
			w.track(sw, c.Sink)
		}
	}
	w.installMirrors(ctx, b)
	w.rewatch()
	w.started = false
	w.ready = make(chan struct{})
	var firsts []chan struct{}
	for _, sw := range w.workers {
		firsts = append(firsts, sw.firstDone)
		w.wg.Add(2 + len(sw.copies))
		go func() { defer w.wg.Done(); sw.run(ctx) }()
		go func() { defer w.wg.Done(); sw.host.run(ctx, w.work) }()
		for _, c := range sw.copies {
			go func() { defer w.wg.Done(); c.run(ctx, w.work) }()
		}
	}
	ready := w.ready
	go func() {
		for _, f := range firsts {
			select {
			case <-f:
			case <-ctx.Done():
				return
			}
		}
		select {
		case w.main <- func() { w.onReady(ready) }:
		case <-ctx.Done():
		}
	}()
}

// onReady runs once every login's first full pass is done.
func (w *watcher) onReady(ready chan struct{}) {
	if ready != w.ready || w.started {
		return // a reload replaced this config
	}
	w.started = true
	w.saveNow()
	close(ready)
	if w.o.Ready != nil {
		close(w.o.Ready)
		w.o.Ready = nil
	}
}

// stopWorkers ends the running config's workers (a write in flight
// finishes first) and saves their memory.
func (w *watcher) stopWorkers() {
	if w.stop == nil {
		return
	}
	w.stop()
	done := make(chan struct{})
	go func() { w.wg.Wait(); close(done) }()
	for {
		select {
		case <-done:
			w.closeAll()
			w.saveNow()
			return
		case f := <-w.main:
			// Workers may still hand work back while they stop.
			_ = f
		}
	}
}

func (w *watcher) track(sw *sourceWorker, v any) {
	if f, ok := v.(broker.WatchedFiles); ok {
		for _, p := range f.WatchedFiles() {
			p = filepath.Clean(p)
			w.files[p] = append(w.files[p], sw)
			w.dirs[filepath.Dir(p)] = true
		}
	}
}

func (w *watcher) loop(ctx context.Context) error {
	mirrorTimer := time.NewTimer(time.Hour)
	defer mirrorTimer.Stop()
	poll := time.NewTicker(w.o.PollInterval)
	defer poll.Stop()
	save := time.NewTicker(200 * time.Millisecond)
	defer save.Stop()
	for {
		w.armMirrorTimer(mirrorTimer)
		select {
		case <-ctx.Done():
			w.log.Info("stopping")
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
			for _, sw := range w.workers {
				sw.request(passRequest{})
			}
		case f := <-w.main:
			f()
		case <-mirrorTimer.C:
			w.expireMirrors()
		case <-poll.C:
			w.rewatch()
			for _, sw := range w.workers {
				select {
				case sw.polls <- struct{}{}:
				default:
				}
			}
			if w.o.Recheck != nil && w.o.Recheck() {
				w.reload()
			}
		case <-save.C:
			// Not before the first full pass: the state file's pid says
			// the watcher is ready.
			if w.started && w.state.isDirty() {
				w.saveState()
			}
		case <-w.o.Reload:
			w.reload()
		}
	}
}

// armMirrorTimer sets t to the earliest bound of the mirrors held now.
func (w *watcher) armMirrorTimer(t *time.Timer) {
	next := w.mirrorDeadline()
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

func (w *watcher) reload() {
	b, err := w.o.Load()
	if err != nil {
		w.log.Error("config reload failed; the running config stays in use", "error", err)
		return
	}
	w.stopWorkers()
	w.install(b)
	w.log.Info("config reloaded", "sources", len(b.Sources), "copies", len(b.Copies))
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

// saveState has the state file and the workers' memory written soon, on
// the saver's goroutine: an fsync must never hold up the event loop (a
// host change waiting behind it is a slower fan-out).
func (w *watcher) saveState() {
	if !w.started {
		return
	}
	w.saver.put(w.snapshotSave())
}

// saveNow writes them before it returns (ready, stop).
func (w *watcher) saveNow() {
	if !w.started {
		return
	}
	w.saver.put(nil) // a queued save is superseded
	w.snapshotSave()()
}

// snapshotSave takes what is to be saved now (the workers' memory
// snapshots are published by them) and returns the writing of it.
func (w *watcher) snapshotSave() func() {
	mems := map[string]*broker.Memory{}
	var files broker.MemoryFiles
	if w.b != nil && w.b.StateDir != "" {
		files = w.b.Memories()
		for name, sw := range w.workers {
			if mem := sw.memorySnapshot(); mem != nil {
				mems[name] = mem
			}
		}
	}
	dir, now, log := w.o.StateDir, w.o.Now(), w.log
	return func() {
		if err := w.state.save(dir, now); err != nil {
			log.Warn("cannot write the state file", "error", err)
		}
		for name, mem := range mems {
			if err := files.Save(name, mem); err != nil {
				log.Debug("cannot save the memory", "source", name, "error", err)
			}
		}
	}
}

// saver writes the state in the background, the newest request only.
type saver struct {
	mu   sync.Mutex
	next func()
	wake chan struct{}
}

func newSaver() *saver { return &saver{wake: make(chan struct{}, 1)} }

func (s *saver) put(f func()) {
	s.mu.Lock()
	s.next = f
	s.mu.Unlock()
	if f != nil {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

func (s *saver) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		}
		s.mu.Lock()
		f := s.next
		s.next = nil
		s.mu.Unlock()
		if f != nil {
			f()
		}
	}
}

func (w *watcher) backups() *broker.Backups {
	if w.b == nil || w.b.StateDir == "" {
		return nil
	}
	return w.b.Backups()
}
