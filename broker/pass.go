package broker

import (
	"context"
	"errors"
	"io/fs"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mc-broker/mc-broker/broker/credential"
)

// Pass is one pass over one login: read the host's store once and each copy
// once, Plan, carry the plan out, and remember what each store now holds.
// sync and status run one Pass per source; watch runs one per change, with
// a Dispatcher that gives every store a worker of its own.
type Pass struct {
	Source Source
	Copies []Copy
	// Memory is read by the plan and updated as results come in; nil
	// remembers nothing.
	Memory *Memory
	Rules  Rules
	Now    func() time.Time
	// Backups keeps the host's login before a take-back replaces it; a
	// take-back is declined without it.
	Backups *Backups
	// Seen holds copies already read for this pass (watch: a file event's
	// own read, a slow store's last report), by index; they are not read
	// again. Unseen marks copies not to read at all (slow stores that have
	// not reported yet).
	Seen   map[int]Seen
	Unseen map[int]bool
	// Parallel caps how many copies are read or written at once by the
	// default dispatcher (default 16).
	Parallel int
	// Revocations says whether the login's copies are revoked; asked at
	// each read and again under each copy's lock before a write. nil:
	// never revoked.
	Revocations *Revocations

	// wroteHost is the Hash of what the last take-back wrote into the
	// host's store. The next take-back may run before the memory has the
	// result (watch records it on another goroutine): its backup must still
	// go on the taken shelf, or a container giving logins quickly would
	// push the user's own off the host shelf.
	wroteHost atomic.Pointer[string]
}

// Dispatcher runs the writes a plan asks for. The default one runs them
// all at once and waits; watch's runs each store's on its own worker, so
// that no store waits on another.
type Dispatcher interface {
	Host(job func(context.Context) HostResult)
	Copy(i int, job func(context.Context) CopyResult)
}

// HostResult is what a take-back into the host's store did.
type HostResult struct {
	// Wrote is set when the host now holds Data.
	Wrote bool
	Data  []byte
	Info  credential.Info
	From  int
	// FromOurs is set when the copy held exactly what the broker had given
	// it (a login it had fanned out): taking that back is not the copy
	// giving a new login.
	FromOurs bool
	// Backup is where the previous login was kept.
	Backup string
	// Declined says why nothing was written although nothing failed (the
	// host changed since the plan: pass again).
	Declined string
	Err      error
}

// CopyResult is what a write to one copy did.
type CopyResult struct {
	Index int
	// Plan is the decision made under the copy's locks.
	Plan CopyPlan
	// Holds is what the copy holds after the write, when known to agree
	// with the login given; Info describes that login.
	Holds []byte
	// Current is what the copy holds once decided under its locks (after
	// the write, when written); nil when the update failed before that. A
	// watcher that keeps a slow store's last read takes it as a fresh one.
	Current    *Seen
	Info       credential.Info
	Companions []string
	Err        error
}

func (p *Pass) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

// Read reads the host's store and every copy not already seen, and returns
// the plan's input.
func (p *Pass) Read(ctx context.Context) PlanInput {
	in := PlanInput{
		Kind:   p.Source.Kind(),
		Rules:  p.Rules,
		Memory: p.Memory,
		Copies: make([]PlanCopy, len(p.Copies)),
	}
	_, in.HostWritable = p.Source.(WritableSource)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		in.Host = readSource(ctx, p.Source)
	}()
	sem := make(chan struct{}, p.parallel())
	for i, c := range p.Copies {
		in.Copies[i] = PlanCopy{Key: c.Sink.Location(), Options: c.Options}
		if s, ok := p.Seen[i]; ok {
			in.Copies[i].Seen = s
			continue
		}
		if p.Unseen[i] {
			in.Copies[i].Unseen = true
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			in.Copies[i].Seen = ReadCopy(ctx, c.Sink)
		}()
	}
	wg.Wait()
	in.Now = p.now()
	in.Revoked = p.Revocations.At(p.Source.Name())
	return in
}

