package secret_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mc-broker/mc-broker/broker"
	"github.com/mc-broker/mc-broker/sinks/secret"
	"github.com/mc-broker/mc-broker/sinks/secret/kube"
	"github.com/mc-broker/mc-broker/sinks/secret/kubetest"
)

func TestMain(m *testing.M) { os.Exit(kubetest.Main(m)) }

// newSink is a Secret copy reaching the test server through its admin
// kubeconfig, as a config's kubeconfig: key would.
func newSink(srv *kubetest.Server, ns, name, key string, adopt bool) *secret.Sink {
	return secret.New(secret.Options{
		Namespace: ns, Name: name, Key: key,
		Kubeconfig: srv.Kubeconfig,
		Adopt:      adopt,
		Owner:      "test-host",
		Clients:    secret.NewClients(func(string) string { return "" }, ""),
	})
}

// put is a decide that writes data whatever is there.
func put(data string) broker.Decide {
	return func([]byte, bool) ([]byte, bool) { return []byte(data), true }
}

func TestUpdateCreatesALabelledSecret(t *testing.T) {
	srv := kubetest.Require(t)
	ns := srv.Namespace(t)
	s := newSink(srv, ns, "logins", ".credentials.json", false)
	ctx := kubetest.Context(t)

	if _, err := s.Read(ctx); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Read of a missing Secret: %v, want fs.ErrNotExist", err)
	}
	var sawExists bool
	err := s.Update(ctx, func(cur []byte, exists bool) ([]byte, bool) {
		sawExists = exists
		return []byte("login-1"), true
	})
	if err != nil {
		t.Fatal(err)
	}
	if sawExists {
		t.Error("decide was told a missing Secret exists")
	}
	got, err := s.Read(ctx)
	if err != nil || string(got) != "login-1" {
		t.Fatalf("Read after Update: %q, %v", got, err)
	}
	sec, err := srv.Admin().GetSecret(ctx, ns, "logins")
	if err != nil {
		t.Fatal(err)
	}
	if sec.Labels[secret.LabelManaged] != "true" || sec.Labels[secret.LabelOwner] != "test-host" {
		t.Errorf("labels %v, want %s=true and %s=test-host", sec.Labels, secret.LabelManaged, secret.LabelOwner)
	}
	if s.Location() != "secret "+ns+"/logins:.credentials.json" {
		t.Errorf("Location %q", s.Location())
	}
}

func TestUpdateDeclinedWritesNothing(t *testing.T) {
	srv := kubetest.Require(t)
	ns := srv.Namespace(t)
	s := newSink(srv, ns, "logins", "auth.json", false)
	ctx := kubetest.Context(t)
	if err := s.Update(ctx, func([]byte, bool) ([]byte, bool) { return nil, false }); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Admin().GetSecret(ctx, ns, "logins"); !kube.IsNotFound(err) {
		t.Errorf("a declined write created the Secret: %v", err)
	}
}

func TestKeysShareASecretAndKeepEachOther(t *testing.T) {
	srv := kubetest.Require(t)
	ns := srv.Namespace(t)
	ctx := kubetest.Context(t)
	claude := newSink(srv, ns, "logins", ".credentials.json", false)
	codex := newSink(srv, ns, "logins", "auth.json", false)
	if err := claude.Update(ctx, put("claude-1")); err != nil {
		t.Fatal(err)
	}
	if err := codex.Update(ctx, put("codex-1")); err != nil {
		t.Fatal(err)
	}
	if err := claude.Update(ctx, put("claude-2")); err != nil {
		t.Fatal(err)
	}
	sec, _ := srv.Admin().GetSecret(ctx, ns, "logins")
	if string(sec.Data[".credentials.json"]) != "claude-2" || string(sec.Data["auth.json"]) != "codex-1" {
		t.Errorf("data %q / %q, want claude-2 / codex-1", sec.Data[".credentials.json"], sec.Data["auth.json"])
	}
}

