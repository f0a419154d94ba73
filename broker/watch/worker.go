package watch

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mc-broker/mc-broker/broker"
)

// sourceWorker owns one login: its memory, the last reads of its slow
// stores, and one storeWorker per store that can be written. Passes over
// one login never overlap, and one login's trouble (a slow Keychain, a
// failing copy) never delays another's.
type sourceWorker struct {
	w    *watcher
	name string
	pass *broker.Pass
	log  *slog.Logger

	// slow marks copies that are not files on this host (Docker volumes):
	// their reads and writes run on their own workers only, and a pass uses
	// what they last reported (slowSeen) instead of reading them.
	slow     []bool
	slowSeen map[int]broker.Seen

	host   *storeWorker
	copies []*storeWorker
	// inflight is, per copy, the Hash of what a dispatched write puts
	// there: a later pass that wants the same does not queue it again.
	inflight map[int]string
	// recheck marks copies a later pass wanted to write while that write
	// was in flight: it may have decided on what the copy held before the
	// pass, so the copy is looked at again once it is in.
	recheck map[int]bool
	// recheckDue is set when such a copy's write is in: one pass looks at
	// them all, once the other writes are in or after recheckWait, so
	// that a fan-out to many copies costs one more pass, not one per copy.
	recheckDue bool

	kick  chan struct{}
	polls chan struct{}
	// pushed carries the copies whose store said they changed
	// (broker.ChangeNotifier).
	pushed chan int
	// waiters are callbacks for the next pass's writes (guarded by mu:
	// the main goroutine adds them).
	mu      sync.Mutex
	waiters []func(time.Time)
	// events are the copy files whose events asked for the next pass;
	// other is set when anything else did.
	events map[string]bool
	other  bool
	// copyAt finds a copy file's index.
	copyAt  map[string]int
	results chan any
	// pending counts jobs dispatched and not reported yet; afterWrites
	// are called once it is back at zero.
	pending     int
	afterWrites []func()

	// Backoff and the retry timer; retryAt is when it fires (zero when
	// not armed), hostRetryAt when a failed write-back is tried again.
	attempt     int
	retry       *time.Timer
	retryAt     time.Time
	hostRetryAt time.Time
	// hostBusy is set while a write-back is queued or running.
	hostBusy bool
	// writeBackTold is the copy whose failing write-back was told (an
	// event), to forget once it works.
	writeBackTold string

	// What was last logged, to log changes only.
	sourceProblem string
	failing       map[string]string
	refused       map[string]string
	// warned is, per copy, the last refusal warned about: a container
	// that writes one bad login after another is warned about once an
	// hour, not once per login.
	warned         map[string]warning
	writeBackError string
	// loginChanged is when the login everywhere last changed (lock
	// mirroring asks whether a refresh brought one).
	loginChanged time.Time
	loginFP      string

	// tell tells the user what needs them (Options.OnEvent); revoked is
	// whether the copies were last seen revoked.
	tell    *teller
	revoked bool

	// firstDone is closed after the first pass that saw every store and
	// whose writes are all in.
	firstDone  chan struct{}
	firstAfter bool
	// snapshot is the memory for saving, published after each change.
	snapshot atomic.Pointer[broker.Memory]
}

// passRequest asks for a pass; done, when set, is called on the watcher's
// main goroutine once the pass's writes are all in. path, when set, is the
// copy file whose event asked for it.
type passRequest struct {
	done func(loginChangedAt time.Time)
	path string
}

// seenResult is a slow store's read.
type seenResult struct {
	index int
	seen  broker.Seen
}

type hostDone struct{ r broker.HostResult }
type copyDone struct{ r broker.CopyResult }

