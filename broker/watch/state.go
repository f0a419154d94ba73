package watch

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mc-broker/mc-broker/broker"
	"github.com/mc-broker/mc-broker/broker/atomicfile"
	"github.com/mc-broker/mc-broker/broker/credential"
)

// StateFile and LockFile are the watcher's files in the state directory.
const (
	StateFile = "watch.json"
	LockFile  = "watch.lock"
)

// State is what a running watcher records for `mc-broker status`. It never
// holds a secret: fingerprints and expiry times only.
type State struct {
	mu    sync.Mutex
	dirty bool

	PID       int           `json:"pid"`
	StartedAt time.Time     `json:"started_at"`
	UpdatedAt time.Time     `json:"updated_at"`
	Config    string        `json:"config"`
	Sources   []SourceState `json:"sources"`
	// Adoptions counts newer logins taken from copies into host stores.
	Adoptions    int       `json:"adoptions"`
	LastAdoption *Adoption `json:"last_adoption,omitempty"`
	// LockMirror is set while Claude refresh locks are mirrored (mirror.go).
	LockMirror *LockMirrorState `json:"lock_mirror,omitempty"`
}

// SourceState is one source's last pass.
type SourceState struct {
	Name        string             `json:"name"`
	State       broker.SourceState `json:"state"`
	Fingerprint string             `json:"fingerprint,omitempty"`
	ExpiresAt   *time.Time         `json:"expires_at,omitempty"`
	// RefreshExpiresAt is when the refresh token itself ends.
	RefreshExpiresAt *time.Time `json:"refresh_expires_at,omitempty"`
	Problem          string     `json:"problem,omitempty"`
	// WriteBack says why a login taken back from a copy could not be
	// written into the host's store (the copies have it), since when.
	WriteBack      string      `json:"write_back_problem,omitempty"`
	WriteBackSince *time.Time  `json:"write_back_failing_since,omitempty"`
	Copies         []CopyState `json:"copies"`
}

// CopyState is one copy's last result.
type CopyState struct {
	Location    string         `json:"location"`
	Outcome     broker.Outcome `json:"outcome"`
	At          time.Time      `json:"at"`
	Fingerprint string         `json:"fingerprint,omitempty"`
	Problem     string         `json:"problem,omitempty"`
	// Refused says why the copy's newer login was not taken back, at
	// RefusedAt; it is shown for an hour after, although the copy was
	// given the host's login at once (a container's attack is noticed).
	Refused   string     `json:"refused,omitempty"`
	RefusedAt *time.Time `json:"refused_at,omitempty"`
	// FailingSince is set while the copy keeps failing.
	FailingSince *time.Time `json:"failing_since,omitempty"`
	// LastWritten is when the watcher last wrote this copy.
	LastWritten *time.Time `json:"last_written,omitempty"`
}

// Adoption is a newer login taken from a copy into the host's store.
type Adoption struct {
	Source      string    `json:"source"`
	From        string    `json:"from"`
	Fingerprint string    `json:"fingerprint"`
	At          time.Time `json:"at"`
}

func newState(now time.Time, config string) *State {
	return &State{PID: os.Getpid(), StartedAt: now, Config: configName(config)}
}

// reset drops sources that are no longer configured (after a reload).
func (s *State) reset(b *broker.Broker) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dirty = true
	keep := map[string]bool{}
	for _, src := range b.Sources {
		keep[src.Name()] = true
	}
	var out []SourceState
	for _, src := range s.Sources {
		if keep[src.Name] {
			out = append(out, src)
		}
	}
	s.Sources = out
}

func (s *State) source(name string) *SourceState {
	for i := range s.Sources {
		if s.Sources[i].Name == name {
			return &s.Sources[i]
		}
	}
	s.Sources = append(s.Sources, SourceState{Name: name})
	return &s.Sources[len(s.Sources)-1]
}

// update records a pass's plan for one source.
func (s *State) update(sr broker.SourceReport, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dirty = true
	src := s.source(sr.Name)
	prev := map[string]CopyState{}
	for _, c := range src.Copies {
		prev[c.Location] = c
	}
	src.State, src.Fingerprint, src.ExpiresAt, src.Problem = sr.State, sr.Fingerprint, sr.ExpiresAt, sr.Problem
	src.RefreshExpiresAt = sr.RefreshExpiresAt
	src.Copies = src.Copies[:0]
	for _, c := range sr.Copies {
		cs := CopyState{Location: c.Location, Outcome: c.Outcome, At: now, Fingerprint: c.Fingerprint, Problem: c.Problem}
		p, had := prev[c.Location]
		if had {
			cs.LastWritten = p.LastWritten
			cs.Refused, cs.RefusedAt = p.Refused, p.RefusedAt
		}
		cs.refused(c.Refused, now)
		if c.Outcome == broker.Failed {
			cs.FailingSince = &now
			if had && p.FailingSince != nil {
				cs.FailingSince = p.FailingSince
			}
		} else if had && p.FailingSince != nil && c.Outcome.Writes() {
			// Written in this pass: still failing until the write says.
			cs.FailingSince, cs.Problem = p.FailingSince, p.Problem
		}
		src.Copies = append(src.Copies, cs)
	}
}

