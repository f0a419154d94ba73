// Package lockmirror mirrors Claude Code's OAuth refresh lock across the
// config directories that share one login (the host's and each copy's), so
// that a Claude Code in any of them waits while one of them refreshes,
// instead of refreshing with a refresh token that has just been spent.
//
// Claude Code (checked against 2.1.332) serialises refreshes in one config
// directory with proper-lockfile: mkdir of LockName, then OwnerName naming
// the holder, the refresh request, the new login by temp file + rename, and
// rmdir. A Claude Code that finds the lock held retries every 1 to 2 s,
// re-reading the login each time and adopting a newer one, and gives up
// after about 7.5 s with a transient error; it takes a lock over only when
// the holder is provably gone, which a live process in another pid
// namespace never is.
//
// A Mirror is a state machine over one group of directories, driven by its
// caller (the watcher) and free of any file-watching code: Observe after
// something happened to a directory's lock; on Released, bring the login in
// step, then call Release; call Expire once Deadline has passed.
package lockmirror

import (
	"errors"
	"io/fs"
	"log/slog"
	"path/filepath"
	"syscall"
	"time"
)

// DefaultBound is how long mirrored locks are held at most: below the
// about 7.5 s after which a waiting Claude Code gives up, so that a holder
// that died with its lock held costs the others one transient retry.
const DefaultBound = 5 * time.Second

// DefaultPenalty is how long a directory whose lock held the others for a
// while and brought no new login loses the right to have its lock
// mirrored; DefaultShare the largest part of any minute that locks taken
// in untrusted directories may hold the others.
const (
	DefaultPenalty = 5 * time.Minute
	DefaultShare   = 0.25
	// penaltyFloor: a holder that finds the login fresh already (another
	// one refreshed while it waited) releases within milliseconds; only a
	// round held longer than this without a new login is penalised.
	penaltyFloor = time.Second
)

// Options configure a Mirror.
type Options struct {
	// Dirs are the Claude config directories that share one login.
	Dirs []string
	// Trusted are the directories whose locks are always mirrored (the
	// host's own); locks taken in the others (containers' copies) are
	// mirrored within a budget.
	Trusted []string
	// Bound caps how long mirrors are held (DefaultBound when 0).
	Bound time.Duration
	// Penalty and Share: see DefaultPenalty, DefaultShare.
	Penalty time.Duration
	Share   float64
	// Places are the directories of Dirs that are not on this host (by
	// their name in Dirs); the others are directories here.
	Places map[string]Place
	// Self names the owner of the mirrors (Self() when zero).
	Self Identity
	Now  func() time.Time
	Log  *slog.Logger
}

// Result says what one Observe did.
type Result struct {
	// Mirrored counts locks created in other directories.
	Mirrored int
	// Races counts directories that took their own lock while another
	// directory's lock was held and mirrored: two refreshes may be in
	// flight with one refresh token, and mirroring cannot prevent it.
	Races int
	// Released is set when the last original lock is gone: the caller
	// brings every directory's login in step, then calls Release with
	// Round.
	Released bool
	Round    int
	// Refused says why a lock was not mirrored (its directory's earlier
	// locks held the others without bringing a new login, or locks from
	// containers' directories have held the others for too much of the
	// last minute); empty when it was, or nothing was taken.
	Refused string
}

// LockID tells one lock directory from a later one at the same path.
type LockID struct {
	Dev, Ino uint64
	Ctime    int64 // ns
	Born     int64 // ns; 0 when not recorded
}

func (a LockID) same(b LockID) bool {
	if a.Dev != b.Dev || a.Ino != b.Ino {
		return false
	}
	if a.Born != 0 || b.Born != 0 {
		return a.Born == b.Born
	}
	return a.Ctime == b.Ctime
}

// held is a lock seen in one directory.
type held struct {
	mirror bool // made by this Mirror
	// unmirrored: an original whose lock was not mirrored (refused).
	unmirrored bool
	id         LockID
	owner      Owner // what was written, for mirrors
	since      time.Time
}