func newSourceWorker(w *watcher, src broker.Source, copies []broker.Copy, mem *broker.Memory) *sourceWorker {
	sw := &sourceWorker{
		w:    w,
		name: src.Name(),
		pass: &broker.Pass{
			Source: src, Copies: copies, Memory: mem, Now: w.o.Now,
			Rules:   w.b.Rules,
			Backups: w.backups(),
			// A revoke (another process) is seen at the next pass, and
			// under each copy's lock before any write.
			Revocations: w.b.Revocations(),
		},
		log:       w.log.With("source", src.Name()),
		slow:      make([]bool, len(copies)),
		slowSeen:  map[int]broker.Seen{},
		inflight:  map[int]string{},
		recheck:   map[int]bool{},
		polls:     make(chan struct{}, 1),
		pushed:    make(chan int, 16),
		kick:      make(chan struct{}, 1),
		results:   make(chan any, 64),
		failing:   map[string]string{},
		events:    map[string]bool{},
		copyAt:    map[string]int{},
		refused:   map[string]string{},
		warned:    map[string]warning{},
		firstDone: make(chan struct{}),
	}
	sw.pass.Rules.Patience = partialPatience
	sw.tell = newTeller(sw)
	sw.host = newStoreWorker(sw, "host")
	for i, c := range copies {
		f, isFile := c.Sink.(broker.WatchedFiles)
		sw.slow[i] = !isFile
		if isFile {
			for _, p := range f.WatchedFiles() {
				sw.copyAt[filepath.Clean(p)] = i
			}
		}
		cw := newStoreWorker(sw, c.Sink.Location())
		if isFile {
			// Files on this host share a bound: a fan-out to hundreds of
			// copies does not start hundreds of fsyncs at once. Stores
			// with their own deadlines (an engine) are not held to it, so
			// one that hangs takes no place from the files.
			cw.slots = w.fileSlots
		}
		sw.copies = append(sw.copies, cw)
	}
	return sw
}

// partialPatience is how long a store may look half-written before a pass
// judges it: Gemini CLI writes its file in place, and a watcher sees it
// truncated for a moment; that is normal and not logged.
const partialPatience = 2 * time.Second

// recheckWait bounds how long the pass that looks again at copies whose
// write was in flight waits for the rest of a fan-out's writes.
const recheckWait = 25 * time.Millisecond

// run is the worker's goroutine.
func (sw *sourceWorker) run(ctx context.Context) {
	sw.retry = time.NewTimer(time.Hour)
	sw.retry.Stop()
	defer sw.retry.Stop()
	for i, slow := range sw.slow {
		n, pushes := sw.pass.Copies[i].Sink.(broker.ChangeNotifier)
		switch {
		case pushes:
			// Its first signal comes when watching starts: that reads it.
			sw.follow(ctx, i, n)
		case slow:
			sw.readSlow(i)
		}
	}
	sw.runPass(nil)
	for {
		select {
		case <-ctx.Done():
			return
		case <-sw.kick:
			// Requests that piled up while a pass ran need one pass.
			sw.mu.Lock()
			waiters, events, other := sw.waiters, sw.events, sw.other
			sw.waiters, sw.events, sw.other = nil, map[string]bool{}, false
			sw.mu.Unlock()
			if len(waiters) == 0 && !other && (len(events) == 0 || sw.onlyEchoes(events)) {
				// Nothing left (an earlier pass took the requests that
				// kicked), or only the broker's own writes coming back.
				continue
			}
			sw.runPass(waiters)
		case <-sw.retry.C:
			sw.retryAt = time.Time{}
			// A slow store whose read failed is read again first.
			for i, seen := range sw.slowSeen {
				if seen.Err != nil {
					sw.readSlow(i)
				}
			}
			sw.runPass(nil)
		case <-sw.polls:
			sw.poll()
		case i := <-sw.pushed:
			sw.readSlow(i)
		case r := <-sw.results:
			sw.record(r)
		}
	}
}

// request asks for a pass without blocking the caller.
func (sw *sourceWorker) request(req passRequest) {
	sw.mu.Lock()
	if req.done != nil {
		sw.waiters = append(sw.waiters, req.done)
	}
	if req.path != "" {
		sw.events[req.path] = true
	} else {
		sw.other = true
	}
	sw.mu.Unlock()
	select {
	case sw.kick <- struct{}{}:
	default: // a pass is queued already
	}
}

// onlyEchoes reports whether every event was on a copy file that holds
// exactly what this worker wrote or is writing there: the broker's own
// writes coming back, which need no pass. A fan-out to many copies raises
// an event in each; without this, each would cost a pass reading them all.
func (sw *sourceWorker) onlyEchoes(events map[string]bool) bool {
	if len(events) == 0 {
		return false
	}
	for p := range events {
		i, ok := sw.copyAt[p]
		if !ok {
			return false // the host's file
		}
		seen := broker.ReadCopy(sw.w.work, sw.pass.Copies[i].Sink)
		if !seen.Exists || seen.Err != nil || seen.Untidy {
			return false
		}
		h := broker.Hash(seen.Data)
		if h != sw.inflight[i] && !sw.pass.Memory.Gave(sw.pass.Copies[i].Sink.Location(), seen.Data) {
			return false
		}
	}
	return true
}

