package watch

import (
	"context"
	"path/filepath"
	"time"

	"github.com/mc-broker/mc-broker/broker"
	"github.com/mc-broker/mc-broker/broker/watch/lockmirror"
)

// RefreshLockMirroring is implemented by sources that can opt out of
// having the refresh lock mirrored into their own directory (config key
// mirror_refresh_lock: false); copies are mirrored into either way.
type RefreshLockMirroring interface {
	MirrorRefreshLock() bool
}

// RefreshLockDirectory is implemented by sources whose CLI takes its
// refresh lock somewhere other than beside a watched file: a Keychain
// source's Claude takes it in its config directory, while the file the
// watcher watches for it is the keychain database.
type RefreshLockDirectory interface {
	RefreshLockDir() string
}

// RefreshLockPlace is implemented by copies whose directory is not on this
// host (a volume copy, reached through the engine's resident agent): the
// refresh lock is mirrored into and out of it through place, under name
// (never a path on this host), and events says when its lock may have
// changed.
type RefreshLockPlace interface {
	RefreshLockPlace() (name string, place lockmirror.Place, events <-chan struct{})
}

// LockMirrorState is what status shows of refresh-lock mirroring.
type LockMirrorState struct {
	// Directories counts the directories locks are mirrored across.
	Directories int `json:"directories"`
	// Mirrored counts locks created in other directories.
	Mirrored int `json:"mirrored"`
	// Expired counts rounds whose mirrors were removed at the bound while
	// the original lock was still held.
	Expired int `json:"expired,omitempty"`
	// Races counts locks taken in two directories at nearly the same time.
	Races    int        `json:"races"`
	LastRace *time.Time `json:"last_race,omitempty"`
	// Refused counts locks not mirrored: their directory's earlier lock
	// held the others without a new login, or containers' locks used up
	// the minute's budget.
	Refused int `json:"refused,omitempty"`
}

// lockMirrors are the running config's mirrors, by group and directory.
type lockMirrors struct {
	byGroup map[string]*lockmirror.Mirror
	byDir   map[string]string // directory -> group
}

// installMirrors builds a Mirror for each Claude group with at least two
// directories on this host: the source's (unless it opts out) and each
// directory copy's.
func (w *watcher) installMirrors(ctx context.Context, b *broker.Broker) {
	w.mirrors = lockMirrors{byGroup: map[string]*lockmirror.Mirror{}, byDir: map[string]string{}}
	if w.o.NoLockMirror {
		return
	}
	self := lockmirror.Self()
	total := 0
	for _, s := range b.Sources {
		if s.Kind().Name() != "claude" {
			continue
		}
		var dirs []string
		places := map[string]lockmirror.Place{}
		feeds := map[string]<-chan struct{}{}
		add := func(v any) {
			if rp, ok := v.(RefreshLockPlace); ok {
				name, place, events := rp.RefreshLockPlace()
				name = filepath.Clean(name)
				if _, taken := w.mirrors.byDir[name]; !taken {
					w.mirrors.byDir[name] = s.Name()
					dirs = append(dirs, name)
					places[name], feeds[name] = place, events
				}
				return
			}
			f, ok := v.(broker.WatchedFiles)
			if !ok {
				return
			}
			for _, p := range f.WatchedFiles() {
				d := filepath.Dir(filepath.Clean(p))
				if _, taken := w.mirrors.byDir[d]; !taken {
					w.mirrors.byDir[d] = s.Name()
					dirs = append(dirs, d)
				}
			}
		}
		if opt, ok := s.(RefreshLockMirroring); !ok || opt.MirrorRefreshLock() {
			if rd, ok := s.(RefreshLockDirectory); ok {
				if d := rd.RefreshLockDir(); d != "" {
					d = filepath.Clean(d)
					if _, taken := w.mirrors.byDir[d]; !taken {
						w.mirrors.byDir[d] = s.Name()
						dirs = append(dirs, d)
						// Watched for the lock only: no login file there.
						w.dirs[d] = true
					}
				}
			} else {
				add(s)
			}
		}
		// The host's own directory is trusted; the copies' are not (a
		// container can take and hold a lock there at will).
		trusted := append([]string(nil), dirs...)
		for _, c := range b.Copies {
			if c.Source == s.Name() {
				add(c.Sink)
			}
		}
		if len(dirs) < 2 {
			for _, d := range dirs {
				delete(w.mirrors.byDir, d)
			}
			continue
		}
		total += len(dirs)
		var local []string
		for _, d := range dirs {
			if places[d] == nil {
				local = append(local, d)
			}
		}
		for name, events := range feeds {
			w.wg.Add(1)
			go w.feedLockEvents(ctx, name, events)
		}
		if n := lockmirror.RemoveLeftovers(local, self); n > 0 {
			w.log.Info("removed refresh locks left by a process that is gone (an mc-broker killed while mirroring?)", "source", s.Name(), "locks", n)
		}
		w.mirrors.byGroup[s.Name()] = lockmirror.New(lockmirror.Options{
			Dirs: dirs, Trusted: trusted, Places: places, Bound: w.o.LockMirrorBound, Self: self, Now: w.o.Now,
			Log: w.log.With("source", s.Name()),
		})
	}
	w.state.lockMirrorDirs(total)
}