// Mirror mirrors one group's refresh lock. It is not safe for concurrent
// use: the watcher calls it from its one goroutine.
type Mirror struct {
	o    Options
	dirs map[string]bool
	held map[string]*held // by directory
	// start is when the current round of mirrors was made; zero when no
	// round is active. expired is set once its mirrors were removed at
	// the bound while an original was still held.
	start   time.Time
	expired bool
	// releasing is set between Released and Release: the login is being
	// brought in step, the mirrors still hold.
	releasing bool
	// raced remembers directories already counted in this round.
	raced map[string]bool
	// round numbers the rounds, so that the release of one that ended
	// never takes down the mirrors of the next.
	round int
	// The budget: which directories are trusted, which lost the right to
	// be mirrored until when, the rounds from untrusted directories in the
	// last minute, and where the current round came from.
	trusted   map[string]bool
	banned    map[string]time.Time
	spent     []span
	origin    string
	unchecked map[string]bool // originals not mirrored (refused)
}

type span struct{ from, to time.Time }

// New returns a Mirror over o.Dirs; nothing is touched until Observe.
func New(o Options) *Mirror {
	if o.Bound <= 0 {
		o.Bound = DefaultBound
	}
	if o.Self == (Identity{}) {
		o.Self = Self()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Penalty <= 0 {
		o.Penalty = DefaultPenalty
	}
	if o.Share <= 0 {
		o.Share = DefaultShare
	}
	m := &Mirror{o: o, dirs: map[string]bool{}, held: map[string]*held{}, raced: map[string]bool{},
		trusted: map[string]bool{}, banned: map[string]time.Time{}}
	for _, d := range o.Dirs {
		m.dirs[filepath.Clean(d)] = true
	}
	for _, d := range o.Trusted {
		m.trusted[filepath.Clean(d)] = true
	}
	return m
}

// Holding reports how many mirrors are held now.
func (m *Mirror) Holding() int {
	n := 0
	for _, h := range m.held {
		if h.mirror {
			n++
		}
	}
	return n
}

// Deadline is when the current mirrors must be removed; zero when none are
// held. A round from an untrusted directory ends sooner when the minute's
// budget runs out.
func (m *Mirror) Deadline() time.Time {
	if m.start.IsZero() || m.expired || m.Holding() == 0 {
		return time.Time{}
	}
	bound := m.o.Bound
	if !m.trusted[m.origin] {
		bound = min(bound, m.budgetLeft(m.start))
	}
	return m.start.Add(bound)
}

// budget is how long locks from untrusted directories may hold the others
// in any minute.
func (m *Mirror) budget() time.Duration { return time.Duration(m.o.Share * float64(time.Minute)) }

// budgetLeft is what is left of the budget at t, counting the rounds that
// ended within the minute before.
func (m *Mirror) budgetLeft(t time.Time) time.Duration {
	used := time.Duration(0)
	keep := m.spent[:0]
	for _, s := range m.spent {
		if t.Sub(s.to) >= time.Minute {
			continue
		}
		keep = append(keep, s)
		from := s.from
		if t.Sub(from) > time.Minute {
			from = t.Add(-time.Minute)
		}
		used += s.to.Sub(from)
	}
	m.spent = keep
	return max(m.budget()-used, 0)
}

// refuse says why a lock just taken in dir is not mirrored, or "".
func (m *Mirror) refuse(dir string, now time.Time) string {
	if m.trusted[dir] {
		return ""
	}
	if until := m.banned[dir]; now.Before(until) {
		return "its last lock held the others without bringing a new login; not mirrored until " + until.UTC().Format(time.RFC3339)
	}
	if m.budgetLeft(now) <= 0 {
		return "locks from containers' directories held the others for " + m.budget().String() + " of the last minute already"
	}
	return ""
}

// endRound books the round that ended at now against the budget, and
// takes the right to be mirrored away from an untrusted directory whose
// lock held the others for a while without a new login.
func (m *Mirror) endRound(now time.Time, fresh bool) {
	if m.start.IsZero() || m.trusted[m.origin] {
		return
	}
	m.spent = append(m.spent, span{m.start, now})
	if !fresh && now.Sub(m.start) > penaltyFloor {
		m.banned[m.origin] = now.Add(m.o.Penalty)
		m.o.Log.Warn("a refresh lock held the others without bringing a new login: locks from that directory are not mirrored for a while",
			"dir", m.origin, "held", now.Sub(m.start).Round(time.Millisecond), "until", m.banned[m.origin].UTC().Format(time.RFC3339))
	}
}

// Observe looks at dir's lock after an event there. It reads the file
// system rather than trusting the event: events arrive late and merged.
func (m *Mirror) Observe(dir string) Result {
	dir = filepath.Clean(dir)
	if !m.dirs[dir] {
		return Result{}
	}
	var res Result
	id, present := m.stat(dir)
	cur := m.held[dir]
	switch {
	case present && cur != nil && cur.id.same(id):
		// Our own mkdir echoing back, or a second event on a known lock.
	case present:
		if cur != nil && cur.mirror {
			m.o.Log.Warn("a refresh lock mc-broker mirrored was replaced by another; leaving the new one alone", "dir", dir)
		}
		now := m.o.Now()
		m.held[dir] = &held{id: id, since: now}
		newRound := m.start.IsZero() || m.expired || m.releasing
		if newRound {
			if why := m.refuse(dir, now); why != "" {
				// Held, but nobody waits for it.
				m.held[dir].unmirrored = true
				res.Refused = why
				if m.releasing {
					// The last round's mirrors still hold: take them down
					// now rather than let this lock keep them.
					m.releasing = false
					m.removeMirrors()
					m.start, m.expired = time.Time{}, false
				}
				return res
			}
		}
		switch {
		case newRound:
			// A new round: every other directory gets the lock (those
			// still holding the last round's mirrors keep them).
			if m.releasing {
				m.endRound(now, true)
			}
			m.start, m.expired, m.releasing = now, false, false
			m.origin = dir
			m.round++
			clear(m.raced)
			res.Mirrored, res.Races = m.mirrorAll(dir)
		case !m.raced[dir]:
			m.raced[dir] = true
			res.Races++
			m.o.Log.Warn("two directories took the refresh lock at nearly the same time; if both refresh, one of them may be logged out",
				"dir", dir, "held_in", m.originals(dir))
		}
	case cur != nil:
		delete(m.held, dir)
		if cur.mirror {
			m.o.Log.Warn("a refresh lock mc-broker mirrored was removed by someone else", "dir", dir)
			break
		}
		if cur.unmirrored {
			break
		}
		if !m.start.IsZero() && len(m.originals("")) == 0 {
			res.Released, res.Round = true, m.round
			m.releasing = true
		}
	}
	return res
}

// originals lists the directories holding a lock mc-broker did not make,
// except skip.
func (m *Mirror) originals(skip string) []string {
	var out []string
	for d, h := range m.held {
		if !h.mirror && d != skip {
			out = append(out, d)
		}
	}
	return out
}

// stat reports whether dir holds a lock directory, and which one.
func (m *Mirror) stat(dir string) (LockID, bool) {
	id, isDir, err := m.place(dir).StatLock()
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			m.o.Log.Debug("cannot look at a refresh lock", "dir", dir, "error", err)
		}
		return LockID{}, false
	}
	// Claude Code's lock is a directory; anything else there is not one,
	// and mkdir fails on it all the same.
	return id, isDir
}