// readSlow asks a slow store's worker for a fresh read.
func (sw *sourceWorker) readSlow(i int) {
	c := sw.pass.Copies[i]
	sw.submitKind(sw.copies[i], jobRead, func(ctx context.Context) any {
		defer broker.EndPass(ctx, []broker.Copy{c})
		return seenResult{index: i, seen: broker.ReadCopy(ctx, c.Sink)}
	})
}

// runPass reads, plans and dispatches the writes; waiters are called once
// they are all in.
func (sw *sourceWorker) runPass(waiters []func(time.Time)) {
	p := sw.pass
	sw.recheckDue = false
	p.Seen, p.Unseen = map[int]broker.Seen{}, map[int]bool{}
	for i, slow := range sw.slow {
		if !slow {
			continue
		}
		if s, ok := sw.slowSeen[i]; ok {
			p.Seen[i] = s
		} else {
			p.Unseen[i] = true
		}
	}
	in := p.Read(sw.w.work)
	plan := broker.Plan(in)
	seenValid := p.Memory != nil && p.Memory.LastValid != nil
	p.Remember(in, plan)
	sr := p.Report(in, plan, broker.PassOptions{})
	sw.w.state.update(sr, in.Now)
	sw.logSource(sr, plan)
	sw.logPlan(in, plan)
	sw.tell.pass(sr, plan, seenValid)
	if plan.Login != nil && plan.Login.Info.Fingerprint != sw.loginFP {
		sw.loginFP, sw.loginChanged = plan.Login.Info.Fingerprint, in.Now
	}

	retry := time.Duration(0)
	if plan.Wait > 0 {
		retry = min(plan.Wait, max(2*sw.w.o.Quiet, time.Millisecond))
	}
	if sr.State == broker.SourceUnreadable || sw.logReadFailures(in, plan) {
		sw.attempt++
		retry = sw.w.backoff(sw.attempt)
	}
	if retry > 0 {
		sw.retryIn(retry)
	}
	switch {
	case plan.Host.Action == broker.TakeBack && time.Now().Before(sw.hostRetryAt):
		// The last write-back failed: it is tried again with backoff, not
		// at every pass (a container touching its copy would drive it).
		// The copies get the login all the same.
		plan.Host.Action = broker.Keep
		sw.retryIn(time.Until(sw.hostRetryAt))
	case plan.Host.Action != broker.TakeBack && plan.Host.State == broker.SourceValid && sw.writeBackError != "" && !sw.hostBusy:
		// The host holds a login as new as any copy's (the user logged
		// in): nothing is left to write back.
		sw.log.Info("nothing left to write back into the host's store", "store", p.Source.Location())
		sw.writeBackCleared(in.Now)
	}

	sw.publish()
	for i, c := range plan.Copies {
		if c.Action != broker.Write {
			continue
		}
		h := broker.Hash(c.Want)
		if sw.inflight[i] == h {
			// The same write is queued or running already.
			plan.Copies[i].Action = broker.Keep
			sw.recheck[i] = true
			continue
		}
		sw.inflight[i] = h
	}
	if from := p.Apply(in, plan, dispatcher{sw}); from != "" {
		sw.log.Warn("a copy gave too many new logins within an hour: no more are taken from it for an hour; it keeps getting the host's login",
			"copy", from, "limit", p.Rules.MaxTakeBacks)
	}
	for _, done := range waiters {
		sw.afterWrites = append(sw.afterWrites, func() {
			changed := sw.loginChanged
			sw.w.onMain(func() { done(changed) })
		})
	}
	sw.maybeDone()
}

// maybeDone runs the callbacks waiting for writes once none are pending,
// and marks the first full pass.
func (sw *sourceWorker) maybeDone() {
	if sw.pending > 0 {
		return
	}
	for _, f := range sw.afterWrites {
		f()
	}
	sw.afterWrites = nil
	if !sw.firstAfter && len(sw.pass.Unseen) == 0 {
		sw.firstAfter = true
		close(sw.firstDone)
	}
}