func (p *Pass) parallel() int {
	if p.Parallel > 0 {
		return p.Parallel
	}
	return 16
}

// readSource reads the host's store: a store with no login is not there.
func readSource(ctx context.Context, s Source) Seen {
	data, err := s.Read(ctx)
	switch {
	case errors.Is(err, credential.ErrNotLoggedIn):
		return Seen{Why: err.Error()}
	case err != nil:
		return Seen{Err: err}
	}
	return Seen{Exists: true, Data: data}
}

// ReadCopy reads one copy for a plan.
func ReadCopy(ctx context.Context, s Sink) Seen {
	if t, ok := s.(TidyReader); ok {
		data, untidy, err := t.ReadTidy(ctx)
		seen := seenOf(data, err)
		seen.Untidy = untidy && seen.Exists
		return seen
	}
	return seenOf(s.Read(ctx))
}

func seenOf(data []byte, err error) Seen {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return Seen{}
	case err != nil:
		return Seen{Err: err}
	}
	return Seen{Exists: true, Data: data}
}

// Remember updates the memory with what the plan saw: the host's last
// valid login and which stores look half-written.
func (p *Pass) Remember(in PlanInput, plan PlanResult) {
	m := p.Memory
	if m == nil {
		return
	}
	if plan.Host.State == SourceValid {
		m.Remember(plan.Host.Info)
	}
	m.Store(HostKey).Partial(plan.Host.Action == Wait, in.Now)
	for i, c := range plan.Copies {
		if c.Action == Unknown {
			continue
		}
		s := m.Store(in.Copies[i].Key)
		s.Partial(c.Action == Wait, in.Now)
		if c.Action == Keep && c.Outcome == Unchanged {
			s.Given = Hash(in.Copies[i].Seen.Data)
		}
	}
}

// Apply carries a plan out through d: the take-back into the host's store
// and each copy's write run as separate jobs, so that the copies get a
// container's refresh whether or not the host's store can take it.
//
// A login taken from a copy counts against the copy's hourly limit here,
// when it is sent everywhere, not when the host's store has taken it: the
// next pass may come first (watch), and the other copies have the login
// either way. It counts once, for the copy it came from: a pass that sees
// it in a copy it was sent to before that write is recorded does not
// count it again. Apply returns the copy that has now reached the limit,
// or "".
func (p *Pass) Apply(in PlanInput, plan PlanResult, d Dispatcher) (distrusted string) {
	if plan.Login != nil && plan.Login.From >= 0 && p.Memory != nil {
		from := in.Copies[plan.Login.From]
		host := p.Memory.Store(HostKey)
		if fp := plan.Login.Info.Fingerprint; host.Counted != fp && !p.Memory.store(from.Key).gave(from.Seen.Data) {
			host.Counted = fp
			if p.Memory.Store(from.Key).TookBack(in.Now, p.Rules.maxTakeBacks()) {
				distrusted = from.Key
			}
		}
	}
	// The jobs decide on other goroutines while the memory goes on being
	// updated: they get a snapshot.
	in.Memory = in.Memory.Clone()
	if plan.Host.Action == TakeBack {
		d.Host(func(ctx context.Context) HostResult { return p.takeBack(ctx, in, plan) })
	}
	for i, c := range plan.Copies {
		if c.Action != Write && !c.Tidy {
			continue
		}
		d.Copy(i, func(ctx context.Context) CopyResult { return p.writeCopy(ctx, in, plan, i) })
	}
	return distrusted
}

// RecordHost updates the memory with a take-back's result (Apply counted
// it against the copy's limit).
func (p *Pass) RecordHost(r HostResult) {
	if p.Memory == nil || !r.Wrote {
		return
	}
	p.Memory.Store(HostKey).Given = Hash(r.Data)
	p.Memory.Remember(r.Info)
}

// RecordCopy updates the memory with a copy write's result.
func (p *Pass) RecordCopy(r CopyResult) {
	if p.Memory == nil || r.Holds == nil {
		return
	}
	p.Memory.Store(p.Copies[r.Index].Sink.Location()).Given = Hash(r.Holds)
}

