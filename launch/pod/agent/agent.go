// Package agent is the pod side of a Secret copy (`mc-broker agent`): it
// keeps a login in a pod's writable directory (an emptyDir mounted as the
// CLI's config directory) in step with the Secret the host keeps.
//
// A pod cannot use the Secret as a volume: Secret volumes are read-only,
// and subPath mounts never update. So an init container (Once) copies the
// login into the directory before the CLI starts, and a sidecar (Run)
// watches both sides, the directory with inotify and the Secret through
// the API's watch, and carries whichever is newer to the other: a
// refresh the CLI in the pod makes goes back into the Secret within
// milliseconds, where the host's watcher and the other pods' sidecars
// pick it up.
//
// The rule is the broker's: newest wins, never carry a broken login. It
// lives in one function (Decide) so that it can give way to the broker's
// own plan.
package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"sort"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/mc-broker/mc-broker/broker"
	"github.com/mc-broker/mc-broker/broker/credential"
	"github.com/mc-broker/mc-broker/sinks/secret"
)

// SecretStore is the Secret side: read, conditional update, and changes
// pushed through the API's watch (sinks/secret.Sink).
type SecretStore interface {
	broker.Sink
	secret.Notifier
}

// DirStore is the pod side: the login file in the pod's directory, watched
// as a file (sinks/dir.Sink).
type DirStore interface {
	broker.Sink
	broker.WatchedFiles
}

// Login is one CLI's login kept in step.
type Login struct {
	// Name says which login, in log lines (claude, codex, ...).
	Name   string
	Kind   credential.Kind
	Secret SecretStore
	Dir    DirStore
	// Companions are written into the directory when absent (Claude's
	// .claude.json, Gemini's settings.json), if Dir can
	// (broker.CompanionWriter).
	Companions map[string][]byte
}

// Action is what Decide says to do.
type Action int

const (
	Nothing     Action = iota
	ToDirectory        // the Secret's login goes into the directory
	ToSecret           // the directory's login goes back into the Secret
)

func (a Action) String() string {
	switch a {
	case ToDirectory:
		return "to-directory"
	case ToSecret:
		return "to-secret"
	}
	return "nothing"
}

// Side is one store's content as read: Exists is false when there is none.
type Side struct {
	Data   []byte
	Exists bool
}

// Decision is what Decide says: what to do, the login carried, and the
// bytes to write where it goes.
type Decision struct {
	Action Action
	// Info describes the login carried, or the Secret's when nothing is.
	Info credential.Info
	// Data is what is written: into the Secret (ToSecret) or the
	// directory (ToDirectory).
	Data []byte
	// Refused says why a newer login in the directory is not taken back
	// (another account, implausible): the directory gets the Secret's.
	Refused string
}

// Decide is the broker's own plan (broker.Plan) with the Secret in the
// host's part and the pod's directory as its one copy: newest wins, a
// broken login is never carried, and a login the pod wrote goes back into
// the Secret only when the host would take it from a copy: the Secret's
// account, plausible, small. A Deployment's replicas share one Secret, so
// whatever one pod gets into it reaches the others before the host looks;
// a replica must not be able to hand its siblings another account's login
// (or one claiming to live for years). The directory is the Secret's copy
// (an emptyDir made for it), so a login of another account there is
// replaced (Rules.Force), as is one the plan refuses. A Secret that holds
// no valid login is filled by the host, never by a pod. A login whose age
// is unknown (API keys) is never taken back.
func Decide(kind credential.Kind, sec, dir Side) Decision {
	in := broker.PlanInput{
		Kind: kind, Now: time.Now(),
		Host:         broker.Seen{Exists: sec.Exists, Data: sec.Data},
		HostWritable: true,
		// The Secret holds what the host decided a copy gets: the pod's
		// directory gets it as it is.
		Copies: []broker.PlanCopy{{Key: "pod", Options: credential.CopyOptions{IncludeMCPOAuth: true}, Seen: broker.Seen{Exists: dir.Exists, Data: dir.Data}}},
		Rules:  broker.Rules{Force: true},
	}
	plan := broker.Plan(in)
	cp := plan.Copies[0]
	d := Decision{Info: plan.Host.Info, Refused: cp.Refused}
	switch {
	case cp.Action == broker.Refuse:
		d.Refused = cp.Problem
	case cp.Action == broker.Write && cp.Shows == broker.OtherAccount:
		d.Refused = "it holds a login of another account"
	}
	switch {
	case plan.Host.Action == broker.TakeBack:
		d.Action, d.Data, d.Info = ToSecret, plan.Host.Data, plan.Login.Info
	case cp.Action == broker.Write:
		d.Action, d.Data, d.Info = ToDirectory, cp.Want, plan.Login.Info
	}
	return d
}

func inspect(kind credential.Kind, s Side) (credential.Info, error) {
	if !s.Exists {
		return credential.Info{}, fs.ErrNotExist
	}
	return kind.Inspect(s.Data)
}

