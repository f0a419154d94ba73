package watch

import (
	"time"

	"github.com/mc-broker/mc-broker/broker"
)

// EventKind names what happened to a login that needs its user.
type EventKind string

// The events watch reports to Options.OnEvent (docs/WATCH.md lists them).
const (
	// RefreshEnding: the refresh token ends within broker.RefreshWarning;
	// only a new login helps after that.
	RefreshEnding EventKind = "refresh-token-ending"
	// RefreshEnded: the refresh token has ended.
	RefreshEnded EventKind = "refresh-token-ended"
	// LoggedOut: a login the broker had seen valid is gone from the host.
	LoggedOut EventKind = "logged-out"
	// LoginBroken: the host's login is broken (blanked by a failed
	// refresh, truncated) and is not copied.
	LoginBroken EventKind = "login-broken"
	// SourceUnreadable: the host's store cannot be read (a locked
	// Keychain, a permission).
	SourceUnreadable EventKind = "source-unreadable"
	// CopyRefused: a copy's login is not taken back (another account, an
	// implausible login, too many), or a copy holds something that is not
	// ours to replace.
	CopyRefused EventKind = "copy-refused"
	// CopyFailing: a copy cannot be written; retried with backoff.
	CopyFailing EventKind = "copy-failing"
	// WriteBackFailing: a login taken back from a copy cannot be written
	// into the host's store; the copies have it.
	WriteBackFailing EventKind = "write-back-failing"
)

// Event is one thing about a login that needs its user. It holds no
// secret: names, locations, fingerprints and times.
type Event struct {
	Event   EventKind `json:"event"`
	Source  string    `json:"source"`
	Kind    string    `json:"kind"`
	At      time.Time `json:"at"`
	Message string    `json:"message"`
	Fix     string    `json:"fix,omitempty"`
	// Location is where the host keeps the login; Copy the copy concerned.
	Location         string     `json:"location,omitempty"`
	Copy             string     `json:"copy,omitempty"`
	Fingerprint      string     `json:"fingerprint,omitempty"`
	ExpiresAt        *time.Time `json:"expires_at,omitempty"`
	RefreshExpiresAt *time.Time `json:"refresh_expires_at,omitempty"`
}

// teller tells each condition once: when it starts, or when what it says
// changes, and again only after it has cleared.
type teller struct {
	sw *sourceWorker
	// told maps a condition (event and copy) to what was told.
	told map[string]string
	// refreshAt is the source's last refresh token end, for the checks
	// that time alone triggers.
	refreshAt *time.Time
	fp        string
}

func newTeller(sw *sourceWorker) *teller { return &teller{sw: sw, told: map[string]string{}} }

// set tells e unless the same was told last for its condition.
func (ev *teller) set(e Event) {
	key := string(e.Event) + "\x00" + e.Copy
	what := e.Message + "\x00" + e.Fingerprint
	if ev.told[key] == what {
		return
	}
	ev.told[key] = what
	ev.emit(e)
}

// clear forgets a condition, so that it is told again when it comes back.
func (ev *teller) clear(kind EventKind, copy string) {
	delete(ev.told, string(kind)+"\x00"+copy)
}

func (ev *teller) emit(e Event) {
	sw := ev.sw
	e.Source, e.At = sw.name, sw.w.o.Now().UTC()
	e.Kind = sw.pass.Source.Kind().Name()
	if e.Location == "" {
		e.Location = sw.pass.Source.Location()
	}
	sw.log.Warn("needs you: "+e.Message, "event", e.Event, "copy", e.Copy, "fix", e.Fix)
	if sw.w.o.OnEvent != nil {
		sw.w.o.OnEvent(e)
	}
}

// pass tells what a pass's report says about the source and its copies.
func (ev *teller) pass(sr broker.SourceReport, plan broker.PlanResult, seenValid bool) {
	if plan.Host.Action == broker.Wait {
		return // being written: not a state worth telling
	}
	fix := loginFix(sr)
	switch {
	case sr.State == broker.SourceNotLoggedIn && seenValid:
		ev.set(Event{Event: LoggedOut, Message: sr.Name + " is not logged in on this host any more (" + sr.Problem + "); its copies keep the last login until it ends", Fix: fix})
	case sr.State == broker.SourceBroken:
		ev.set(Event{Event: LoginBroken, Message: sr.Name + "'s login on this host is broken: " + sr.Problem + "; it is not copied", Fix: fix})
	case sr.State == broker.SourceUnreadable:
		ev.set(Event{Event: SourceUnreadable, Message: "cannot read " + sr.Name + "'s login: " + sr.Problem, Fix: sr.Hint})
	}
	if sr.State != broker.SourceNotLoggedIn {
		ev.clear(LoggedOut, "")
	}
	if sr.State != broker.SourceBroken {
		ev.clear(LoginBroken, "")
	}
	if sr.State != broker.SourceUnreadable {
		ev.clear(SourceUnreadable, "")
	}
	ev.refreshAt, ev.fp = sr.RefreshExpiresAt, sr.Fingerprint
	ev.refresh(sr.Name)
	for _, c := range sr.Copies {
		why := c.Refused
		if c.Outcome == broker.Refused || c.Outcome == broker.OtherAccount {
			why = c.Problem
		}
		if why == "" {
			ev.clear(CopyRefused, c.Location)
			continue
		}
		ev.set(Event{Event: CopyRefused, Copy: c.Location, Fingerprint: c.Fingerprint,
			Message: "the copy " + c.Location + " of " + sr.Name + " is not trusted: " + why,
			Fix:     "look at what runs with this copy mounted; mc-broker status shows it"})
	}
}

// refresh tells when the refresh token is about to end, or has; called
// after each pass and on every poll, since time alone brings it.
func (ev *teller) refresh(name string) {
	if ev.refreshAt == nil {
		ev.clear(RefreshEnding, "")
		ev.clear(RefreshEnded, "")
		return
	}
	at := *ev.refreshAt
	left := at.Sub(ev.sw.w.o.Now())
	when := at.UTC().Format(time.RFC3339)
	fix := "mc-broker login " + name
	e := Event{Fingerprint: ev.fp, RefreshExpiresAt: &at, Fix: fix}
	switch {
	case left < 0:
		e.Event, e.Message = RefreshEnded, name+"'s refresh token ended at "+when+": the login cannot be refreshed any more, here or in any container"
		ev.set(e)
	case left < broker.RefreshWarning:
		e.Event, e.Message = RefreshEnding, name+"'s refresh token ends at "+when+": log in again before then"
		ev.set(e)
		ev.clear(RefreshEnded, "")
	default:
		ev.clear(RefreshEnding, "")
		ev.clear(RefreshEnded, "")
	}
}

// loginFix is how the user logs a source in again.
func loginFix(sr broker.SourceReport) string {
	if sr.Kind == "file" {
		return sr.Hint
	}
	return "mc-broker login " + sr.Name + " (or: " + sr.Hint + ")"
}
