package watch

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
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
	Problem     string             `json:"problem,omitempty"`
	Copies      []CopyState        `json:"copies"`
}

// CopyState is one copy's last result.
type CopyState struct {
	Location    string         `json:"location"`
	Outcome     broker.Outcome `json:"outcome"`
	At          time.Time      `json:"at"`
	Fingerprint string         `json:"fingerprint,omitempty"`
	Problem     string         `json:"problem,omitempty"`
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

func (s *State) update(sr broker.SourceReport, now time.Time) {
	src := s.source(sr.Name)
	prev := map[string]CopyState{}
	for _, c := range src.Copies {
		prev[c.Location] = c
	}
	src.State, src.Fingerprint, src.ExpiresAt, src.Problem = sr.State, sr.Fingerprint, sr.ExpiresAt, sr.Problem
	src.Copies = src.Copies[:0]
	for _, c := range sr.Copies {
		cs := CopyState{Location: c.Location, Outcome: c.Outcome, At: now, Fingerprint: c.Fingerprint, Problem: c.Problem}
		p, had := prev[c.Location]
		if had {
			cs.LastWritten = p.LastWritten
		}
		if c.Outcome == broker.Failed {
			cs.FailingSince = &now
			if had && p.FailingSince != nil {
				cs.FailingSince = p.FailingSince
			}
		}
		if c.Outcome.Writes() {
			t := now
			cs.LastWritten = &t
		}
		src.Copies = append(src.Copies, cs)
	}
}

func (s *State) adopted(source, from string, info credential.Info, now time.Time) {
	s.Adoptions++
	s.LastAdoption = &Adoption{Source: source, From: from, Fingerprint: info.Fingerprint, At: now}
}

func (s *State) save(dir string) error {
	data, err := json.MarshalIndent(s, "", "  ")
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

// maxBackups is how many previous host logins are kept per source.
const maxBackups = 20

// backup keeps the host's current login before a write-back replaces it:
// 0600, in the state directory, named by time and fingerprint. The oldest
// beyond maxBackups are removed.
func backup(stateDir, source string, data []byte, info credential.Info, now time.Time) (string, error) {
	dir := filepath.Join(stateDir, "backups", source)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	fp := strings.TrimPrefix(info.Fingerprint, "sha256:")
	if fp == "" {
		fp = "unparsed"
	}
	name := now.UTC().Format("20060102T150405.000000000Z") + "-" + fp + ".json"
	if err := atomicfile.Write(dir, name, data, atomicfile.Options{Mode: 0o600}); err != nil {
		return "", err
	}
	entries, err := os.ReadDir(dir)
	if err == nil && len(entries) > maxBackups {
		// ReadDir sorts by name, and names start with the time.
		for _, e := range entries[:len(entries)-maxBackups] {
			if strings.HasSuffix(e.Name(), ".json") {
				_ = os.Remove(filepath.Join(dir, e.Name()))
			}
		}
	}
	return filepath.Join(dir, name), nil
}
