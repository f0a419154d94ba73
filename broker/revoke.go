package broker

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/mc-broker/mc-broker/broker/atomicfile"
	"github.com/mc-broker/mc-broker/broker/credential"
)

// Revocations records the logins whose copies were revoked (mc-broker
// revoke): one file per source in Dir, written before any copy is erased
// and removed by the next sync or login of that source. A pass reads it
// before it plans and again under each copy's lock just before a write, so
// that no pass (a running watcher's included) puts a login back into a
// revoked copy, however the two interleave.
type Revocations struct{ Dir string }

// At returns when source's copies were revoked; zero when they are not. A
// record that cannot be read counts as a revocation: when in doubt, a copy
// is not written.
func (r *Revocations) At(source string) time.Time {
	if r == nil || r.Dir == "" {
		return time.Time{}
	}
	fi, err := os.Lstat(r.path(source))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return time.Time{}
	case err != nil:
		return time.Unix(0, 0).UTC()
	}
	return fi.ModTime().UTC()
}

// Mark records that source's copies are revoked as of now.
func (r *Revocations) Mark(source string, now time.Time) error {
	if err := os.MkdirAll(r.Dir, 0o700); err != nil {
		return err
	}
	data := []byte("{\"revoked_at\": \"" + now.UTC().Format(time.RFC3339Nano) + "\"}\n")
	if err := atomicfile.Write(r.Dir, source+".json", data, atomicfile.Options{Mode: 0o600}); err != nil {
		return err
	}
	return os.Chtimes(r.path(source), now, now)
}

// Clear lifts source's revocation; it reports whether there was one.
func (r *Revocations) Clear(source string) (bool, error) {
	if r == nil || r.Dir == "" {
		return false, nil
	}
	err := os.Remove(r.path(source))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

func (r *Revocations) path(source string) string { return filepath.Join(r.Dir, source+".json") }

// Revocations is where the broker records revoked copies.
func (b *Broker) Revocations() *Revocations {
	if b.StateDir == "" {
		return nil
	}
	return &Revocations{Dir: filepath.Join(b.StateDir, "revoked")}
}

// Eraser is implemented by sinks that can take the login out of a copy
// (mc-broker revoke), under the same locks as Update. erase is called with
// what the copy holds and says whether to take it out; erased reports
// whether it was. A copy that holds nothing is left as it is.
type Eraser interface {
	Erase(ctx context.Context, erase func(current []byte) bool) (erased bool, err error)
}

// EraseOutcome is what revoke did to one copy.
type EraseOutcome string

const (
	Erased      EraseOutcome = "erased" // the login was taken out
	Absent      EraseOutcome = "absent" // there was no login to take out
	LeftAlone   EraseOutcome = "left"   // not a login of this kind: not ours to erase
	EraseFailed EraseOutcome = "failed" // could not be read or erased
)

// RevokeReport says what revoke did for one source. It never holds a
// secret.
type RevokeReport struct {
	Source    string          `json:"source"`
	Kind      string          `json:"kind"`
	RevokedAt time.Time       `json:"revoked_at"`
	Copies    []ErasedCopy    `json:"copies"`
	Host      *HostRevocation `json:"host"`
}

// ErasedCopy is one copy's outcome.
type ErasedCopy struct {
	Location    string       `json:"location"`
	Outcome     EraseOutcome `json:"outcome"`
	Fingerprint string       `json:"fingerprint,omitempty"` // of the login taken out
	Problem     string       `json:"problem,omitempty"`
	// Note says how the login was taken out where that is not by deleting
	// the file (a Docker volume).
	Note string `json:"note,omitempty"`
}

// HostRevocation says what became of the host's own login.
type HostRevocation struct {
	Location string `json:"location"`
	// LoggedOut is set when the CLI's own logout ran and succeeded.
	LoggedOut bool   `json:"logged_out"`
	Problem   string `json:"problem,omitempty"`
}

// ErasedNoter is implemented by sinks that take a login out by other means
// than deleting its file, and say how.
type ErasedNoter interface {
	ErasedNote() string
}

// Failed reports whether something was not taken out.
func (r *RevokeReport) Failed() bool {
	for _, c := range r.Copies {
		if c.Outcome == EraseFailed || c.Outcome == LeftAlone {
			return true
		}
	}
	return r.Host != nil && r.Host.Problem != ""
}

// Revoke takes src's login out of every copy it was given: the configured
// copies, and extra ones (copies of earlier --dir layouts that the memory
// knows). The revocation is recorded first, so that no pass writes them
// again until LiftRevocation; the host's own login is left alone. A file
// that is not a login of src's kind is left as it is.
func (b *Broker) Revoke(ctx context.Context, src Source, extra []Sink) (*RevokeReport, error) {
	revs := b.Revocations()
	if revs == nil {
		return nil, errors.New("no state directory to record the revocation in")
	}
	now := b.now()
	if err := revs.Mark(src.Name(), now); err != nil {
		return nil, errors.New("cannot record the revocation, so nothing was erased: " + err.Error())
	}
	var sinks []Sink
	seen := map[string]bool{}
	for _, c := range b.CopiesOf(src.Name()) {
		sinks = append(sinks, c.Sink)
		seen[c.Sink.Location()] = true
	}
	for _, s := range extra {
		if !seen[s.Location()] {
			sinks = append(sinks, s)
			seen[s.Location()] = true
		}
	}
	mem := b.memories().Load(src.Name())
	rep := &RevokeReport{Source: src.Name(), Kind: src.Kind().Name(), RevokedAt: now, Copies: make([]ErasedCopy, len(sinks))}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i, s := range sinks {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			rep.Copies[i] = erase(ctx, src.Kind(), s, mem.store(s.Location()), mem.lastValid())
		})
	}
	wg.Wait()
	EndPass(ctx, copiesOf(sinks))
	for _, c := range rep.Copies {
		if c.Outcome == Erased {
			mem.Store(c.Location).Given = ""
		}
	}
	_ = b.memories().Save(src.Name(), mem)
	return rep, nil
}