// takeBack writes the plan's login into the host's store, provided the
// store still holds what the plan saw; the previous login is kept first.
func (p *Pass) takeBack(ctx context.Context, in PlanInput, plan PlanResult) HostResult {
	res := HostResult{From: plan.Host.From, Data: plan.Host.Data, Info: plan.Login.Info}
	from := in.Copies[plan.Host.From]
	res.FromOurs = in.Memory.store(from.Key).gave(from.Seen.Data)
	ws, ok := p.Source.(WritableSource)
	if !ok {
		res.Err = errors.New("this store cannot take a login back")
		return res
	}
	if p.Backups == nil {
		res.Err = errors.New("no backup directory: a take-back is never written without keeping the host's login first")
		return res
	}
	planned := hostBytesOrNil(in.Host)
	err := ws.Update(ctx, func(current []byte, exists bool) ([]byte, bool) {
		if !exists {
			current = nil
		}
		if !bytesEqual(current, planned) {
			res.Declined = "the host's login changed since it was read"
			return nil, false
		}
		if current != nil {
			info, _ := in.Kind.Inspect(current)
			genuine := !in.Memory.store(HostKey).gave(current)
			if last := p.wroteHost.Load(); last != nil && *last == Hash(current) {
				genuine = false
			}
			path, err := p.Backups.Keep(p.Source.Name(), current, info, genuine, in.Now)
			if err != nil {
				res.Declined = ""
				res.Err = errors.New("cannot keep a backup of the host's login: " + err.Error())
				return nil, false
			}
			res.Backup = path
		}
		return plan.Host.Data, true
	})
	switch {
	case err != nil:
		res.Err = err
	case res.Err == nil && res.Declined == "":
		res.Wrote = true
		h := Hash(plan.Host.Data)
		p.wroteHost.Store(&h)
	}
	return res
}

func bytesEqual(a, b []byte) bool {
	return len(a) == len(b) && string(a) == string(b)
}

// writeCopy writes copy i, deciding again under the copy's locks with
// what it holds then.
func (p *Pass) writeCopy(ctx context.Context, in PlanInput, plan PlanResult, i int) CopyResult {
	c := p.Copies[i]
	res := CopyResult{Index: i, Plan: plan.Copies[i]}
	err := c.Sink.Update(ctx, func(current []byte, exists bool) ([]byte, bool) {
		if in.Revoked.IsZero() {
			// A revoke made since the read: it erases this copy once
			// this lock is free, and nothing must be written before.
			in.Revoked = p.Revocations.At(p.Source.Name())
		}
		res.Plan = plan.DecideCopy(in, i, Seen{Exists: exists, Data: current})
		res.Current = &Seen{Exists: exists, Data: current}
		switch res.Plan.Action {
		case Write:
			res.Current = &Seen{Exists: true, Data: res.Plan.Want}
			return res.Plan.Want, true
		case Keep:
			if res.Plan.Outcome == Unchanged {
				res.Holds = current
			}
		}
		return nil, false
	})
	if err != nil {
		res.Err, res.Current = err, nil
		res.Plan.Action, res.Plan.Outcome = Fail, Failed
		res.Plan.Problem = err.Error()
		return res
	}
	if res.Plan.Action == Write {
		res.Holds = res.Plan.Want
	}
	if res.Holds != nil {
		res.Info = plan.Login.Info
	}
	if res.Holds != nil {
		res.Companions, res.Err = writeCompanions(ctx, c)
		if res.Err != nil {
			res.Plan.Action, res.Plan.Outcome = Fail, Failed
			res.Plan.Problem = res.Err.Error()
		}
	}
	return res
}

