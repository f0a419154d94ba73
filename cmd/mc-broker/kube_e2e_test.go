package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mc-broker/mc-broker/broker/kinds/claude"

	"go.yaml.in/yaml/v3"

	"github.com/mc-broker/mc-broker/sinks/secret/kube"
	"github.com/mc-broker/mc-broker/sinks/secret/kubetest"
)

// kubeWorld is a host with a Claude login and a config whose copy is a
// Secret in a namespace of a real API server, and pods (directories
// standing in for their emptyDirs) whose agents run as the real binary
// with the token of the service account kube manifest creates.
type kubeWorld struct {
	*world
	srv    *kubetest.Server
	ns     string
	podKC  string // kubeconfig with the pod service account's token
	secret string // NAMESPACE/NAME
}

func newKubeWorld(t *testing.T) *kubeWorld {
	t.Helper()
	srv := kubetest.New(t)
	ns := srv.Namespace(t)
	root := t.TempDir()
	w := &world{t: t, kind: claude.Kind, root: root, home: filepath.Join(root, "home")}
	w.source = filepath.Join(w.home, ".claude", ".credentials.json")
	w.state = filepath.Join(w.home, ".local", "state", "mc-broker")
	w.config = filepath.Join(root, "config.yaml")
	k := &kubeWorld{world: w, srv: srv, ns: ns, secret: ns + "/logins"}
	writeFile(t, w.config, []byte(fmt.Sprintf("sources:\n  claude: {}\nsinks:\n  - {source: claude, secret: %s, kubeconfig: %s}\n", k.secret, srv.Kubeconfig)))
	return k
}

// kubeBase is generation 0's expiry: a few hours ahead, as real logins
// expire, so that a pod's refresh is one the host takes back.
var kubeBase = time.Now().Add(2 * time.Hour).UnixMilli()

// claudeGen is a Claude login of generation gen (later is newer), with the
// host's MCP server tokens when mcp is set.
func claudeGen(gen int, mcp bool) []byte {
	out := fmt.Sprintf(`{"claudeAiOauth":{"accessToken":"sk-ant-oat01-FAKE-%d","refreshToken":"sk-ant-ort01-FAKE-%d","expiresAt":%d,"scopes":["user:inference"],"subscriptionType":"max"}`,
		gen, gen, kubeBase+int64(gen)*60_000)
	if mcp {
		out += `,"mcpOAuth":{"srv|1":{"serverName":"srv","accessToken":"FAKE-MCP"}}`
	}
	return []byte(out + "}")
}

func (k *kubeWorld) secretHolds() []byte {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := k.srv.Admin().GetSecret(ctx, k.ns, "logins")
	if err != nil {
		return nil
	}
	return s.Data[".credentials.json"]
}

// applyRBAC writes the manifest with the real binary and applies its
// ServiceAccount, Role and RoleBinding; it returns a kubeconfig holding
// that account's token, as a pod's projected token would.
func (k *kubeWorld) applyRBAC() {
	t := k.t
	t.Helper()
	manifest := filepath.Join(k.root, "manifest.yaml")
	if _, errOut, code := k.run("kube", "manifest", "deployment/agents", "--config", k.config, "--cli", "claude", "--image", "img", "-o", manifest); code != 0 {
		t.Fatalf("kube manifest: exit %d: %s", code, errOut)
	}
	data, err := os.ReadFile(manifest)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc map[string]any
		if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if doc["kind"] == "Deployment" {
			continue // no such workload here; the manifest tests check it
		}
		obj, _ := json.Marshal(doc)
		if _, err := k.srv.Admin().Apply(ctx, obj, kube.ApplyOptions{FieldManager: "mc-broker"}); err != nil {
			t.Fatalf("apply %s: %v", doc["kind"], err)
		}
	}
	token, err := k.srv.ServiceAccountToken(ctx, k.ns, "agents-mc-broker")
	if err != nil {
		t.Fatal(err)
	}
	k.podKC = filepath.Join(k.root, "pod-kubeconfig")
	if err := k.srv.WriteKubeconfig(k.podKC, token); err != nil {
		t.Fatal(err)
	}
}

// pod makes a pod's directory and runs its init step.
func (k *kubeWorld) pod(name string) string {
	k.t.Helper()
	dir := filepath.Join(k.root, "pods", name, ".claude")
	if err := os.MkdirAll(dir, 0o777); err != nil {
		k.t.Fatal(err)
	}
	if _, errOut, code := k.run(k.agentArgs(dir, true)...); code != 0 {
		k.t.Fatalf("agent --once in %s: exit %d: %s", name, code, errOut)
	}
	return dir
}

func (k *kubeWorld) agentArgs(dir string, once bool) []string {
	args := []string{"agent", "--secret", k.secret, "--cli", "claude=" + dir, "--kubeconfig", k.podKC, "--lock-dir", filepath.Join(k.root, "locks", filepath.Base(filepath.Dir(dir)))}
	if once {
		args = append(args, "--once")
	}
	return args
}

// sidecar starts the pod's agent and returns once it watches both sides.
func (k *kubeWorld) sidecar(dir string) *proc {
	k.t.Helper()
	p := k.start(k.agentArgs(dir, false)...)
	waitFor(k.t, 20*time.Second, "the sidecar to watch", func() (bool, string) {
		select {
		case <-p.done:
			k.t.Fatalf("the sidecar exited %d: %s", p.code, p.log.String())
		default:
		}
		return strings.Contains(p.log.String(), "watching 1 login(s)"), p.log.String()
	})
	return p
}