// feedLockEvents hands a place's lock events to the main goroutine, as
// inotify's are for directories here, until ctx ends.
func (w *watcher) feedLockEvents(ctx context.Context, name string, events <-chan struct{}) {
	defer w.wg.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case <-events:
		}
		select {
		case w.main <- func() { w.mirrorEvent(filepath.Join(name, lockmirror.LockName)) }:
		case <-ctx.Done():
			return
		}
	}
}

// mirrorEvent handles an event on a refresh lock; it reports whether p was
// one. A lock taken anywhere is mirrored at once; when the last original is
// released, the group's pass runs first (the new login reaches every
// directory) and only then are the mirrors removed, so that a Claude Code
// waiting in another directory finds the new login when it retries.
func (w *watcher) mirrorEvent(p string) bool {
	if filepath.Base(p) != lockmirror.LockName {
		return false
	}
	dir := filepath.Dir(p)
	name, ok := w.mirrors.byDir[dir]
	if !ok {
		return false
	}
	m := w.mirrors.byGroup[name]
	res := m.Observe(dir)
	now := w.o.Now()
	w.state.lockMirror(func(st *LockMirrorState) {
		st.Mirrored += res.Mirrored
		if res.Refused != "" {
			st.Refused++
		}
		if res.Races > 0 {
			st.Races += res.Races
			st.LastRace = &now
		}
	})
	if res.Mirrored > 0 {
		w.log.Debug("refresh lock mirrored", "source", name, "from", dir, "locks", res.Mirrored)
	}
	if res.Refused != "" {
		w.log.Warn("a refresh lock is not mirrored", "source", name, "dir", dir, "reason", res.Refused)
	}
	if res.Released {
		round := res.Round
		release := func(loginChanged time.Time) {
			n := m.Release(round, loginChanged)
			w.log.Debug("refresh lock released; login fanned out, mirrors removed", "source", name, "from", dir, "locks", n)
		}
		if sw, ok := w.workers[name]; ok {
			// The new login reaches every directory first: a Claude Code
			// waiting on a mirror finds it when it retries.
			sw.request(passRequest{done: release})
		} else {
			release(time.Time{})
		}
	}
	return true
}

// mirrorDeadline is the earliest bound of the mirrors held now.
func (w *watcher) mirrorDeadline() time.Time {
	var next time.Time
	for _, m := range w.mirrors.byGroup {
		if d := m.Deadline(); !d.IsZero() && (next.IsZero() || d.Before(next)) {
			next = d
		}
	}
	return next
}

// expireMirrors removes mirrors held past the bound.
func (w *watcher) expireMirrors() {
	for _, m := range w.mirrors.byGroup {
		if m.Expire() > 0 {
			w.state.lockMirror(func(st *LockMirrorState) { st.Expired++ })
		}
	}
}

// closeMirrors removes every mirror (stop, reload).
func (w *watcher) closeMirrors() {
	for _, m := range w.mirrors.byGroup {
		m.Close()
	}
}