func copiesOf(sinks []Sink) []Copy {
	out := make([]Copy, len(sinks))
	for i, s := range sinks {
		out[i] = Copy{Sink: s}
	}
	return out
}

// erase takes the login out of one copy, if it holds one of kind (or
// exactly what the broker gave it). A valid login of another account than
// the host's last one, which the broker did not put there, is not this
// login's copy: a container logged in there itself.
func erase(ctx context.Context, kind credential.Kind, s Sink, m *StoreMemory, last *Remembered) ErasedCopy {
	out := ErasedCopy{Location: s.Location()}
	e, ok := s.(Eraser)
	if !ok {
		out.Outcome, out.Problem = EraseFailed, "this kind of copy cannot be erased by mc-broker; remove it by hand"
		return out
	}
	var why string
	erased, err := e.Erase(ctx, func(current []byte) bool {
		info, ierr := kind.Inspect(current)
		switch {
		case m.gave(current):
			out.Fingerprint = info.Fingerprint
			return true
		case ierr == nil && last != nil && info.Identity != last.Identity:
			why = "holds a login of another account, which mc-broker did not put there: left as it is"
			return false
		case ierr == nil, errors.Is(ierr, credential.ErrNotLoggedIn):
			out.Fingerprint = info.Fingerprint
			return true
		case credential.IsForeign(ierr):
			why = "not a " + kind.Name() + " login (" + ierr.Error() + "): left as it is"
			return false
		case len(bytes.TrimSpace(current)) == 0:
			return false // nothing to take out
		}
		return true // a broken login: what is left of it goes too
	})
	switch {
	case err != nil:
		out.Outcome, out.Problem = EraseFailed, err.Error()
	case why != "":
		out.Outcome, out.Problem = LeftAlone, why
	case erased:
		out.Outcome = Erased
		if n, ok := s.(ErasedNoter); ok {
			out.Note = n.ErasedNote()
		}
	default:
		out.Outcome = Absent
	}
	return out
}