func holds(path string, want []byte) func() (bool, string) {
	return func() (bool, string) {
		got := read(path)
		return bytes.Equal(got, want), fmt.Sprintf("%s holds %d bytes", path, len(got))
	}
}

// A pod's refresh reaches the Secret, the other pod and the host; the host's
// login reaches the pods; nothing broken or older moves; and the pods'
// service account can touch that one Secret only.
func TestKubeSecretEndToEnd(t *testing.T) {
	k := newKubeWorld(t)
	writeFile(t, k.source, claudeGen(1, true))

	// The host fills the Secret: the copy, without the host's MCP tokens.
	out, errOut, code := k.run("sync", "--config", k.config)
	if code != 0 || !strings.Contains(out, "secret "+k.secret+":.credentials.json") {
		t.Fatalf("sync: exit %d\n%s%s", code, out, errOut)
	}
	if got := k.secretHolds(); !bytes.Equal(got, claudeGen(1, false)) {
		t.Fatalf("the Secret holds %d bytes, want the host's login without mcpOAuth", len(got))
	}
	k.applyRBAC()

	// Two pods start: the init step fills each directory.
	a, b := k.pod("a"), k.pod("b")
	for _, d := range []string{a, b} {
		if got := read(filepath.Join(d, ".credentials.json")); !bytes.Equal(got, claudeGen(1, false)) {
			t.Fatalf("%s after the init step: %d bytes", d, len(got))
		}
		if _, err := os.Stat(filepath.Join(d, ".claude.json")); err != nil {
			t.Errorf("no onboarding companion in %s", d)
		}
	}
	k.sidecar(a)
	k.sidecar(b)
	// No polling: the watcher follows the Secret through the API's watch.
	watcher := k.watch("--poll-interval", "1h")

	// Claude Code in pod a refreshes.
	k.replace(filepath.Join(a, ".credentials.json"), claudeGen(2, false))
	took := waitFor(t, 20*time.Second, "pod a's refresh in the Secret", func() (bool, string) {
		return bytes.Equal(k.secretHolds(), claudeGen(2, false)), "not yet"
	})
	t.Logf("pod a's refresh reached the Secret in %s", took)
	waitFor(t, 20*time.Second, "pod a's refresh in pod b", holds(filepath.Join(b, ".credentials.json"), claudeGen(2, false)))
	// The host takes it back, keeping its own MCP tokens.
	took = waitFor(t, 20*time.Second, "pod a's refresh on the host", holds(k.source, claudeGen(2, true)))
	t.Logf("pod a's refresh reached the host in %s more", took)

	// The host refreshes: both pods get it.
	k.replace(k.source, claudeGen(3, true))
	waitFor(t, 20*time.Second, "the host's refresh in pod a", holds(filepath.Join(a, ".credentials.json"), claudeGen(3, false)))
	waitFor(t, 20*time.Second, "the host's refresh in pod b", holds(filepath.Join(b, ".credentials.json"), claudeGen(3, false)))

	// Pod b's refresh fails and blanks its login; pod a writes an old one:
	// neither reaches the Secret or the host, and both pods are repaired.
	blanked, err := os.ReadFile(filepath.Join(fixturesDir(t), "claude", "credentials.blanked.json"))
	if err != nil {
		t.Fatal(err)
	}
	k.replace(filepath.Join(b, ".credentials.json"), blanked)
	k.replace(filepath.Join(a, ".credentials.json"), claudeGen(1, false))
	waitFor(t, 20*time.Second, "pod b repaired", holds(filepath.Join(b, ".credentials.json"), claudeGen(3, false)))
	waitFor(t, 20*time.Second, "pod a's old login replaced", holds(filepath.Join(a, ".credentials.json"), claudeGen(3, false)))
	if got := k.secretHolds(); !bytes.Equal(got, claudeGen(3, false)) {
		t.Errorf("the Secret holds %d bytes after a blanked and an old pod login", len(got))
	}
	if got := read(k.source); !bytes.Equal(got, claudeGen(3, true)) {
		t.Errorf("the host holds %d bytes after a blanked and an old pod login", len(got))
	}
	_ = watcher

	// The pods' account reaches that one Secret only.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := k.srv.Admin().CreateSecret(ctx, &kube.Secret{Namespace: k.ns, Name: "other", Data: map[string][]byte{".credentials.json": claudeGen(9, false)}}); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(k.root, "pods", "c", ".claude")
	if err := os.MkdirAll(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	args := k.agentArgs(dir, true)
	args[2] = k.ns + "/other"
	_, errOut, code = k.run(args...)
	if code != 1 || !strings.Contains(errOut, "403") || !strings.Contains(errOut, "forbidden") {
		t.Errorf("agent on another Secret: exit %d, %q; want 1 and forbidden", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(dir, ".credentials.json")); err == nil {
		t.Error("a login from another Secret reached the pod")
	}
}

// The init step fails (exit 3) when the Secret holds no login yet, so the
// pod waits for the host instead of starting a logged-out CLI.
func TestKubeAgentOnceWithoutALoginExits3(t *testing.T) {
	k := newKubeWorld(t)
	k.applyRBAC()
	dir := filepath.Join(k.root, "pods", "a", ".claude")
	if err := os.MkdirAll(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	_, errOut, code := k.run(k.agentArgs(dir, true)...)
	if code != 3 || !strings.Contains(errOut, "mc-broker sync") {
		t.Errorf("exit %d, %q; want 3 and a hint to sync on the host", code, errOut)
	}
}
