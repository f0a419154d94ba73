package kube_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mc-broker/mc-broker/sinks/secret/kube"
	"github.com/mc-broker/mc-broker/sinks/secret/kubetest"
)

func TestMain(m *testing.M) { os.Exit(kubetest.Main(m)) }

func TestUpdateKeepsWhatItDoesNotKnow(t *testing.T) {
	srv := kubetest.Require(t)
	ns := srv.Namespace(t)
	c := srv.Admin()
	ctx := kubetest.Context(t)
	obj := fmt.Sprintf(`{"apiVersion":"v1","kind":"Secret","type":"example.com/login",
		"metadata":{"name":"s","namespace":%q,"annotations":{"team":"agents"},"finalizers":["example.com/keep"]},
		"data":{"other":"b3RoZXI="}}`, ns)
	if _, err := c.Create(ctx, []byte(obj), false); err != nil {
		t.Fatal(err)
	}
	sec, err := c.GetSecret(ctx, ns, "s")
	if err != nil {
		t.Fatal(err)
	}
	sec.Data["login"] = []byte("new")
	sec.Labels = map[string]string{"org.mc-broker.managed": "true"}
	if _, err := c.UpdateSecret(ctx, sec); err != nil {
		t.Fatal(err)
	}
	raw, err := c.Do(ctx, kube.Request{Method: http.MethodGet, Path: "/api/v1/namespaces/" + ns + "/secrets/s"})
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Type     string `json:"type"`
		Metadata struct {
			Annotations map[string]string `json:"annotations"`
			Finalizers  []string          `json:"finalizers"`
			Labels      map[string]string `json:"labels"`
		} `json:"metadata"`
		Data map[string][]byte `json:"data"`
	}
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	if got.Type != "example.com/login" || got.Metadata.Annotations["team"] != "agents" || len(got.Metadata.Finalizers) != 1 {
		t.Errorf("the update dropped what mc-broker does not use: %s", raw)
	}
	if string(got.Data["other"]) != "other" || string(got.Data["login"]) != "new" || got.Metadata.Labels["org.mc-broker.managed"] != "true" {
		t.Errorf("data or labels not as written: %s", raw)
	}
}

func TestUpdateOfAStaleReadIsAConflict(t *testing.T) {
	srv := kubetest.Require(t)
	ns := srv.Namespace(t)
	c := srv.Admin()
	ctx := kubetest.Context(t)
	if _, err := c.CreateSecret(ctx, &kube.Secret{Namespace: ns, Name: "s", Data: map[string][]byte{"k": []byte("1")}}); err != nil {
		t.Fatal(err)
	}
	a, _ := c.GetSecret(ctx, ns, "s")
	b, _ := c.GetSecret(ctx, ns, "s")
	a.Data["k"] = []byte("2")
	if _, err := c.UpdateSecret(ctx, a); err != nil {
		t.Fatal(err)
	}
	b.Data["k"] = []byte("3")
	_, err := c.UpdateSecret(ctx, b)
	if !kube.IsConflict(err) {
		t.Fatalf("a write based on a stale read: %v, want a conflict", err)
	}
	got, _ := c.GetSecret(ctx, ns, "s")
	if string(got.Data["k"]) != "2" {
		t.Errorf("the stale write landed: %q", got.Data["k"])
	}
	if _, err := c.CreateSecret(ctx, &kube.Secret{Namespace: ns, Name: "s"}); !kube.IsAlreadyExists(err) || kube.IsConflict(err) {
		t.Errorf("creating an existing Secret: %v, want AlreadyExists (and not a conflict)", err)
	}
	if _, err := c.GetSecret(ctx, ns, "missing"); !kube.IsNotFound(err) {
		t.Errorf("a missing Secret: %v", err)
	}
}

