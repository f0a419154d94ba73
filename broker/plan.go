package broker

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/mc-broker/mc-broker/broker/credential"
)

// Plan is the one place where mc-broker decides what every store of one
// login should do: which login is the newest trusted one, whether the host
// takes it back from a copy, and what each copy does. It is a pure function
// of what a pass saw and what the broker remembers, so that sync, status,
// --dry-run and watch decide alike, and the rules can be tested as a table.
//
// The rules, in short (docs/DESIGN.md and docs/SECURITY.md have the why):
//   - Newest wins: a copy is never overwritten with an older login of its
//     account, and a newer one in a copy is taken back into the host.
//   - A copy is untrusted: its login is taken back only when it is the same
//     account as the host's, plausible (expiry within what the CLI issues,
//     not refreshed in the future, small), and the copy has not given too
//     many logins lately. A copy whose newer login is refused is given the
//     host's login instead.
//   - A broken login is never copied. A broken host login is rescued only
//     by a copy newer than the last valid login the host had.
//   - Content that looks half-written is waited for, not replaced.
//   - What is not ours is not replaced: a copy file that is not a login of
//     this kind, or a login of another account that the broker did not put
//     there, is refused and left as it is (unless forced).
func Plan(in PlanInput) PlanResult {
	p := planner{in: in, now: in.Now}
	return p.plan()
}

// Seen is what a pass found in one store.
type Seen struct {
	// Exists is false when the store holds nothing (no file, no volume).
	Exists bool
	Data   []byte
	// Err is set when the store could not be read at all.
	Err error
	// Why says why a store that is not there holds no login, in the
	// store's own words ("no file here").
	Why string
	// Untidy is set when the copy's mode or owner is not what it would be
	// written with (a login readable by others).
	Untidy bool
}

// PlanInput is everything Plan decides from.
type PlanInput struct {
	Kind credential.Kind
	Now  time.Time
	Host Seen
	// HostWritable is set when the host's store can take a login back.
	HostWritable bool
	Copies       []PlanCopy
	// Memory is what the broker remembers of this login's stores; nil
	// when nothing is remembered.
	Memory *Memory
	Rules  Rules
	// Revoked is when this login's copies were revoked (mc-broker revoke);
	// zero when they are not. While revoked, no copy is written and none
	// is taken back from.
	Revoked time.Time
}

// PlanCopy is one copy as a pass saw it.
type PlanCopy struct {
	// Key names the copy in Memory (its location).
	Key     string
	Options credential.CopyOptions
	Seen    Seen
	// Unseen is set when the copy was not read in this pass (a slow store
	// whose worker has not reported yet): no decision is made for it and it
	// is not a take-back candidate.
	Unseen bool
}

// Rules are the limits a plan applies.
type Rules struct {
	// Patience is how long content that looks half-written is waited for
	// before it is treated as broken; 0 decides at once.
	Patience time.Duration
	// MaxTakeBacks caps how many logins one copy may give the host in an
	// hour (DefaultMaxTakeBacks when 0).
	MaxTakeBacks int
	// Force replaces copies that are not ours (foreign files, another
	// account's login).
	Force bool
	// NoTakeBack never takes a login back from a copy.
	NoTakeBack bool
	// HostWins gives every copy the host's login, newer or another
	// account's included (a restore).
	HostWins bool
}

// DefaultMaxTakeBacks: a real CLI refreshes every few hours, so a copy that
// gives more than a few new logins an hour is an attack or a bug.
const DefaultMaxTakeBacks = 6

// TakeBackWindow is the window MaxTakeBacks counts in, and how long a copy
// that went over it is not taken from.
const TakeBackWindow = time.Hour

func (r Rules) maxTakeBacks() int {
	if r.MaxTakeBacks > 0 {
		return r.MaxTakeBacks
	}
	return DefaultMaxTakeBacks
}

// Action is what a store does in a pass.
type Action string