// writeCompanions adds the copy's missing companion files, in name order.
func writeCompanions(ctx context.Context, c Copy) ([]string, error) {
	cw, ok := c.Sink.(CompanionWriter)
	if !ok || len(c.Companions) == 0 {
		return nil, nil
	}
	names := make([]string, 0, len(c.Companions))
	for name := range c.Companions {
		names = append(names, name)
	}
	sort.Strings(names)
	var made []string
	for _, name := range names {
		written, err := cw.WriteIfAbsent(ctx, name, c.Companions[name])
		if err != nil {
			return made, errors.New("companion file " + name + ": " + err.Error())
		}
		if written {
			made = append(made, name)
		}
	}
	return made, nil
}

// waitAll is the default dispatcher: every job at once, bounded, and Wait
// collects the results.
type waitAll struct {
	ctx  context.Context
	sem  chan struct{}
	wg   sync.WaitGroup
	mu   sync.Mutex
	host *HostResult
	res  []CopyResult
}

func newWaitAll(ctx context.Context, parallel int) *waitAll {
	return &waitAll{ctx: ctx, sem: make(chan struct{}, parallel)}
}

func (w *waitAll) Host(job func(context.Context) HostResult) {
	w.wg.Go(func() {
		r := job(w.ctx)
		w.mu.Lock()
		w.host = &r
		w.mu.Unlock()
	})
}

func (w *waitAll) Copy(_ int, job func(context.Context) CopyResult) {
	w.wg.Go(func() {
		w.sem <- struct{}{}
		defer func() { <-w.sem }()
		r := job(w.ctx)
		w.mu.Lock()
		w.res = append(w.res, r)
		w.mu.Unlock()
	})
}

// Outcome of a one-shot pass.
type PassOptions struct {
	// DryRun and StatusOnly plan and report, and write nothing.
	DryRun, StatusOnly bool
	MinTTL             time.Duration
	// MinRefreshTTL flags a refresh token that ends sooner than this.
	MinRefreshTTL time.Duration
	Requested     bool
}

// settleStep is how often a one-shot pass looks again at content that
// looks half-written.
const settleStep = 50 * time.Millisecond

// Run is a whole one-shot pass (sync, status, a dry run): read, plan (and,
// while something looks half-written, read again until Rules.Patience has
// passed), write, remember, report.
func (p *Pass) Run(ctx context.Context, o PassOptions) SourceReport {
	var in PlanInput
	var plan PlanResult
	for {
		in = p.Read(ctx)
		plan = Plan(in)
		p.Remember(in, plan)
		if plan.Wait <= 0 || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(min(plan.Wait, settleStep)):
		}
	}
	defer EndPass(ctx, p.Copies)
	sr := p.Report(in, plan, o)
	if o.DryRun || o.StatusOnly {
		return sr
	}
	w := newWaitAll(ctx, p.parallel())
	if from := p.Apply(in, plan, w); from != "" {
		sr.Problem = joinProblem(sr.Problem, "the copy "+from+" gave too many logins lately: no more are taken from it for an hour")
	}
	w.wg.Wait()
	if w.host != nil {
		p.RecordHost(*w.host)
		ApplyHostResult(&sr, in, *w.host)
	}
	for _, r := range w.res {
		p.RecordCopy(r)
		ApplyCopyResult(&sr.Copies[r.Index], r)
	}
	return sr
}