// mirrorAll takes the lock in every directory but from: all mkdirs first
// (that is what makes a Claude Code there wait), then the owner files.
func (m *Mirror) mirrorAll(from string) (made, races int) {
	var fresh []string
	for d := range m.dirs {
		if d == from {
			continue
		}
		if h := m.held[d]; h != nil {
			if id, ok := m.stat(d); ok && id.same(h.id) {
				continue
			}
			// Released already; its event is still on its way.
			delete(m.held, d)
		}
		err := m.place(d).MkdirLock()
		switch {
		case err == nil:
			fresh = append(fresh, d)
		case errors.Is(err, fs.ErrExist):
			// Taken here in the same instant: a second original.
			if id, ok := m.stat(d); ok {
				m.held[d] = &held{id: id, since: m.o.Now()}
				m.raced[d] = true
				races++
				m.o.Log.Warn("two directories took the refresh lock at nearly the same time; if both refresh, one of them may be logged out",
					"dir", d, "held_in", from)
			}
		case errors.Is(err, fs.ErrNotExist):
			// The directory is not there (yet): nothing runs in it.
		default:
			m.o.Log.Warn("cannot mirror the refresh lock; a Claude Code there may refresh at the same time", "dir", d, "error", err)
		}
	}
	for _, d := range fresh {
		id, ok := m.stat(d)
		if !ok {
			continue
		}
		h := &held{mirror: true, id: id, since: m.o.Now()}
		h.owner = Owner{PID: m.o.Self.PID, ProcStart: m.o.Self.ProcStart, PIDDomain: m.o.Self.PIDDomain, PIDSpace: m.o.Self.PIDSpace}
		m.held[d] = h
		made++
		// Claude Code writes no owner record when the file system keeps
		// no birth time; neither does mc-broker, so that the record never
		// says something untrue.
		if id.Born > 0 {
			h.owner.LockBirthtimeMs = float64(id.Born/1e9)*1e3 + float64(id.Born%1e9)/1e6
			if err := m.place(d).WriteOwner(h.owner); err != nil {
				m.o.Log.Warn("cannot write the refresh lock's owner file; the lock still holds", "dir", d, "error", err)
			}
		}
	}
	return made, races
}