const (
	Keep     Action = "keep"      // leave it as it is
	Write    Action = "write"     // write the login (or repair the store)
	TakeBack Action = "take-back" // host: take the login back from a copy
	Wait     Action = "wait"      // content looks half-written: look again shortly
	Refuse   Action = "refuse"    // not ours to replace: left as it is
	Skip     Action = "skip"      // no usable login to give: left as it is
	Fail     Action = "fail"      // could not be read
	Unknown  Action = "unknown"   // not seen in this pass
)

// PlanResult is a plan's decision for every store of one login.
type PlanResult struct {
	Host HostPlan
	// Login is what the copies should hold (the host's login, or the one
	// taken back); nil when there is no usable login.
	Login  *Login
	Copies []CopyPlan
	// Wait, when more than 0, is when to look again at what looked
	// half-written.
	Wait time.Duration
}

// Login is a valid login chosen to be everywhere.
type Login struct {
	// Data is what the host's store holds (after a take-back: will hold).
	Data []byte
	Info credential.Info
	// From is the copy it was taken back from; -1 for the host's own.
	From int
}

// HostPlan is the plan for the host's store.
type HostPlan struct {
	Action Action
	State  SourceState
	// Info is the host's login when State is valid.
	Info credential.Info
	// Problem says why the host's login is not usable; Broken is set when
	// it is content that must not be copied.
	Problem string
	Err     error
	// From is the copy a take-back takes from; Data what the host then
	// holds.
	From int
	Data []byte
	// Rescue is set when the take-back replaces a broken host login.
	Rescue bool
}

// CopyPlan is the plan for one copy.
type CopyPlan struct {
	Action Action
	// Outcome is what sync reports; Shows what status reports.
	Outcome Outcome
	Shows   Outcome
	// Want is what a write puts there.
	Want []byte
	// Info describes the copy's own login when it holds a valid one.
	Info    credential.Info
	Problem string
	// Refused says why the copy's newer login is not taken back (another
	// account, implausible, too many take-backs); empty otherwise.
	Refused string
	// Again is set when a decision under the store's lock found the copy
	// changed since the plan: the caller passes again.
	Again bool
	// Tidy is set when a copy that is kept needs its mode or owner made
	// right (no rewrite).
	Tidy bool
}