func joinProblem(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

// ApplyHostResult puts a take-back's result into the source's report.
func ApplyHostResult(sr *SourceReport, in PlanInput, r HostResult) {
	switch {
	case r.Err != nil:
		sr.WriteBackProblem = r.Err.Error()
	case r.Declined != "":
		sr.WriteBackProblem = "not written back: " + r.Declined + "; the next pass decides again"
	default:
		sr.Backup = r.Backup
		sr.WriteBackProblem = ""
	}
}

// ApplyCopyResult puts a write's result into a copy's report.
func ApplyCopyResult(cr *CopyReport, r CopyResult) {
	cr.Outcome, cr.Problem = r.Plan.Outcome, wasProblem(r.Plan)
	cr.Refused = r.Plan.Refused
	cr.Companions = r.Companions
	cr.Fingerprint, cr.ExpiresAt = "", nil
	switch {
	case r.Plan.Action == Fail:
	case r.Holds != nil:
		describe(cr, r.Info)
	default:
		describe(cr, r.Plan.Info)
	}
}

// Report describes a plan: what sync did (before the writes' results are
// in, what it decided), or what status shows.
func (p *Pass) Report(in PlanInput, plan PlanResult, o PassOptions) SourceReport {
	kind := in.Kind
	sr := SourceReport{
		Name:      p.Source.Name(),
		Kind:      kind.Name(),
		Location:  p.Source.Location(),
		State:     plan.Host.State,
		Requested: o.Requested,
		Copies:    make([]CopyReport, len(plan.Copies)),
	}
	h := plan.Host
	switch h.State {
	case SourceNotLoggedIn:
		sr.Problem, sr.Hint = h.Problem, kind.Facts().LoginHint
	case SourceBroken:
		sr.Problem = h.Problem
		sr.Hint = "copies were left as they are; " + kind.Facts().LoginHint
		if h.Action == TakeBack {
			sr.Hint = "a copy holds a newer login of the same account: it replaces the broken one"
		}
	case SourceUnreadable:
		sr.Problem = h.Problem
		var hinter interface{ Hint() string }
		if errors.As(h.Err, &hinter) {
			sr.Hint = hinter.Hint()
		}
	}
	if plan.Login != nil {
		info := plan.Login.Info
		sr.Fingerprint = info.Fingerprint
		if !info.Expiry.IsZero() {
			exp := info.Expiry
			sr.ExpiresAt = &exp
			left := exp.Sub(in.Now)
			sr.ExpiresInSeconds = int64(left.Seconds())
			if o.MinTTL > 0 && left < o.MinTTL {
				sr.ExpiresSoon = true
				sr.Problem = joinProblem(sr.Problem, "expires sooner than --min-ttl "+o.MinTTL.String())
				sr.Hint = kind.Name() + " refreshes its login only shortly before it expires: lower --min-ttl, or log in again now (" + kind.Facts().LoginHint + ")"
			}
		}
		if !info.RefreshExpiry.IsZero() {
			re := info.RefreshExpiry
			sr.RefreshExpiresAt = &re
			left := re.Sub(in.Now)
			sr.RefreshExpiresInSeconds = int64(left.Seconds())
			if o.MinRefreshTTL > 0 && left < o.MinRefreshTTL {
				sr.RefreshExpiresSoon = true
				sr.Problem = joinProblem(sr.Problem, "the refresh token ends sooner than --min-refresh-ttl "+o.MinRefreshTTL.String()+" (at "+re.UTC().Format(time.RFC3339)+")")
				sr.Hint = "only a new login helps: mc-broker login " + sr.Name + " (it runs " + kind.Name() + "'s own login, then gives every copy the new login)"
			}
		}
		if h.Action == TakeBack {
			sr.TakenBackFrom = in.Copies[h.From].Key
		}
	}
	if !in.Revoked.IsZero() {
		at := in.Revoked
		sr.RevokedAt = &at
	}
	for i, c := range plan.Copies {
		cr := CopyReport{Location: in.Copies[i].Key, Outcome: c.Outcome, Problem: c.Problem, Refused: c.Refused}
		if o.StatusOnly {
			cr.Outcome = c.Shows
		} else {
			cr.Problem = wasProblem(c)
		}
		if c.Action == Write && !o.StatusOnly && plan.Login != nil {
			describe(&cr, plan.Login.Info)
		} else {
			describe(&cr, c.Info)
		}
		sr.Copies[i] = cr
	}
	return sr
}

// wasProblem is a copy's problem as sync reports it: what a repaired copy
// was.
func wasProblem(c CopyPlan) string {
	if c.Outcome == Repaired && c.Refused == "" && c.Problem != "" {
		return "was " + c.Problem
	}
	return c.Problem
}

func describe(cr *CopyReport, info credential.Info) {
	if info.Fingerprint == "" {
		return
	}
	cr.Fingerprint = info.Fingerprint
	if !info.Expiry.IsZero() {
		exp := info.Expiry
		cr.ExpiresAt = &exp
	}
}