// Result is what one Reconcile did.
type Result struct {
	Action Action
	// Info describes the login carried (fingerprint, expiry).
	Info credential.Info
	// Problem says why nothing could be carried where something should
	// have been: both sides broken or missing.
	Problem string
	// Refused says why the pod's newer login was not taken back.
	Refused string
}

// settleTries and settleDelay: a directory login that looks caught
// mid-write (Gemini CLI writes its file in place) is read again before it
// counts as broken.
const (
	settleTries = 3
	settleDelay = 100 * time.Millisecond
)

// Reconcile reads both sides, decides, and carries the login. The Secret
// is read inside its own conditional update, so that a login going back
// costs one read and one write, and one that changed in between is decided
// again; the directory's write decides again under its locks. Nothing is
// ever overwritten with something older.
func Reconcile(ctx context.Context, l Login) (Result, error) {
	dir, err := read(ctx, l.Dir)
	for try := 0; err == nil && dir.Exists && try < settleTries; try++ {
		if _, ierr := l.Kind.Inspect(dir.Data); !credential.IsPartial(ierr) {
			break
		}
		select {
		case <-ctx.Done():
			return Result{}, ctx.Err()
		case <-time.After(settleDelay):
		}
		dir, err = read(ctx, l.Dir)
	}
	if err != nil {
		return Result{}, err
	}
	var (
		sec Side
		d   Decision
	)
	err = l.Secret.Update(ctx, func(cur []byte, exists bool) ([]byte, bool) {
		sec = Side{cur, exists}
		d = Decide(l.Kind, sec, dir)
		return d.Data, d.Action == ToSecret
	})
	if err != nil {
		return Result{}, err
	}
	res := Result{Action: d.Action, Info: d.Info, Refused: d.Refused}
	switch d.Action {
	case ToDirectory:
		err = l.Dir.Update(ctx, func(cur []byte, exists bool) ([]byte, bool) {
			again := Decide(l.Kind, sec, Side{cur, exists})
			return again.Data, again.Action == ToDirectory
		})
		if err == nil {
			err = writeCompanions(ctx, l)
		}
	case Nothing:
		if _, derr := inspect(l.Kind, dir); derr != nil {
			_, serr := inspect(l.Kind, sec)
			res.Problem = problem(l, serr, derr)
		}
	}
	if err != nil {
		return Result{}, err
	}
	return res, nil
}

func read(ctx context.Context, s broker.Sink) (Side, error) {
	data, err := s.Read(ctx)
	if errors.Is(err, fs.ErrNotExist) {
		return Side{}, nil
	}
	if err != nil {
		return Side{}, err
	}
	return Side{Data: data, Exists: true}, nil
}

func problem(l Login, serr, derr error) string {
	describe := func(err error) string {
		if errors.Is(err, fs.ErrNotExist) {
			return "no login"
		}
		return err.Error()
	}
	return fmt.Sprintf("no usable login: %s has %s, %s has %s", l.Secret.Location(), describe(serr), l.Dir.Location(), describe(derr))
}

func writeCompanions(ctx context.Context, l Login) error {
	cw, ok := l.Dir.(broker.CompanionWriter)
	if !ok {
		return nil
	}
	names := make([]string, 0, len(l.Companions))
	for n := range l.Companions {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if _, err := cw.WriteIfAbsent(ctx, n, l.Companions[n]); err != nil {
			return fmt.Errorf("companion file %s: %w", n, err)
		}
	}
	return nil
}

// Logf receives the agent's log lines; they carry fingerprints and expiry
// times, never a login.
type Logf func(format string, args ...any)

// NoLoginError is Once finding no usable login for the pod: the Secret
// and the directory have none (or only broken ones).
type NoLoginError struct{ Problems []string }

func (e *NoLoginError) Error() string {
	if len(e.Problems) == 1 {
		return e.Problems[0]
	}
	return fmt.Sprintf("%d logins unusable: %s", len(e.Problems), joinSemi(e.Problems))
}

func joinSemi(s []string) string {
	out := ""
	for i, p := range s {
		if i > 0 {
			out += "; "
		}
		out += p
	}
	return out
}

// Once brings every login in step one time (the init container): the
// directory receives the Secret's login unless it holds a newer one, which
// goes back into the Secret. It fails with a *NoLoginError when a login
// has no usable copy on either side, so that the pod does not start a
// logged-out CLI; kubelet retries the init container.
func Once(ctx context.Context, logins []Login, logf Logf) error {
	var problems []string
	for _, l := range logins {
		res, err := Reconcile(ctx, l)
		if err != nil {
			return fmt.Errorf("%s: %w", l.Name, err)
		}
		report(logf, l, res)
		if res.Problem != "" {
			problems = append(problems, l.Name+": "+res.Problem)
			continue
		}
		if err := writeCompanions(ctx, l); err != nil {
			return fmt.Errorf("%s: %w", l.Name, err)
		}
	}
	if len(problems) > 0 {
		return &NoLoginError{Problems: problems}
	}
	return nil
}