// refused records why a pass did not take the copy's login back (""
// when it was not asked to): a refusal stays for broker.TakeBackWindow.
func (c *CopyState) refused(why string, now time.Time) {
	switch {
	case why != "":
		c.Refused, c.RefusedAt = why, &now
	case c.RefusedAt == nil || now.Sub(*c.RefusedAt) >= broker.TakeBackWindow:
		c.Refused, c.RefusedAt = "", nil
	}
}

// copyResult records a write's result.
func (s *State) copyResult(source, loc string, r broker.CopyResult, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dirty = true
	src := s.source(source)
	for i := range src.Copies {
		c := &src.Copies[i]
		if c.Location != loc {
			continue
		}
		c.Outcome, c.At, c.Problem = r.Plan.Outcome, now, r.Plan.Problem
		c.refused(r.Plan.Refused, now)
		c.Fingerprint = r.Plan.Info.Fingerprint
		if r.Holds != nil {
			c.Fingerprint = r.Info.Fingerprint
		}
		if r.Plan.Action == broker.Fail {
			if c.FailingSince == nil {
				c.FailingSince = &now
			}
			c.Fingerprint = ""
			return
		}
		c.FailingSince = nil
		if r.Plan.Action == broker.Write {
			t := now
			c.LastWritten = &t
		}
		return
	}
}

// writeBack records whether writing a take-back into the host's store
// fails (problem "" when it works).
func (s *State) writeBack(source, problem string, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dirty = true
	src := s.source(source)
	switch {
	case problem == "":
		src.WriteBack, src.WriteBackSince = "", nil
	case src.WriteBackSince == nil:
		src.WriteBack, src.WriteBackSince = problem, &now
	default:
		src.WriteBack = problem
	}
}

func (s *State) adopted(source, from string, info credential.Info, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dirty = true
	s.Adoptions++
	s.LastAdoption = &Adoption{Source: source, From: from, Fingerprint: info.Fingerprint, At: now}
}

// lockMirror changes what status shows of lock mirroring, under the
// state's lock: a save may be encoding it on another goroutine.
func (s *State) lockMirror(f func(*LockMirrorState)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.LockMirror != nil {
		s.dirty = true
		f(s.LockMirror)
	}
}

// lockMirrorDirs records how many directories locks are mirrored across
// (0: none, and no lock mirroring to show).
func (s *State) lockMirrorDirs(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dirty = true
	switch {
	case n == 0:
		s.LockMirror = nil
	case s.LockMirror == nil:
		s.LockMirror = &LockMirrorState{Directories: n}
	default:
		s.LockMirror.Directories = n
	}
}

// isDirty reports whether something changed since the last save.
func (s *State) isDirty() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dirty
}

func (s *State) save(dir string, now time.Time) error {
	s.mu.Lock()
	s.UpdatedAt = now
	data, err := json.MarshalIndent(s, "", "  ")
	s.dirty = false
	s.mu.Unlock()
	if err != nil {
		return err
	}
	return atomicfile.Write(dir, StateFile, append(data, '\n'), atomicfile.Options{Mode: 0o600})
}

// AlreadyRunningError says another watcher holds the state directory.
type AlreadyRunningError struct {
	PID int
	Dir string
}

func (e *AlreadyRunningError) Error() string {
	who := "another mc-broker watch"
	if e.PID > 0 {
		who += " (pid " + strconv.Itoa(e.PID) + ")"
	}
	return who + " is already running for " + e.Dir + ": stop it first (mc-broker launch status shows a background one)"
}

// lockState takes the watcher lock: one watcher per state directory, so two
// never race each other's write-backs. The lock is what `status` checks.
func lockState(dir string) (release func(), err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("cannot create the state directory: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, LockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("cannot open the watcher lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			st, _ := ReadState(dir)
			pid := 0
			if st != nil {
				pid = st.PID
			}
			return nil, &AlreadyRunningError{PID: pid, Dir: dir}
		}
		return nil, fmt.Errorf("cannot take the watcher lock: %w", err)
	}
	return func() { f.Close() }, nil
}

// Running reports whether a watcher holds the state directory's lock.
func Running(dir string) bool {
	f, err := os.Open(filepath.Join(dir, LockFile))
	if err != nil {
		return false
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB); err != nil {
		return errors.Is(err, unix.EWOULDBLOCK)
	}
	_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
	return false
}

// ReadState reads the last state a watcher wrote; nil without error when
// no watcher has run.
func ReadState(dir string) (*State, error) {
	data, err := os.ReadFile(filepath.Join(dir, StateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var s State
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("%s: not a watcher state file: %v", filepath.Join(dir, StateFile), err)
	}
	return &s, nil
}
