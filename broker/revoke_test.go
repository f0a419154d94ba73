package broker_test

import (
	"context"
	"fmt"
	"io/fs"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/mc-broker/mc-broker/broker"
	"github.com/mc-broker/mc-broker/broker/credential"
	"github.com/mc-broker/mc-broker/broker/kinds/codex"
)

// TestPlanWhileRevoked: a revoked login's copies are neither written nor
// taken back from, whatever they hold; the host keeps its login.
func TestPlanWhileRevoked(t *testing.T) {
	for _, tt := range []struct {
		name      string
		host, cp  []byte
		host0     broker.Action
		shows     broker.Outcome
		withLogin bool
	}{
		{"missing copy", l2, nil, broker.Keep, broker.Revoked, false},
		{"older copy", l2, l1, broker.Keep, broker.Revoked, true},
		{"newer copy is not taken back", l2, l3, broker.Keep, broker.Revoked, true},
		{"broken host is not rescued", blanked, l3, broker.Skip, broker.Revoked, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			mem := broker.NewMemory()
			mem.Remember(info(t, l2))
			in := broker.PlanInput{
				Kind: codex.Kind, Now: planNow, Host: seen(tt.host), HostWritable: true,
				Copies: []broker.PlanCopy{{Key: "/copy/auth.json", Seen: seen(tt.cp)}},
				Memory: mem, Revoked: planNow.Add(-time.Minute),
			}
			res := broker.Plan(in)
			cp := res.Copies[0]
			if res.Host.Action != tt.host0 || cp.Action != broker.Skip || cp.Outcome != broker.Revoked || cp.Shows != tt.shows {
				t.Errorf("host %s, copy %s/%s/%s; want host %s, copy skip/revoked/%s", res.Host.Action, cp.Action, cp.Outcome, cp.Shows, tt.host0, tt.shows)
			}
			if (cp.Problem != "") != tt.withLogin {
				t.Errorf("problem %q: a login found in a revoked copy is worth saying, nothing else is", cp.Problem)
			}
			if d := res.DecideCopy(in, 0, seen(tt.cp)); d.Action != broker.Skip {
				t.Errorf("under the lock: %s", d.Action)
			}
		})
	}
}

// memSink is a copy in memory, for the pass's own logic.
type memSink struct {
	mu     sync.Mutex
	loc    string
	data   []byte
	exists bool
}

func (m *memSink) Location() string { return m.loc }
func (m *memSink) Read(context.Context) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.exists {
		return nil, fs.ErrNotExist
	}
	return m.data, nil
}
func (m *memSink) Update(_ context.Context, decide broker.Decide) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	next, write := decide(m.data, m.exists)
	if write {
		m.data, m.exists = next, true
	}
	return nil
}
func (m *memSink) Erase(_ context.Context, erase func([]byte) bool) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.exists || !erase(m.data) {
		return false, nil
	}
	m.data, m.exists = nil, false
	return true, nil
}

type memSource struct{ data []byte }

func (s memSource) Name() string                         { return "codex" }
func (memSource) Kind() credential.Kind                  { return codex.Kind }
func (memSource) Location() string                       { return "/host/auth.json" }
func (s memSource) Read(context.Context) ([]byte, error) { return s.data, nil }

