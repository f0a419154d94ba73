package broker

import (
	"time"

	"github.com/mc-broker/mc-broker/broker/credential"
)

// Memory is what the broker remembers about one login's stores between
// passes: the host's last valid login (so a broken host login is only
// rescued by something newer), what each store was last given (so that a
// copy that still holds it is known to be ours to replace), since when a
// store has looked half-written, and the logins each copy gave back (so a
// copy cannot flood the host). It holds no secret: hashes, fingerprints,
// identities (themselves fingerprints) and times.
type Memory struct {
	LastValid *Remembered             `json:"last_valid,omitempty"`
	Stores    map[string]*StoreMemory `json:"stores,omitempty"`
}

// Remembered is what is kept of a valid login.
type Remembered struct {
	Fingerprint string               `json:"fingerprint"`
	Identity    string               `json:"identity,omitempty"`
	Freshness   credential.Freshness `json:"freshness"`
}

// StoreMemory is what is remembered of one store (the host's under
// HostKey, each copy's under its location).
type StoreMemory struct {
	// Given is the Hash of what the broker last wrote there, or found
	// there in agreement with the login it gave.
	Given string `json:"given,omitempty"`
	// PartialSince is when the store was first seen half-written.
	PartialSince time.Time `json:"partial_since,omitzero"`
	// TakeBacks are when logins were taken back from this copy, within
	// TakeBackWindow.
	TakeBacks []time.Time `json:"take_backs,omitempty"`
	// DistrustedUntil: a copy that went over the take-back limit is not
	// taken from until then; Distrust says why.
	DistrustedUntil time.Time `json:"distrusted_until,omitzero"`
	Distrust        string    `json:"distrust,omitempty"`
	// Counted (on the host's store) is the fingerprint of the last login
	// counted against a copy's TakeBacks: a login is counted once, for the
	// copy it came from first, not again for a copy it was sent to, nor
	// when its write-back is retried.
	Counted string `json:"counted,omitempty"`
}

// Clone returns a deep copy, for jobs that decide on other goroutines
// while the original goes on being updated.
func (m *Memory) Clone() *Memory {
	if m == nil {
		return nil
	}
	out := &Memory{Stores: make(map[string]*StoreMemory, len(m.Stores))}
	if m.LastValid != nil {
		lv := *m.LastValid
		out.LastValid = &lv
	}
	for k, s := range m.Stores {
		c := *s
		c.TakeBacks = append([]time.Time(nil), s.TakeBacks...)
		out.Stores[k] = &c
	}
	return out
}

// NewMemory returns an empty memory.
func NewMemory() *Memory { return &Memory{Stores: map[string]*StoreMemory{}} }

func (m *Memory) store(key string) *StoreMemory {
	if m == nil {
		return nil
	}
	return m.Stores[key]
}

// Store returns the memory of the store keyed key, made when missing.
func (m *Memory) Store(key string) *StoreMemory {
	if m.Stores == nil {
		m.Stores = map[string]*StoreMemory{}
	}
	s := m.Stores[key]
	if s == nil {
		s = &StoreMemory{}
		m.Stores[key] = s
	}
	return s
}

func (m *Memory) lastValid() *Remembered {
	if m == nil {
		return nil
	}
	return m.LastValid
}

// Remember records a valid host login.
func (m *Memory) Remember(info credential.Info) {
	m.LastValid = &Remembered{Fingerprint: info.Fingerprint, Identity: info.Identity, Freshness: info.Freshness}
}

// Gave reports whether the store keyed key holds exactly what the broker
// last gave it.
func (m *Memory) Gave(key string, data []byte) bool { return m.store(key).gave(data) }

func (s *StoreMemory) gave(data []byte) bool {
	return s != nil && s.Given != "" && s.Given == Hash(data)
}

func (s *StoreMemory) recentTakeBacks(now time.Time) int {
	if s == nil {
		return 0
	}
	n := 0
	for _, t := range s.TakeBacks {
		if now.Sub(t) < TakeBackWindow {
			n++
		}
	}
	return n
}

// TookBack records a take-back from this copy at now; it reports whether
// the copy has now reached the limit and is distrusted for a window.
func (s *StoreMemory) TookBack(now time.Time, limit int) (distrusted bool) {
	keep := s.TakeBacks[:0]
	for _, t := range s.TakeBacks {
		if now.Sub(t) < TakeBackWindow {
			keep = append(keep, t)
		}
	}
	s.TakeBacks = append(keep, now)
	if limit <= 0 {
		limit = DefaultMaxTakeBacks
	}
	if len(s.TakeBacks) >= limit {
		s.DistrustedUntil = now.Add(TakeBackWindow)
		s.Distrust = "gave " + itoa(len(s.TakeBacks)) + " logins within an hour"
		return true
	}
	return false
}

// Partial records that the store looked half-written at now (from the
// first time on) or, with partial false, that it no longer does.
func (s *StoreMemory) Partial(partial bool, now time.Time) {
	switch {
	case !partial:
		s.PartialSince = time.Time{}
	case s.PartialSince.IsZero():
		s.PartialSince = now
	}
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for ; n > 0; n /= 10 {
		i--
		b[i] = byte('0' + n%10)
	}
	return string(b[i:])
}