// Hash names content exactly (the full sha256, hex): what the broker
// remembers of a store, never shown to people.
func Hash(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

type planner struct {
	in  PlanInput
	now time.Time
	res PlanResult
	// host is what the host store holds when valid.
	hostInfo credential.Info
	hostErr  error
	// refused holds, per copy, why its newer login is not taken back.
	refused []string
	infos   []inspected
	// wants caches Kind.ForCopy of wantsFrom per copy options: every copy
	// of a pass wants the same few bytes, worked out once.
	wants     map[credential.CopyOptions]wanted
	wantsFrom []byte
	// host is the host's login inspected once, when it was read.
	host *inspected
}

type wanted struct {
	data []byte
	err  error
}

// forCopy is Kind.ForCopy(data, o), worked out once per plan.
func (p *planner) forCopy(data []byte, o credential.CopyOptions) ([]byte, error) {
	if p.wants == nil || !sameBytes(p.wantsFrom, data) {
		p.wants, p.wantsFrom = map[credential.CopyOptions]wanted{}, data
	}
	w, ok := p.wants[o]
	if !ok {
		w.data, w.err = p.in.Kind.ForCopy(data, o)
		p.wants[o] = w
	}
	return w.data, w.err
}

// sameBytes reports whether a and b are the same slice (not just equal).
func sameBytes(a, b []byte) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

type inspected struct {
	info credential.Info
	err  error
}

func (p *planner) plan() PlanResult {
	in := p.in
	p.res.Copies = make([]CopyPlan, len(in.Copies))
	p.refused = make([]string, len(in.Copies))
	p.infos = make([]inspected, len(in.Copies))
	if in.Host.Err == nil && in.Host.Exists {
		info, err := in.Kind.Inspect(in.Host.Data)
		p.host = &inspected{info, err}
	}
	for i, c := range in.Copies {
		if c.Unseen || c.Seen.Err != nil || !c.Seen.Exists {
			continue
		}
		if p.host != nil && p.host.err == nil {
			// A copy that holds exactly what the host's login makes
			// for it (the usual case) carries the host's login: it is
			// not parsed again.
			if want, err := p.forCopy(in.Host.Data, c.Options); err == nil && bytes.Equal(c.Seen.Data, want) {
				p.infos[i] = *p.host
				continue
			}
		}
		info, err := in.Kind.Inspect(c.Seen.Data)
		p.infos[i] = inspected{info, err}
	}
	hasLogin := p.planHost()
	for i := range in.Copies {
		switch {
		case !in.Revoked.IsZero():
			p.res.Copies[i] = p.revokedCopy(i)
		case hasLogin:
			p.res.Copies[i] = p.planCopy(i, in.Copies[i].Seen, p.refused[i], false)
		default:
			p.res.Copies[i] = p.withoutLogin(i)
		}
	}
	for i, c := range p.res.Copies {
		if c.Action == Wait {
			p.wait(in.Copies[i].Key)
		}
	}
	return p.res
}

// wait asks for another look once the store has had its patience.
func (p *planner) wait(key string) {
	left := p.in.Rules.Patience
	if m := p.in.Memory.store(key); m != nil && !m.PartialSince.IsZero() {
		left -= p.now.Sub(m.PartialSince)
	}
	left = max(left, time.Millisecond)
	if p.res.Wait == 0 || left < p.res.Wait {
		p.res.Wait = left
	}
}

// patient reports whether content in the store keyed key that looks
// half-written is still given time.
func (p *planner) patient(key string) bool {
	if p.in.Rules.Patience <= 0 {
		return false
	}
	m := p.in.Memory.store(key)
	return m == nil || m.PartialSince.IsZero() || p.now.Sub(m.PartialSince) < p.in.Rules.Patience
}

// HostKey names the host's store in Memory.
const HostKey = "\x00host"

// planHost decides the host's side and the login to fan out; it reports
// whether there is one.
func (p *planner) planHost() bool {
	in, h := p.in, &p.res.Host
	h.From = -1
	switch {
	case in.Host.Err != nil:
		h.Action, h.State, h.Err, h.Problem = Skip, SourceUnreadable, in.Host.Err, in.Host.Err.Error()
		return false
	case !in.Host.Exists:
		h.Action, h.State, h.Problem = Skip, SourceNotLoggedIn, in.Host.Why
		if h.Problem == "" {
			h.Problem = "no login here"
		}
		return false
	}
	info, err := p.host.info, p.host.err
	switch {
	case credential.IsPartial(err) && p.patient(HostKey):
		h.Action, h.State, h.Problem = Wait, SourceBroken, err.Error()
		p.wait(HostKey)
		return false
	case errors.Is(err, credential.ErrNotLoggedIn):
		h.Action, h.State, h.Problem = Skip, SourceNotLoggedIn, err.Error()
		return false
	case err != nil:
		h.State, h.Problem, h.Err = SourceBroken, err.Error(), err
		if credential.IsForeign(err) {
			h.Action = Skip
			return false
		}
		return p.rescue()
	}
	h.State, h.Info, p.hostInfo = SourceValid, info, info
	p.res.Login = &Login{Data: in.Host.Data, Info: info, From: -1}
	h.Action = Keep
	if !in.Revoked.IsZero() {
		return true // nothing is taken back from revoked copies
	}
	if best := p.bestCandidate(info.Identity, info.Freshness); best >= 0 {
		p.takeBack(best, false)
	}
	return true
}

// rescue takes a copy's login into a broken host store, when one is newer
// than the last valid login the host had: the copies that still hold that
// login would only bring back a spent refresh token.
func (p *planner) rescue() bool {
	h := &p.res.Host
	h.Action = Skip
	last := p.in.Memory.lastValid()
	if last == nil || !p.in.Revoked.IsZero() {
		return false
	}
	best := p.bestCandidate(last.Identity, last.Freshness)
	if best < 0 {
		return false
	}
	return p.takeBack(best, true)
}

// bestCandidate is the copy with the newest trusted login of identity
// newer than than, or -1. Copies that hold a newer login but are not
// trusted get the reason in p.refused.
func (p *planner) bestCandidate(identity string, than credential.Freshness) int {
	best := -1
	for i, c := range p.in.Copies {
		in := p.infos[i]
		if c.Unseen || in.err != nil || !c.Seen.Exists || !in.info.Freshness.Newer(than) {
			continue
		}
		if why := p.distrust(i, c, in.info, identity); why != "" {
			p.refused[i] = why
			continue
		}
		if best < 0 || in.info.Freshness.Newer(p.infos[best].info.Freshness) {
			best = i
		}
	}
	return best
}

// distrust says why the newer login in copy i must not be taken back, or
// "" when it may.
func (p *planner) distrust(i int, c PlanCopy, info credential.Info, identity string) string {
	in := p.in
	facts := in.Kind.Facts()
	m := in.Memory.store(c.Key)
	switch {
	case in.Rules.NoTakeBack, in.Rules.HostWins:
		return ""
	case info.Identity != identity:
		return "it holds a login of another account"
	case m.gave(c.Seen.Data):
		// Exactly what the broker gave it: the host's own login of before,
		// not something a container wrote.
		return ""
	case len(c.Seen.Data) > credential.MaxTakeBack:
		return fmt.Sprintf("it is %d bytes, more than a login ever is (%d)", len(c.Seen.Data), credential.MaxTakeBack)
	case facts.MaxLifetime > 0 && info.Expiry.After(p.now.Add(facts.MaxLifetime)):
		return fmt.Sprintf("its login claims to expire at %s, further ahead than %s ever issues (%s)", info.Expiry.UTC().Format(time.RFC3339), in.Kind.Name(), facts.MaxLifetime)
	case !info.RefreshExpiry.IsZero() && info.RefreshExpiry.After(p.now.Add(maxRefreshLifetime)):
		return "its refresh token claims to live longer than any does"
	case !info.Issued.IsZero() && info.Issued.After(p.now.Add(clockSkew)):
		return "its login claims to have been refreshed in the future"
	}
	if m != nil && m.DistrustedUntil.After(p.now) {
		return "it gave too many logins lately (" + m.Distrust + "); not taken from until " + m.DistrustedUntil.UTC().Format(time.RFC3339)
	}
	if n := m.recentTakeBacks(p.now); n >= in.Rules.maxTakeBacks() {
		return fmt.Sprintf("it gave %d logins in the last hour; a CLI refreshes every few hours", n)
	}
	return ""
}

// maxRefreshLifetime bounds a refresh token's own claimed life (Claude's
// are about 18 days); clockSkew what "refreshed in the future" allows.
const (
	maxRefreshLifetime = 90 * 24 * time.Hour
	clockSkew          = 10 * time.Minute
)

// takeBack makes copy i's login the one everywhere.
func (p *planner) takeBack(i int, rescue bool) bool {
	h := &p.res.Host
	if !p.in.HostWritable || p.in.Rules.NoTakeBack || p.in.Rules.HostWins {
		// Cannot take it back: the copy keeps it (kept-newer), the others
		// get the host's login.
		return p.res.Login != nil
	}
	data, err := p.in.Kind.TakeBack(hostBytesOrNil(p.in.Host), p.in.Copies[i].Seen.Data)
	var info credential.Info
	if err == nil {
		info, err = p.in.Kind.Inspect(data)
	}
	if err != nil {
		p.refused[i] = "taking it back gives no valid login: " + err.Error()
		return p.res.Login != nil
	}
	h.Action, h.From, h.Data, h.Rescue = TakeBack, i, data, rescue
	p.res.Login = &Login{Data: data, Info: info, From: i}
	return true
}

func hostBytesOrNil(s Seen) []byte {
	if !s.Exists || s.Err != nil {
		return nil
	}
	return s.Data
}

// withoutLogin is a copy's plan when there is no login to give: it is left
// as it is, and status shows what it holds.
func (p *planner) withoutLogin(i int) CopyPlan {
	c, in := p.in.Copies[i], p.infos[i]
	cp := CopyPlan{Action: Skip, Outcome: Skipped}
	switch {
	case c.Unseen:
		cp.Action, cp.Outcome, cp.Shows = Unknown, NotSeen, NotSeen
	case c.Seen.Err != nil:
		cp.Action, cp.Outcome, cp.Shows, cp.Problem = Fail, Failed, Failed, c.Seen.Err.Error()
	case !c.Seen.Exists:
		cp.Shows = Missing
	case in.err != nil:
		cp.Shows, cp.Problem = Broken, in.err.Error()
	default:
		cp.Shows, cp.Info = Present, in.info
	}
	if p.res.Host.Action == Wait && cp.Action == Skip {
		// The host is being written: nothing is decided until it is done.
		cp.Action, cp.Outcome = Wait, Waiting
	}
	return cp
}

// DecideCopy is the plan for one copy given what it holds now, for the
// decision a sink makes under its locks just before writing: a container
// that wrote a newer login between the plan and the write is then never
// overwritten. plan is the copy's plan from the same PlanResult.
func (r PlanResult) DecideCopy(in PlanInput, i int, current Seen) CopyPlan {
	p := planner{in: in, now: in.Now, res: r}
	p.hostInfo = r.Host.Info
	p.refused = make([]string, len(in.Copies))
	p.refused[i] = r.Copies[i].Refused
	p.infos = make([]inspected, len(in.Copies))
	if r.Login != nil && r.Copies[i].Want != nil {
		// What the copy wants was worked out by the plan.
		p.wants = map[credential.CopyOptions]wanted{in.Copies[i].Options: {data: r.Copies[i].Want}}
		p.wantsFrom = r.Login.Data
	}
	if current.Err == nil && current.Exists {
		info, err := in.Kind.Inspect(current.Data)
		p.infos[i] = inspected{info, err}
	}
	switch {
	case !in.Revoked.IsZero():
		return p.revokedCopy(i)
	case r.Login == nil:
		return p.withoutLogin(i)
	}
	return p.planCopy(i, current, p.refused[i], true)
}

// revokedCopy is a copy's plan while its login's copies are revoked:
// nothing is written there. A login found there was written since the
// revoke (by a container, or a CLI logged in inside it).
func (p *planner) revokedCopy(i int) CopyPlan {
	c, in := p.in.Copies[i], p.infos[i]
	cp := CopyPlan{Action: Skip, Outcome: Revoked, Shows: Revoked}
	switch {
	case c.Unseen:
		cp.Action, cp.Outcome, cp.Shows = Unknown, NotSeen, NotSeen
	case c.Seen.Err != nil:
		cp.Problem = c.Seen.Err.Error()
	case c.Seen.Exists && in.err == nil:
		cp.Info = in.info
		cp.Problem = "holds a login written since the revoke; left as it is (mc-broker revoke erases it)"
	}
	return cp
}

// planCopy decides copy i, holding s, given the login to fan out. locked is
// set for the decision under the copy's locks.
func (p *planner) planCopy(i int, s Seen, refused string, locked bool) CopyPlan {
	c, in, login := p.in.Copies[i], p.infos[i], p.res.Login
	if c.Unseen && !locked {
		return CopyPlan{Action: Unknown, Outcome: NotSeen, Shows: NotSeen}
	}
	want, err := p.forCopy(login.Data, c.Options)
	if err != nil {
		return CopyPlan{Action: Fail, Outcome: Failed, Shows: Failed, Problem: "cannot make the copy: " + err.Error()}
	}
	cp := CopyPlan{Want: want, Refused: refused}
	ours := s.Exists && p.in.Memory.store(c.Key).gave(s.Data)
	switch {
	case s.Err != nil:
		cp.Action, cp.Outcome, cp.Shows, cp.Problem = Fail, Failed, Failed, s.Err.Error()
	case !s.Exists:
		cp.Action, cp.Outcome, cp.Shows = Write, Created, Missing
	case i == login.From && !locked:
		// The copy the login is taken back from already holds it.
		cp.Action, cp.Outcome, cp.Shows, cp.Info = Keep, TakenBack, Newer, in.info
	case bytes.Equal(s.Data, want):
		cp.Action, cp.Outcome, cp.Shows, cp.Info, cp.Tidy = Keep, Unchanged, InSync, login.Info, s.Untidy
	case in.err != nil && credential.IsPartial(in.err) && !ours && p.patient(c.Key):
		cp.Action, cp.Outcome, cp.Shows, cp.Problem = Wait, Waiting, Broken, in.err.Error()
	case in.err != nil && credential.IsForeign(in.err) && !ours && !p.in.Rules.Force:
		cp.Action, cp.Outcome, cp.Shows = Refuse, Refused, Foreign
		cp.Problem = in.err.Error() + "; left as it is (not a " + p.in.Kind.Name() + " login that mc-broker wrote): point the copy elsewhere, or remove the file"
	case in.err != nil:
		cp.Action, cp.Outcome, cp.Shows, cp.Problem = Write, Repaired, Broken, in.err.Error()
	default:
		cp.Info = in.info
		p.planValidCopy(&cp, in.info, ours, locked)
	}
	return cp
}

// planValidCopy decides a copy that holds a valid login.
func (p *planner) planValidCopy(cp *CopyPlan, info credential.Info, ours, locked bool) {
	login := p.res.Login
	if p.in.Rules.HostWins && (info.Identity != login.Info.Identity || info.Freshness.Newer(login.Info.Freshness)) {
		cp.Action, cp.Outcome, cp.Shows, cp.Refused = Write, Updated, Newer, ""
		cp.Problem = "replaced by the restored login"
		return
	}
	if info.Identity != login.Info.Identity {
		if ours || p.in.Rules.Force {
			// Ours to replace: the host's account changed since.
			cp.Action, cp.Outcome, cp.Shows, cp.Refused = Write, Updated, OtherAccount, ""
			return
		}
		cp.Action, cp.Outcome, cp.Shows = Refuse, OtherAccount, OtherAccount
		cp.Problem = "holds a login of another account, which mc-broker did not put there; left as it is (sync --force replaces it)"
		return
	}
	c, ordered := info.Freshness.Compare(login.Info.Freshness)
	switch {
	case ordered && c > 0 && cp.Refused != "":
		// Not a login the host takes: the copy is given the host's.
		cp.Action, cp.Outcome, cp.Shows = Write, Repaired, Newer
		cp.Problem = "not taken back: " + cp.Refused
	case ordered && c > 0 && locked:
		// Written into the copy since the plan: decide again with it.
		cp.Action, cp.Outcome, cp.Shows, cp.Again = Keep, KeptNewer, Newer, true
	case ordered && c > 0:
		cp.Action, cp.Outcome, cp.Shows = Keep, KeptNewer, Newer
	case ordered && c < 0:
		cp.Action, cp.Outcome, cp.Shows = Write, Updated, Older
	default:
		cp.Action, cp.Outcome, cp.Shows = Write, Updated, Differs
	}
}