// TestRevokeThenSync: revoke erases every copy it knows (and leaves a file
// that is not a login alone), a status shows them revoked, a sync lifts it.
// A write planned before the revoke and made after it is dropped under the
// copy's lock.
func TestRevokeThenSync(t *testing.T) {
	ctx := context.Background()
	state := t.TempDir()
	a := &memSink{loc: "/a/auth.json"}
	b := &memSink{loc: "/b/auth.json"}
	foreign := &memSink{loc: "/f/auth.json", data: []byte("not json at all"), exists: true}
	// A container logged in there with an account of its own, after the
	// broker's copy: not this login's copy.
	theirs := &memSink{loc: "/theirs/auth.json"}
	layout := &memSink{loc: "/layout/auth.json"}
	br := &broker.Broker{
		Sources:  []broker.Source{memSource{l2}},
		Copies:   []broker.Copy{{Source: "codex", Sink: a}, {Source: "codex", Sink: b}, {Source: "codex", Sink: foreign}, {Source: "codex", Sink: theirs}},
		StateDir: state,
		Now:      func() time.Time { return planNow },
	}
	if r := br.Sync(ctx, broker.Options{}); r.ExitCode() != broker.ExitUsage {
		// The foreign file is refused (exit 2); a and b are created.
		t.Fatalf("first sync: exit %d", r.ExitCode())
	}
	layout.data, layout.exists = l2, true
	theirs.data = other

	// A write planned now (before the revoke) lands only after it.
	p := br.NewPass(br.Sources[0])
	in := p.Read(ctx)
	plan := broker.Plan(in)

	rep, err := br.Revoke(ctx, br.Sources[0], []broker.Sink{layout})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]broker.EraseOutcome{}
	for _, c := range rep.Copies {
		got[c.Location] = c.Outcome
		if c.Outcome == broker.Erased && c.Fingerprint != info(t, l2).Fingerprint {
			t.Errorf("%s: erased %q, want the login's fingerprint", c.Location, c.Fingerprint)
		}
	}
	want := map[string]broker.EraseOutcome{"/a/auth.json": broker.Erased, "/b/auth.json": broker.Erased, "/f/auth.json": broker.LeftAlone, "/theirs/auth.json": broker.LeftAlone, "/layout/auth.json": broker.Erased}
	if fmt.Sprint(got) != fmt.Sprint(want) || !rep.Failed() {
		t.Errorf("revoke: %v (failed %v); want %v, failed", got, rep.Failed(), want)
	}
	if a.exists || b.exists || layout.exists || !foreign.exists || !theirs.exists {
		t.Fatalf("after revoke: a %v, b %v, layout %v, foreign %v, theirs %v", a.exists, b.exists, layout.exists, foreign.exists, theirs.exists)
	}

	// The stale plan's writes: dropped under the lock.
	plan.Copies[0].Action = broker.Write
	p.Apply(in, plan, inline{})
	if a.exists {
		t.Fatal("a write planned before the revoke re-created the copy after it")
	}

	st := br.Status(ctx, broker.Options{})
	if s := st.Sources[0]; s.RevokedAt == nil || s.Copies[0].Outcome != broker.Revoked || s.State != broker.SourceValid || st.ExitCode() != broker.ExitOK {
		t.Errorf("status after revoke: revoked %v, copy %s, host %s", s.RevokedAt, s.Copies[0].Outcome, s.State)
	}
	if r := br.Sync(ctx, broker.Options{}); r.Sources[0].Copies[0].Outcome != broker.Revoked || a.exists {
		t.Errorf("a sync that does not lift the revocation wrote: %s", r.Sources[0].Copies[0].Outcome)
	}
	if r := br.Sync(ctx, broker.Options{LiftRevocation: true, DryRun: true}); r.Sources[0].Copies[0].Outcome != broker.Created || !r.Sources[0].Unrevoked || a.exists {
		t.Errorf("a dry run: %s, unrevoked %v", r.Sources[0].Copies[0].Outcome, r.Sources[0].Unrevoked)
	}
	r := br.Sync(ctx, broker.Options{LiftRevocation: true})
	if s := r.Sources[0]; s.Copies[0].Outcome != broker.Created || !s.Unrevoked || s.RevokedAt != nil || !a.exists {
		t.Errorf("sync lifting the revocation: %s, unrevoked %v", s.Copies[0].Outcome, s.Unrevoked)
	}
	if !br.Revocations().At("codex").IsZero() {
		t.Error("the revocation is still recorded")
	}
	if left, _ := filepath.Glob(filepath.Join(state, "revoked", "*")); len(left) > 0 {
		t.Errorf("left in the state directory: %v", left)
	}
}

// inline runs a pass's jobs at once.
type inline struct{}

func (inline) Host(job func(context.Context) broker.HostResult) { job(context.Background()) }
func (inline) Copy(_ int, job func(context.Context) broker.CopyResult) {
	job(context.Background())
}