// dispatcher hands a plan's writes to the stores' workers.
type dispatcher struct{ sw *sourceWorker }

func (d dispatcher) Host(job func(context.Context) broker.HostResult) {
	d.sw.hostBusy = true
	d.sw.submit(d.sw.host, func(ctx context.Context) any { return hostDone{job(ctx)} })
}

func (d dispatcher) Copy(i int, job func(context.Context) broker.CopyResult) {
	d.sw.submit(d.sw.copies[i], func(ctx context.Context) any { return copyDone{job(ctx)} })
}

// submit gives a store's worker a write (or a write-back); a job it had
// not started yet is replaced (only the newest decision matters) and
// counts as done.
func (sw *sourceWorker) submit(s *storeWorker, job func(context.Context) any) {
	sw.submitKind(s, jobWrite, job)
}

// submitIdle gives a store's worker a change check, only when it has
// nothing waiting.
func (sw *sourceWorker) submitIdle(s *storeWorker, job func(context.Context) any) {
	sw.submitKind(s, jobCheck, job)
}

func (sw *sourceWorker) submitKind(s *storeWorker, kind jobKind, job func(context.Context) any) {
	if set, replaced := s.submit(kind, job); set && !replaced {
		sw.pending++
	}
}

// follow relays a store's pushed changes to the worker until ctx ends.
func (sw *sourceWorker) follow(ctx context.Context, i int, n broker.ChangeNotifier) {
	loc := sw.pass.Copies[i].Sink.Location()
	var mu sync.Mutex
	last := ""
	msg := "cannot follow a copy's changes; retrying"
	if _, ok := n.(broker.PushFallback); ok {
		msg = "cannot follow a copy's changes; it is polled meanwhile"
	}
	ch := n.Changes(ctx, func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if err.Error() != last {
			sw.log.Warn(msg, "copy", loc, "error", err)
			last = err.Error()
		}
	})
	go func() {
		for range ch {
			select {
			case sw.pushed <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
}

// poll asks each store that cannot be watched as files whether it changed,
// on its own worker; a store that did is read there, and a pass follows.
func (sw *sourceWorker) poll() {
	sw.tell.refresh(sw.name)
	if p, ok := sw.pass.Source.(broker.ChangePoller); ok {
		sw.submitIdle(sw.host, func(ctx context.Context) any {
			changed, err := p.Changed(ctx)
			return polled{index: -1, changed: changed || err != nil}
		})
	}
	for i, c := range sw.pass.Copies {
		p, ok := c.Sink.(broker.ChangePoller)
		if _, pushes := c.Sink.(broker.ChangeNotifier); !ok || (pushes && pushesNow(c.Sink)) {
			continue
		}
		sink := c.Sink
		sw.submitIdle(sw.copies[i], func(ctx context.Context) any {
			changed, err := p.Changed(ctx)
			if err != nil {
				// The read says what is wrong, and the pass reports it.
				changed = true
			}
			if !changed || !sw.slow[i] {
				return polled{index: i, changed: changed}
			}
			defer broker.EndPass(ctx, []broker.Copy{c})
			return seenResult{index: i, seen: broker.ReadCopy(ctx, sink)}
		})
	}
}

// pushesNow reports whether a store that pushes its changes does so now:
// one whose pushes can stop (broker.PushFallback) is polled meanwhile.
func pushesNow(s broker.Sink) bool {
	f, ok := s.(broker.PushFallback)
	return !ok || f.Pushing()
}

// polled is a change check's answer.
type polled struct {
	index   int
	changed bool
}

// record takes a store worker's result. The plan input of the pass that
// dispatched it is not needed: results carry what they wrote.
func (sw *sourceWorker) record(r any) {
	sw.pending = max(sw.pending-1, 0)
	now := sw.w.o.Now()
	again := false
	switch r := r.(type) {
	case seenResult:
		sw.slowSeen[r.index] = r.seen
		again = true
	case hostDone:
		sw.recordHost(r.r, now)
	case copyDone:
		again = sw.recordCopy(r.r, now)
	case polled:
		again = r.changed
	}
	if sw.recheckDue && !again {
		if sw.pending == 0 {
			again = true
		} else {
			sw.retryIn(recheckWait)
		}
	}
	if sw.pending == 0 {
		sw.publish()
	}
	if again {
		sw.request(passRequest{})
	}
	sw.maybeDone()
}

func (sw *sourceWorker) recordHost(r broker.HostResult, now time.Time) {
	p := sw.pass
	sw.hostBusy = false
	loc := p.Copies[r.From].Sink.Location()
	switch {
	case r.Err != nil:
		// Once per error; the numbers in it (a temporary file's name)
		// change from one try to the next.
		if ruleOf(r.Err.Error()) != ruleOf(sw.writeBackError) {
			sw.log.Warn("cannot write a newer login back into the host's store; every copy has it, and the write-back is retried",
				"store", p.Source.Location(), "from", loc, "error", r.Err)
			sw.tell.clear(WriteBackFailing, sw.writeBackTold)
			sw.tell.set(Event{Event: WriteBackFailing, Copy: loc, Fingerprint: r.Info.Fingerprint,
				Message: "cannot write the newer login from " + loc + " back into " + p.Source.Location() + ": " + r.Err.Error() + "; every copy has it, and the write-back is retried",
				Fix:     "make " + p.Source.Location() + " writable for mc-broker (mc-broker status shows the failure)"})
			sw.writeBackTold = loc
		}
		sw.writeBackError = r.Err.Error()
		sw.w.state.writeBack(sw.name, r.Err.Error(), now)
		sw.attempt++
		wait := sw.w.backoff(sw.attempt)
		sw.hostRetryAt = time.Now().Add(wait)
		sw.retryIn(wait)
	case r.Declined != "":
		sw.log.Debug("take-back not written", "from", loc, "reason", r.Declined)
		sw.request(passRequest{})
	default:
		if sw.writeBackError != "" {
			sw.log.Info("writing back into the host's store works again", "store", p.Source.Location())
		}
		sw.writeBackCleared(now)
		sw.attempt = 0
		sw.log.Info("took a newer login back from a copy into the host's store",
			"store", p.Source.Location(), "from", loc,
			"fingerprint", r.Info.Fingerprint, "expires_at", expiry(r.Info.Expiry), "backup", r.Backup)
		sw.w.state.adopted(sw.name, loc, r.Info, now)
		sw.w.onMain(sw.w.saveState)
		p.RecordHost(r)
	}
}

// writeBackCleared forgets a failing write-back: it worked, or nothing is
// left to write back.
func (sw *sourceWorker) writeBackCleared(now time.Time) {
	sw.tell.clear(WriteBackFailing, sw.writeBackTold)
	sw.writeBackError, sw.writeBackTold, sw.hostRetryAt = "", "", time.Time{}
	sw.w.state.writeBack(sw.name, "", now)
}

// recordCopy logs and remembers a copy's write; it reports whether to
// pass again (the copy changed under the write).
func (sw *sourceWorker) recordCopy(r broker.CopyResult, now time.Time) (again bool) {
	p := sw.pass
	c := p.Copies[r.Index]
	loc := c.Sink.Location()
	delete(sw.inflight, r.Index)
	if sw.recheck[r.Index] {
		delete(sw.recheck, r.Index)
		sw.recheckDue = true
	}
	p.RecordCopy(r)
	if sw.slow[r.Index] && r.Current != nil {
		// Read under its locks: as fresh as a read (reads asked for
		// while this write waited were not run, see jobRead).
		sw.slowSeen[r.Index] = *r.Current
	}
	sw.w.state.copyResult(sw.name, loc, r, now)
	prev, wasFailing := sw.failing[loc]
	switch {
	case r.Plan.Action == broker.Fail:
		if !wasFailing || prev != r.Plan.Problem {
			sw.log.Warn("copy failed; retrying with backoff", "copy", loc, "error", r.Plan.Problem)
		}
		if !wasFailing {
			sw.tell.set(Event{Event: CopyFailing, Copy: loc,
				Message: "cannot write the copy " + loc + " of " + sw.name + ": " + r.Plan.Problem + "; retried with backoff",
				Fix:     "see the message; mc-broker status shows since when"})
		}
		sw.failing[loc] = r.Plan.Problem
		sw.attempt++
		sw.retryIn(sw.w.backoff(sw.attempt))
		return false
	case wasFailing:
		delete(sw.failing, loc)
		sw.tell.clear(CopyFailing, loc)
		sw.log.Info("copy recovered", "copy", loc)
	}
	if len(sw.failing) == 0 && sw.writeBackError == "" {
		sw.attempt = 0
	}
	if r.Plan.Action == broker.Write {
		args := []any{"copy", loc, "outcome", r.Plan.Outcome, "fingerprint", r.Info.Fingerprint}
		if p := r.Plan.Problem; p != "" {
			args = append(args, "was", p)
		}
		if len(r.Companions) > 0 {
			args = append(args, "companions", r.Companions)
		}
		sw.log.Info("copy written", args...)
	}
	return again || r.Plan.Again
}

// logReadFailures logs copies the pass could not read (once per
// problem); it reports whether there were any, to retry with backoff.
func (sw *sourceWorker) logReadFailures(in broker.PlanInput, plan broker.PlanResult) bool {
	any := false
	for i, c := range plan.Copies {
		loc := in.Copies[i].Key
		if _, was := sw.failing[loc]; was && (c.Action == broker.Keep && !c.Tidy) {
			// Readable again and in step: no write will say so.
			delete(sw.failing, loc)
			sw.log.Info("copy recovered", "copy", loc)
		}
		if c.Action != broker.Fail {
			continue
		}
		any = true
		if prev, was := sw.failing[loc]; !was || prev != c.Problem {
			sw.log.Warn("copy failed; retrying with backoff", "copy", loc, "error", c.Problem)
		}
		sw.failing[loc] = c.Problem
	}
	return any
}

// logSource logs a change of the source's state. A host being written
// (half-written for a moment) is not a change worth a line.
func (sw *sourceWorker) logSource(sr broker.SourceReport, plan broker.PlanResult) {
	if revoked := sr.RevokedAt != nil; revoked != sw.revoked {
		sw.revoked = revoked
		if revoked {
			sw.log.Info("copies revoked: none is written until mc-broker sync or mc-broker login", "revoked_at", sr.RevokedAt.UTC().Format(time.RFC3339))
		}
	}
	problem := ""
	if sr.State != broker.SourceValid {
		problem = string(sr.State) + ": " + sr.Problem
	}
	if problem == sw.sourceProblem || plan.Host.Action == broker.Wait {
		return
	}
	switch {
	case problem == "":
		sw.log.Info("source usable again", "fingerprint", sr.Fingerprint)
	case sr.State == broker.SourceNotLoggedIn:
		sw.log.Info("source not logged in; its copies are left as they are", "reason", sr.Problem, "hint", sr.Hint)
	default:
		sw.log.Warn("source unusable; its copies are left as they are", "state", sr.State, "problem", sr.Problem, "hint", sr.Hint)
	}
	sw.sourceProblem = problem
}

// logPlan logs what is refused, once per copy and reason.
func (sw *sourceWorker) logPlan(in broker.PlanInput, plan broker.PlanResult) {
	for i, c := range plan.Copies {
		loc := in.Copies[i].Key
		why := c.Refused
		if c.Action == broker.Refuse {
			why = c.Problem
		}
		if why == sw.refused[loc] {
			continue
		}
		sw.refused[loc] = why
		if why != "" && sw.warn(loc, why, in.Now) {
			sw.log.Warn("a copy's login is not taken back", "copy", loc, "reason", why)
		}
		if c.Outcome == broker.KeptNewer {
			sw.log.Info("copy holds a newer login; kept", "copy", loc, "fingerprint", c.Info.Fingerprint)
		}
	}
}

// warning is a refusal warned about.
type warning struct {
	rule string
	at   time.Time
}

// warn reports whether a refusal of loc's login for why is worth a
// warning: the first of its rule, or the first for an hour.
func (sw *sourceWorker) warn(loc, why string, now time.Time) bool {
	rule := ruleOf(why)
	if last, ok := sw.warned[loc]; ok && last.rule == rule && now.Sub(last.at) < broker.TakeBackWindow {
		return false
	}
	sw.warned[loc] = warning{rule, now}
	return true
}

// ruleOf is a reason or an error without its numbers (an expiry, a size,
// a count, a temporary file's name), which change from one time to the
// next, and which a container can vary at will.
func ruleOf(why string) string {
	return strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return -1
		}
		return r
	}, why)
}

