package agent_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mc-broker/mc-broker/broker/kinds/claude"
	"github.com/mc-broker/mc-broker/broker/testenv"

	"github.com/mc-broker/mc-broker/launch/pod/agent"
	"github.com/mc-broker/mc-broker/sinks/dir"
	"github.com/mc-broker/mc-broker/sinks/secret"
	"github.com/mc-broker/mc-broker/sinks/secret/kubetest"
)

func TestMain(m *testing.M) { os.Exit(kubetest.Main(m)) }

// pod is one pod's side: a directory standing in for the emptyDir, and the
// Claude login kept in step with Secret logins in a namespace of the real
// API server.
type pod struct {
	dir   string
	login agent.Login
	sink  *secret.Sink // the Secret, as the host writes it
}

func newPod(t *testing.T, srv *kubetest.Server, ns string) *pod {
	t.Helper()
	clients := secret.NewClients(func(string) string { return "" }, "")
	opts := secret.Options{Namespace: ns, Name: "logins", Key: ".credentials.json", Kubeconfig: srv.Kubeconfig, Clients: clients}
	d := filepath.Join(t.TempDir(), ".claude")
	if err := os.Mkdir(d, 0o777); err != nil { // an emptyDir
		t.Fatal(err)
	}
	return &pod{
		dir:  d,
		sink: secret.New(opts),
		login: agent.Login{
			Name:       "claude",
			Kind:       claude.Kind,
			Secret:     secret.New(opts),
			Dir:        dir.New(dir.Options{Dir: d, FileName: ".credentials.json", LockDir: filepath.Join(t.TempDir(), "locks")}),
			Companions: claude.Kind.Facts().Companions,
		},
	}
}

func (p *pod) file() string { return filepath.Join(p.dir, ".credentials.json") }

// cliWrites writes a login into the pod's directory the way Claude Code
// does: a temporary file renamed over the login.
func (p *pod) cliWrites(t *testing.T, data []byte) {
	t.Helper()
	tmp := p.file() + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, p.file()); err != nil {
		t.Fatal(err)
	}
}

// runSidecar runs the pod's sidecar (agent.Run) until ctx ends, its log
// lines in logs and its result sent on done, and returns once it watches
// both sides.
func (p *pod) runSidecar(ctx context.Context, logs *testenv.Buffer, done chan<- error) {
	ready := make(chan struct{})
	go func() {
		done <- agent.Run(ctx, []agent.Login{p.login}, agent.RunOptions{
			Ready: func() { close(ready) },
			Logf:  func(f string, a ...any) { fmt.Fprintf(logs, f+"\n", a...) },
		})
	}()
	<-ready
}

func hostWrites(t *testing.T, ctx context.Context, s *secret.Sink, data []byte) {
	t.Helper()
	if err := s.Update(ctx, func([]byte, bool) ([]byte, bool) { return data, true }); err != nil {
		t.Fatal(err)
	}
}