// A write that races another writer reads again and decides again: the
// other writer's change survives and decide sees it.
func TestUpdateAfterAConflictDecidesAgainOnFreshContent(t *testing.T) {
	srv := kubetest.Require(t)
	ns := srv.Namespace(t)
	ctx := kubetest.Context(t)
	admin := srv.Admin()
	s := newSink(srv, ns, "logins", "k", false)
	if err := s.Update(ctx, put("v1")); err != nil {
		t.Fatal(err)
	}
	var seen []string
	err := s.Update(ctx, func(cur []byte, exists bool) ([]byte, bool) {
		seen = append(seen, string(cur))
		if len(seen) == 1 {
			// Another writer (a pod's sidecar) gets in between this
			// read and the write.
			sec, err := admin.GetSecret(ctx, ns, "logins")
			if err != nil {
				t.Fatal(err)
			}
			sec.Data["k"] = []byte("pod-refresh")
			sec.Data["other"] = []byte("x")
			if _, err := admin.UpdateSecret(ctx, sec); err != nil {
				t.Fatal(err)
			}
		}
		return append(cur, "+host"...), true
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != 2 || seen[0] != "v1" || seen[1] != "pod-refresh" {
		t.Fatalf("decide saw %q, want v1 then (after the conflict) pod-refresh", seen)
	}
	sec, _ := admin.GetSecret(ctx, ns, "logins")
	if string(sec.Data["k"]) != "pod-refresh+host" || string(sec.Data["other"]) != "x" {
		t.Errorf("after the retried write: k=%q other=%q", sec.Data["k"], sec.Data["other"])
	}
}

// Writers hammering one key through read-modify-write lose no update.
func TestConcurrentWritersLoseNoUpdate(t *testing.T) {
	srv := kubetest.Require(t)
	ns := srv.Namespace(t)
	ctx := kubetest.Context(t)
	const writers, each = 4, 5
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := 0; w < writers; w++ {
		s := newSink(srv, ns, "counter", "n", false)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				errs <- s.Update(ctx, func(cur []byte, exists bool) ([]byte, bool) {
					n, _ := strconv.Atoi(string(cur))
					return []byte(strconv.Itoa(n + 1)), true
				})
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	got, err := newSink(srv, ns, "counter", "n", false).Read(ctx)
	if err != nil || string(got) != strconv.Itoa(writers*each) {
		t.Fatalf("counter %q (%v), want %d: an update was lost", got, err, writers*each)
	}
}

func TestSomebodyElsesSecretIsRefusedUnlessAdopted(t *testing.T) {
	srv := kubetest.Require(t)
	ns := srv.Namespace(t)
	ctx := kubetest.Context(t)
	admin := srv.Admin()
	if _, err := admin.CreateSecret(ctx, &kube.Secret{Namespace: ns, Name: "app", Data: map[string][]byte{"db-password": []byte("FAKE-db")}}); err != nil {
		t.Fatal(err)
	}
	s := newSink(srv, ns, "app", ".credentials.json", false)
	err := s.Update(ctx, put("login"))
	var fe *secret.ForeignError
	if !errors.As(err, &fe) {
		t.Fatalf("writing into an unlabelled Secret with other keys: %v, want a ForeignError", err)
	}
	var se *secret.Error
	if !errors.As(err, &se) || !strings.Contains(se.Hint(), "adopt: true") || !strings.Contains(err.Error(), "db-password") {
		t.Errorf("error %q / hint %q should name the other keys and adopt: true", err, se.Hint())
	}
	sec, _ := admin.GetSecret(ctx, ns, "app")
	if _, ok := sec.Data[".credentials.json"]; ok || len(sec.Labels) != 0 {
		t.Fatalf("the refused Secret was changed: %v %v", sec.Labels, sec.Data)
	}

	if err := newSink(srv, ns, "app", ".credentials.json", true).Update(ctx, put("login")); err != nil {
		t.Fatalf("adopted: %v", err)
	}
	sec, _ = admin.GetSecret(ctx, ns, "app")
	if string(sec.Data[".credentials.json"]) != "login" || string(sec.Data["db-password"]) != "FAKE-db" || sec.Labels[secret.LabelManaged] != "true" {
		t.Errorf("after adopting: labels %v, keys %d", sec.Labels, len(sec.Data))
	}
}

func TestUnlabelledSecretHoldingOnlyTheLoginIsTakenOver(t *testing.T) {
	srv := kubetest.Require(t)
	ns := srv.Namespace(t)
	ctx := kubetest.Context(t)
	// kubectl create secret generic logins --from-file=.credentials.json
	if _, err := srv.Admin().CreateSecret(ctx, &kube.Secret{Namespace: ns, Name: "logins", Data: map[string][]byte{".credentials.json": []byte("old")}}); err != nil {
		t.Fatal(err)
	}
	if err := newSink(srv, ns, "logins", ".credentials.json", false).Update(ctx, put("new")); err != nil {
		t.Fatal(err)
	}
	sec, _ := srv.Admin().GetSecret(ctx, ns, "logins")
	if string(sec.Data[".credentials.json"]) != "new" || sec.Labels[secret.LabelManaged] != "true" {
		t.Errorf("data %q labels %v", sec.Data[".credentials.json"], sec.Labels)
	}
}

func TestReadOfAMissingKeyIsNotExist(t *testing.T) {
	srv := kubetest.Require(t)
	ns := srv.Namespace(t)
	ctx := kubetest.Context(t)
	if err := newSink(srv, ns, "logins", "auth.json", false).Update(ctx, put("codex")); err != nil {
		t.Fatal(err)
	}
	_, err := newSink(srv, ns, "logins", ".credentials.json", false).Read(ctx)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Read of a key the Secret lacks: %v, want fs.ErrNotExist", err)
	}
}

// A user without rights on the Secret gets an error that names the copy
// and says which rights are missing, without quoting the token.
func TestForbiddenSaysWhichRights(t *testing.T) {
	srv := kubetest.Require(t)
	ns := srv.Namespace(t)
	ctx := kubetest.Context(t)
	token, err := srv.ServiceAccountToken(ctx, ns, "nobody")
	if err != nil {
		t.Fatal(err)
	}
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	if err := srv.WriteKubeconfig(kc, token); err != nil {
		t.Fatal(err)
	}
	s := secret.New(secret.Options{Namespace: ns, Name: "logins", Key: "auth.json", Kubeconfig: kc,
		Clients: secret.NewClients(func(string) string { return "" }, "")})
	err = s.Update(ctx, put("x"))
	var se *secret.Error
	if !kube.IsForbidden(err) || !errors.As(err, &se) {
		t.Fatalf("Update without rights: %v, want forbidden", err)
	}
	if !strings.Contains(err.Error(), "secret "+ns+"/logins:auth.json") || !strings.Contains(se.Hint(), "get, create, update and watch") {
		t.Errorf("error %q, hint %q", err, se.Hint())
	}
	if strings.Contains(err.Error(), token) {
		t.Error("the error quotes the token")
	}
}

func TestBadNamesAreRefusedBeforeAnyRequest(t *testing.T) {
	for _, tc := range []struct{ ns, name, key, want string }{
		{"Agents", "logins", "k", "namespace"},
		{"agents", "logins_1", "k", "Secret name"},
		{"agents", "logins", "a/b", "key"},
	} {
		if err := secret.CheckNames(tc.ns, tc.name, tc.key); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("CheckNames(%q, %q, %q) = %v, want an error about the %s", tc.ns, tc.name, tc.key, err, tc.want)
		}
	}
	if err := secret.CheckNames("agents", "mc-broker.logins", ".credentials.json"); err != nil {
		t.Errorf("valid names refused: %v", err)
	}
}

func recv(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case _, ok := <-ch:
		if !ok {
			t.Fatalf("%s: channel closed", what)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("%s: no change signalled", what)
	}
}

func TestChangesFollowTheKeyThroughTheAPIWatch(t *testing.T) {
	srv := kubetest.Require(t)
	ns := srv.Namespace(t)
	ctx, cancel := context.WithCancel(kubetest.Context(t))
	s := newSink(srv, ns, "logins", "k", false)
	var errMu sync.Mutex
	var watchErrs []error
	ch := s.Changes(ctx, func(err error) {
		errMu.Lock()
		watchErrs = append(watchErrs, err)
		errMu.Unlock()
	})
	recv(t, ch, "start")

	other := newSink(srv, ns, "logins", "other", false)
	if err := s.Update(ctx, put("v1")); err != nil {
		t.Fatal(err)
	}
	recv(t, ch, "created")
	if err := s.Update(ctx, put("v2")); err != nil {
		t.Fatal(err)
	}
	recv(t, ch, "updated")
	// Another key of the same Secret is not this copy's change. There is no
	// event to wait for when nothing is signalled: give the watch a moment.
	if err := other.Update(ctx, put("o1")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
		t.Fatal("a change to another key was signalled")
	case <-time.After(500 * time.Millisecond):
	}
	if _, err := srv.Admin().Do(ctx, kube.Request{Method: http.MethodDelete, Path: fmt.Sprintf("/api/v1/namespaces/%s/secrets/logins", ns)}); err != nil {
		t.Fatal(err)
	}
	recv(t, ch, "deleted")
	cancel()
	for range ch {
	}
	errMu.Lock()
	defer errMu.Unlock()
	if len(watchErrs) > 0 {
		t.Errorf("watch errors: %v", watchErrs)
	}
}

// Changed (for a watcher that polls) reports what the API watch saw and
// sends no request of its own.
func TestChangedReportsWhatTheWatchSaw(t *testing.T) {
	srv := kubetest.Require(t)
	ns := srv.Namespace(t)
	ctx := kubetest.Context(t)
	s := newSink(srv, ns, "logins", "k", false)
	defer s.Close()
	waitChanged := func(what string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			changed, err := s.Changed(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if changed {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: Changed never reported true", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitChanged("first call")
	if err := s.Update(ctx, put("v1")); err != nil {
		t.Fatal(err)
	}
	waitChanged("after a write")
	if changed, _ := s.Changed(ctx); changed {
		t.Error("Changed reports a change twice")
	}
}

// TestErase: revoke takes the login's key out of the Secret and keeps the
// Secret and its other keys; a missing key is nothing to do.
func TestErase(t *testing.T) {
	srv := kubetest.Require(t)
	ns := srv.Namespace(t)
	ctx := kubetest.Context(t)
	claude := newSink(srv, ns, "logins", ".credentials.json", false)
	codex := newSink(srv, ns, "logins", "auth.json", false)
	for _, s := range []*secret.Sink{claude, codex} {
		if err := s.Update(ctx, put("login of "+s.Location())); err != nil {
			t.Fatal(err)
		}
	}
	var saw []byte
	erased, err := claude.Erase(ctx, func(cur []byte) bool { saw = cur; return true })
	if !erased || err != nil || !strings.Contains(string(saw), ".credentials.json") {
		t.Fatalf("erased %v, %v, saw %q", erased, err, saw)
	}
	if _, err := claude.Read(ctx); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the key is still there: %v", err)
	}
	if got, err := codex.Read(ctx); err != nil || !strings.Contains(string(got), "auth.json") {
		t.Errorf("the other key: %q, %v", got, err)
	}
	if erased, err := claude.Erase(ctx, func([]byte) bool { return true }); erased || err != nil {
		t.Errorf("erasing again: %v, %v", erased, err)
	}
	if erased, err := codex.Erase(ctx, func([]byte) bool { return false }); erased || err != nil {
		t.Errorf("declined: %v, %v", erased, err)
	}
}