// retryIn arms the retry timer to fire within d, unless it fires sooner
// already: a short wait (content looking half-written) is never pushed
// back by a long one (a failing store's backoff).
func (sw *sourceWorker) retryIn(d time.Duration) {
	at := time.Now().Add(d)
	if !sw.retryAt.IsZero() && sw.retryAt.Before(at) {
		return
	}
	sw.retryAt = at
	sw.retry.Reset(d)
}

func expiry(t time.Time) any {
	if t.IsZero() {
		return "unknown"
	}
	return t.UTC().Format(time.RFC3339)
}

// storeWorker runs one store's reads and writes, one at a time, each with
// the store's own deadline. It keeps one job waiting; which job may take
// the waiting one's place is up to their kinds (jobKind).
type storeWorker struct {
	sw       *sourceWorker
	name     string
	mu       sync.Mutex
	next     func(context.Context) any
	nextKind jobKind
	wake     chan struct{}
	// slots, when set, bounds how many such workers run a job at once.
	slots chan struct{}
}

func newStoreWorker(sw *sourceWorker, name string) *storeWorker {
	return &storeWorker{sw: sw, name: name, wake: make(chan struct{}, 1)}
}

// jobKind is what a store worker's job does, which decides what may take
// the place of a job that has not started yet.
type jobKind int