func report(logf Logf, l Login, res Result) {
	if logf == nil {
		return
	}
	what := res.Info.Fingerprint
	if what == "" {
		what = "a login"
	}
	if !res.Info.Expiry.IsZero() {
		what += ", expires " + res.Info.Expiry.UTC().Format(time.RFC3339)
	}
	switch {
	case res.Action == ToDirectory && res.Refused != "":
		logf("%s: the login in %s is not taken back: %s; it gets the Secret's (%s)", l.Name, l.Dir.Location(), res.Refused, what)
	case res.Action == ToDirectory:
		logf("%s: %s -> %s (%s)", l.Name, l.Secret.Location(), l.Dir.Location(), what)
	case res.Action == ToSecret:
		logf("%s: %s -> %s (%s)", l.Name, l.Dir.Location(), l.Secret.Location(), what)
	case res.Problem != "":
		logf("%s: %s", l.Name, res.Problem)
	}
}

// RunOptions qualify Run.
type RunOptions struct {
	// Quiet is how long after a change in the directory Run waits for
	// more before it acts (a CLI writing its file in place); 5 ms by
	// default. A login caught mid-write is read again anyway.
	Quiet time.Duration
	Logf  Logf
	// Ready, when not nil, is called once both sides are watched.
	Ready func()
}

// Run keeps the logins in step until ctx ends (the sidecar): it brings
// them in step once, then acts on every change of a login file in its
// directory (inotify) and of the Secret (the API's watch). A failed
// step (the API unreachable) is tried again with backoff, so a refresh
// made while the API is away still reaches the Secret.
func Run(ctx context.Context, logins []Login, o RunOptions) error {
	if o.Quiet <= 0 {
		o.Quiet = 5 * time.Millisecond
	}
	logf := o.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	defer fsw.Close()
	byFile := map[string][]int{} // login file path -> logins
	dirs := map[string]bool{}
	for i, l := range logins {
		for _, f := range l.Dir.WatchedFiles() {
			byFile[filepath.Clean(f)] = append(byFile[filepath.Clean(f)], i)
			dirs[filepath.Dir(f)] = true
		}
	}
	for d := range dirs {
		if err := fsw.Add(d); err != nil {
			return fmt.Errorf("cannot watch %s: %w", d, err)
		}
	}
	type signal struct{ i int }
	changed := make(chan signal)
	for i, l := range logins {
		ch := l.Secret.Changes(ctx, func(err error) { logf("%s: watching %s: %v", l.Name, l.Secret.Location(), err) })
		go func() {
			for range ch {
				select {
				case changed <- signal{i}:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	if o.Ready != nil {
		o.Ready()
	}

	due := make([]time.Time, len(logins)) // zero: nothing pending
	backoff := make([]time.Duration, len(logins))
	lastProblem := make([]string, len(logins))
	for i := range logins {
		due[i] = time.Now()
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	arm := func() {
		var next time.Time
		for _, d := range due {
			if !d.IsZero() && (next.IsZero() || d.Before(next)) {
				next = d
			}
		}
		if next.IsZero() {
			return
		}
		timer.Reset(time.Until(next))
	}
	schedule := func(i int, after time.Duration) {
		at := time.Now().Add(after)
		if due[i].IsZero() || at.Before(due[i]) || after == o.Quiet {
			due[i] = at
		}
		arm()
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-fsw.Events:
			if !ok {
				return errors.New("the directory watch ended")
			}
			for _, i := range byFile[filepath.Clean(ev.Name)] {
				schedule(i, o.Quiet)
			}
		case err, ok := <-fsw.Errors:
			if !ok {
				return errors.New("the directory watch ended")
			}
			// An overflowed inotify queue loses events: look at everything.
			logf("directory watch: %v; checking every login", err)
			for i := range logins {
				schedule(i, o.Quiet)
			}
		case s := <-changed:
			schedule(s.i, 0)
		case <-timer.C:
			now := time.Now()
			for i, l := range logins {
				if due[i].IsZero() || due[i].After(now) {
					continue
				}
				due[i] = time.Time{}
				res, err := Reconcile(ctx, l)
				if ctx.Err() != nil {
					return nil
				}
				if err != nil {
					backoff[i] = min(max(2*backoff[i], time.Second), 30*time.Second)
					logf("%s: %v (trying again in %s)", l.Name, err, backoff[i])
					due[i] = time.Now().Add(backoff[i])
					continue
				}
				backoff[i] = 0
				if said := res.Problem + res.Refused; said != "" && said == lastProblem[i] {
					continue // said already
				}
				lastProblem[i] = res.Problem + res.Refused
				report(logf, l, res)
			}
			arm()
		}
	}
}