// waitFor polls until cond holds (the change travels through the API and
// inotify: there is no single event to wait on here).
func waitFor(t *testing.T, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > 20*time.Second {
			t.Fatalf("%s: not within 20 s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return time.Since(start)
}

func TestOnceFillsAFreshPodAndItsCompanions(t *testing.T) {
	srv := kubetest.Require(t)
	ns := srv.Namespace(t)
	ctx := kubetest.Context(t)
	p := newPod(t, srv, ns)
	login := claudeLogin(4102444800000, "host")
	hostWrites(t, ctx, p.sink, login)

	var lines []string
	if err := agent.Once(ctx, []agent.Login{p.login}, func(f string, a ...any) { lines = append(lines, f) }); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(p.file())
	if err != nil || !bytes.Equal(got, login) {
		t.Fatalf("the pod's login: %q, %v", got, err)
	}
	if st, _ := os.Stat(p.file()); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", st.Mode().Perm())
	}
	if _, err := os.Stat(filepath.Join(p.dir, ".claude.json")); err != nil {
		t.Errorf("no onboarding companion: %v", err)
	}
	if len(lines) != 1 {
		t.Errorf("log lines %q, want one saying what was copied", lines)
	}
}

// With no login anywhere the init step fails, so the pod does not start a
// logged-out CLI; it writes nothing.
func TestOnceWithoutALoginFails(t *testing.T) {
	srv := kubetest.Require(t)
	ns := srv.Namespace(t)
	p := newPod(t, srv, ns)
	err := agent.Once(kubetest.Context(t), []agent.Login{p.login}, nil)
	var nl *agent.NoLoginError
	if !errors.As(err, &nl) {
		t.Fatalf("Once with an empty Secret: %v, want a NoLoginError", err)
	}
	if entries, _ := os.ReadDir(p.dir); len(entries) != 0 {
		t.Errorf("the pod's directory got %d files", len(entries))
	}
}

// The sidecar: a refresh made in the pod reaches the Secret, one made on
// the host (or in another pod) reaches the pod, and a broken login in the
// pod never reaches the Secret.
func TestRunKeepsPodAndSecretInStep(t *testing.T) {
	srv := kubetest.Require(t)
	ns := srv.Namespace(t)
	ctx, cancel := context.WithCancel(kubetest.Context(t))
	defer cancel()
	p := newPod(t, srv, ns)
	// Expiries as Claude issues them: the sidecar, like the host, takes
	// back no login that claims to live longer than any does.
	now := time.Now()
	v1 := claudeLogin(now.Add(time.Hour).UnixMilli(), "v1")
	hostWrites(t, ctx, p.sink, v1)
	if err := agent.Once(ctx, []agent.Login{p.login}, nil); err != nil {
		t.Fatal(err)
	}
	logs := &testenv.Buffer{}
	done := make(chan error, 1)
	p.runSidecar(ctx, logs, done)
	secretHolds := func(want []byte) func() bool {
		return func() bool {
			got, err := p.sink.Read(ctx)
			return err == nil && bytes.Equal(got, want)
		}
	}
	podHolds := func(want []byte) func() bool {
		return func() bool {
			got, err := os.ReadFile(p.file())
			return err == nil && bytes.Equal(got, want)
		}
	}

	v2 := claudeLogin(now.Add(2*time.Hour).UnixMilli(), "v2-pod")
	p.cliWrites(t, v2)
	took := waitFor(t, "the pod's refresh in the Secret", secretHolds(v2))
	t.Logf("pod refresh -> Secret in %s", took)

	v3 := claudeLogin(now.Add(3*time.Hour).UnixMilli(), "v3-host")
	hostWrites(t, ctx, p.sink, v3)
	took = waitFor(t, "the host's refresh in the pod", podHolds(v3))
	t.Logf("Secret -> pod in %s", took)

	// A failed refresh in the pod blanks its login: the Secret keeps v3 and
	// the pod gets v3 back.
	p.cliWrites(t, fixture(t, "claude/credentials.blanked.json"))
	waitFor(t, "the pod's blanked login repaired", podHolds(v3))
	if got, _ := p.sink.Read(ctx); !bytes.Equal(got, v3) {
		t.Fatalf("the Secret holds %q after the pod blanked its login", got)
	}
	// An older login written in the pod is not taken back either.
	p.cliWrites(t, v1)
	waitFor(t, "the pod's older login replaced", podHolds(v3))
	if got, _ := p.sink.Read(ctx); !bytes.Equal(got, v3) {
		t.Fatalf("the Secret holds %q after the pod wrote an older login", got)
	}

	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "FAKE") {
			t.Errorf("a log line shows a token: %q", l)
		}
	}
}

// A Deployment's replicas share one Secret. A pod whose agent writes
// another account's login (or one that claims to live for a year) into its
// directory must not get it into the Secret, where its siblings' sidecars
// would hand it to their CLIs before the host looks: the Secret keeps the
// host's login, the sibling keeps it too, and the pod gets it back.
func TestRunAPodCannotHandItsSiblingsAnotherLogin(t *testing.T) {
	srv := kubetest.Require(t)
	ns := srv.Namespace(t)
	ctx, cancel := context.WithCancel(kubetest.Context(t))
	defer cancel()
	a, b := newPod(t, srv, ns), newPod(t, srv, ns)
	now := time.Now()
	host := claudeLogin(now.Add(time.Hour).UnixMilli(), "host")
	hostWrites(t, ctx, a.sink, host)
	logs := &testenv.Buffer{}
	done := make(chan error, 2)
	for _, p := range []*pod{a, b} {
		if err := agent.Once(ctx, []agent.Login{p.login}, nil); err != nil {
			t.Fatal(err)
		}
		p.runSidecar(ctx, logs, done)
	}
	holds := func(p *pod, want []byte) func() bool {
		return func() bool { got, err := os.ReadFile(p.file()); return err == nil && bytes.Equal(got, want) }
	}
	otherAccount := fmt.Appendf(nil, `{"claudeAiOauth":{"accessToken":"sk-ant-oat01-FAKE-x","refreshToken":"sk-ant-ort01-FAKE-x","expiresAt":%d,"scopes":["user:inference"],"subscriptionType":"pro"}}`, now.Add(2*time.Hour).UnixMilli())
	for _, bad := range [][]byte{otherAccount, claudeLogin(now.Add(365*24*time.Hour).UnixMilli(), "year")} {
		a.cliWrites(t, bad)
		waitFor(t, "the pod's login replaced by the Secret's", holds(a, host))
		if got, _ := a.sink.Read(ctx); !bytes.Equal(got, host) {
			t.Fatalf("the Secret holds %q, want the host's login", got)
		}
		if !holds(b, host)() {
			t.Fatal("the sibling pod's login changed")
		}
	}
	// A genuine refresh in the pod still goes through, to the sibling too.
	refreshed := claudeLogin(now.Add(2*time.Hour).UnixMilli(), "refreshed")
	a.cliWrites(t, refreshed)
	waitFor(t, "the pod's refresh in the sibling pod", holds(b, refreshed))

	cancel()
	for range 2 {
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
	said := logs.String()
	if !strings.Contains(said, "another account") || !strings.Contains(said, "not taken back") {
		t.Errorf("the sidecar did not say why it refused the pod's login:\n%s", said)
	}
	if strings.Contains(said, "FAKE") {
		t.Errorf("a log line shows a token:\n%s", said)
	}
}