const (
	// jobWrite decides under the store's locks and writes; it reports what
	// the store then holds, so it stands for a read too. The newest
	// replaces any job waiting.
	jobWrite jobKind = iota
	// jobRead reads a slow store. It never replaces a waiting write or
	// read: either reports what the store holds when it runs. A read that
	// took a write's place once lost that write (the plan that follows
	// sees it as in flight and does not ask for it again).
	jobRead
	// jobCheck asks whether the store changed (a poll); only when nothing
	// waits.
	jobCheck
)

// submit sets the next job, by kind (see jobKind). set is whether it was
// set; replaced, whether it took the place of a job that had not started,
// which then counts as done.
func (s *storeWorker) submit(kind jobKind, job func(context.Context) any) (set, replaced bool) {
	s.mu.Lock()
	waiting := s.next != nil
	switch {
	case !waiting:
	case kind == jobCheck, kind == jobRead && s.nextKind != jobCheck:
		s.mu.Unlock()
		return false, false
	}
	s.next, s.nextKind = job, kind
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return true, waiting
}

func (s *storeWorker) run(ctx context.Context, work context.Context) {
	for {
		select {
		case <-ctx.Done():
			s.mu.Lock()
			job := s.next
			s.next = nil
			s.mu.Unlock()
			if job != nil {
				// Let a write that was decided finish (work is cancelled
				// after the stop grace).
				s.deliver(ctx, s.runJob(work, job))
			}
			return
		case <-s.wake:
		}
		s.mu.Lock()
		job := s.next
		s.next = nil
		s.mu.Unlock()
		if job != nil {
			s.deliver(ctx, s.runJob(work, job))
		}
	}
}

// runJob runs job within the worker's bound.
func (s *storeWorker) runJob(ctx context.Context, job func(context.Context) any) any {
	if s.slots != nil {
		s.slots <- struct{}{}
		defer func() { <-s.slots }()
	}
	return job(ctx)
}

func (s *storeWorker) deliver(ctx context.Context, r any) {
	select {
	case s.sw.results <- r:
	case <-ctx.Done():
	}
}

// backoff is the wait before retry number attempt (1, 2, ...), with ±25%
// jitter so that many failing copies do not retry in lockstep.
func (w *watcher) backoff(attempt int) time.Duration {
	d := w.o.RetryMin
	for i := 1; i < attempt && d < w.o.RetryMax; i++ {
		d *= 2
	}
	d = min(d, w.o.RetryMax)
	jitter := time.Duration(rand.Int64N(int64(d)/2+1)) - d/4
	return d + jitter
}

// memorySnapshot is the memory as of the worker's last change, safe to
// read from any goroutine.
func (sw *sourceWorker) memorySnapshot() *broker.Memory { return sw.snapshot.Load() }

// publish makes the memory's current state the snapshot.
func (sw *sourceWorker) publish() { sw.snapshot.Store(sw.pass.Memory.Clone()) }