func TestWatchSecretSeesEveryChange(t *testing.T) {
	srv := kubetest.Require(t)
	ns := srv.Namespace(t)
	c := srv.Admin()
	ctx, cancel := context.WithCancel(kubetest.Context(t))
	defer cancel()
	events := make(chan kube.SecretEvent, 16)
	done := make(chan error, 1)
	go func() {
		done <- c.WatchSecret(ctx, ns, "w", "", func(ev kube.SecretEvent) error {
			if ev.Type != kube.Bookmark {
				events <- ev
			}
			return nil
		})
	}()
	next := func(want kube.EventType, value string) {
		t.Helper()
		select {
		case ev := <-events:
			if ev.Type != want || (value != "" && string(ev.Secret.Data["k"]) != value) {
				t.Fatalf("event %s %q, want %s %q", ev.Type, ev.Secret.Data["k"], want, value)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("no %s event", want)
		}
	}
	// The watch may start after the create: either way the Secret's state
	// arrives as ADDED.
	created, err := c.CreateSecret(ctx, &kube.Secret{Namespace: ns, Name: "w", Data: map[string][]byte{"k": []byte("v1")}})
	if err != nil {
		t.Fatal(err)
	}
	next(kube.Added, "v1")
	created.Data["k"] = []byte("v2")
	if _, err := c.UpdateSecret(ctx, created); err != nil {
		t.Fatal(err)
	}
	next(kube.Modified, "v2")
	if _, err := c.Do(ctx, kube.Request{Method: http.MethodDelete, Path: "/api/v1/namespaces/" + ns + "/secrets/w"}); err != nil {
		t.Fatal(err)
	}
	next(kube.Deleted, "")
	cancel()
	if err := <-done; err != context.Canceled {
		t.Errorf("watch ended with %v, want context.Canceled", err)
	}
}

// An exec credential plugin (how EKS, GKE and AKS authenticate) is run for
// a token, and run again when the server refuses the token it gave.
func TestExecPluginTokenRenewedAfterRefusal(t *testing.T) {
	srv := kubetest.Require(t)
	dir := t.TempDir()
	count := filepath.Join(dir, "count")
	plugin := write(t, filepath.Join(dir, "plugin.sh"), `#!/bin/sh
echo x >> "`+count+`"
if [ "$(wc -l < "`+count+`")" -eq 1 ]; then tok=expired-token; else tok=`+srv.AdminToken()+`; fi
case "$KUBERNETES_EXEC_INFO" in *ExecCredential*) ;; *) echo "no exec info" >&2; exit 1;; esac
printf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"%s"}}' "$tok"
`)
	if err := os.Chmod(plugin, 0o755); err != nil {
		t.Fatal(err)
	}
	kc := write(t, filepath.Join(dir, "kubeconfig"), fmt.Sprintf(`current-context: x
clusters: [{name: c, cluster: {server: %q, certificate-authority: %q}}]
users: [{name: u, user: {exec: {apiVersion: client.authentication.k8s.io/v1, command: ./plugin.sh}}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
`, srv.URL, filepath.Join(srv.Dir, "ca.crt")))
	cfg, err := kube.Load(kube.LoadOptions{Kubeconfig: kc, Getenv: env(nil)})
	if err != nil {
		t.Fatal(err)
	}
	c, err := kube.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.GetSecret(kubetest.Context(t), "default", "none"); !kube.IsNotFound(err) {
		t.Fatalf("GET with the plugin's token: %v, want not found (authenticated)", err)
	}
	runs, _ := os.ReadFile(count)
	if n := strings.Count(string(runs), "x"); n != 2 {
		t.Errorf("plugin ran %d times, want 2 (refused token, then a new one)", n)
	}
}

// A watch stream whose one event never ends (a broken server, or anything
// between the watcher and it) fails the watch once the event is past what
// any response may be, instead of being buffered without bound; the
// caller watches again with backoff.
func TestWatchSecretBoundsOneEvent(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"type":"MODIFIED","object":{"data":{"x":"`)
		chunk := strings.Repeat("A", 64<<10)
		for range (kube.MaxResponse / len(chunk)) * 4 {
			if _, err := io.WriteString(w, chunk); err != nil {
				return
			}
		}
	}))
	defer srv.Close()
	c, err := kube.NewClient(&kube.Config{Server: srv.URL, Token: "FAKE-TOKEN"})
	if err != nil {
		t.Fatal(err)
	}
	events := 0
	err = c.WatchSecret(context.Background(), "ns", "logins", "", func(kube.SecretEvent) error { events++; return nil })
	if err == nil || !strings.Contains(err.Error(), "watch event of more than") || events != 0 {
		t.Fatalf("WatchSecret over an endless event: %v (%d events), want it to fail on the event's size", err, events)
	}
}