// Release removes the mirrors of round, after the caller has brought the
// login in step; loginChanged is when the login everywhere last changed
// (a round that brought none may cost its directory the right to be
// mirrored). A round that a new lock replaced meanwhile leaves them: they
// hold for the new one. It returns how many were removed.
func (m *Mirror) Release(round int, loginChanged time.Time) int {
	if round != m.round || !m.releasing {
		return 0
	}
	m.releasing = false
	m.endRound(m.o.Now(), loginChanged.After(m.start))
	n := m.removeMirrors()
	if len(m.originals("")) == 0 {
		m.start, m.expired = time.Time{}, false
		clear(m.raced)
	}
	return n
}

// Expire removes the mirrors once the bound has passed, even though an
// original is still held: its holder may be dead. It reports how many were
// removed; 0 before the deadline.
func (m *Mirror) Expire() int {
	d := m.Deadline()
	if d.IsZero() || m.o.Now().Before(d) {
		return 0
	}
	m.o.Log.Warn("refresh lock held longer than the bound; removing the mirrored locks",
		"held_in", m.originals(""), "bound", d.Sub(m.start))
	m.endRound(d, false)
	m.expired = true
	return m.removeMirrors()
}

// Close removes every mirror (watcher stopping or reloading).
func (m *Mirror) Close() int {
	n := m.removeMirrors()
	m.start, m.expired, m.releasing = time.Time{}, false, false
	m.held = map[string]*held{}
	return n
}

func (m *Mirror) removeMirrors() int {
	n := 0
	for d, h := range m.held {
		if !h.mirror {
			continue
		}
		delete(m.held, d)
		if m.remove(d, h) {
			n++
		}
	}
	return n
}

// remove takes down one mirror, but only if it is still the directory
// mc-broker made and its owner file, if any, still names mc-broker: the
// owner file first, then the directory, as Claude Code does, so that a
// Claude Code taking the lock next never loses its owner file.
func (m *Mirror) remove(dir string, h *held) bool {
	p := m.place(dir)
	id, ok := m.stat(dir)
	if !ok || !id.same(h.id) {
		m.o.Log.Debug("refresh lock no longer the one mc-broker made; left alone", "dir", dir)
		return false
	}
	owner, err := p.ReadOwner()
	switch {
	case err != nil:
		m.o.Log.Warn("refresh lock's owner file unreadable; left alone", "dir", dir, "error", err)
		return false
	case owner != nil && (!m.o.Self.names(owner) || owner.LockBirthtimeMs != h.owner.LockBirthtimeMs):
		m.o.Log.Warn("refresh lock's owner file names another process; left alone", "dir", dir, "pid", owner.PID)
		return false
	case owner != nil:
		if err := p.RemoveOwner(); err != nil && !errors.Is(err, fs.ErrNotExist) {
			m.o.Log.Warn("cannot remove the refresh lock's owner file", "dir", dir, "error", err)
		}
	}
	if err := p.RemoveLock(); err != nil && !errors.Is(err, fs.ErrNotExist) {
		// Not empty (someone put something in it) or not ours to remove.
		if !errors.Is(err, syscall.ENOTEMPTY) {
			m.o.Log.Warn("cannot remove a mirrored refresh lock", "dir", dir, "error", err)
		}
		return false
	}
	return true
}

// Round is the number of the current (or last) round.
func (m *Mirror) Round() int { return m.round }
