package pod_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/mc-broker/mc-broker/launch/pod"
	"github.com/mc-broker/mc-broker/sinks/secret/kube"
	"github.com/mc-broker/mc-broker/sinks/secret/kubetest"
)

func TestMain(m *testing.M) { os.Exit(kubetest.Main(m)) }

func spec(ns string) pod.Spec {
	uid, gid := int64(1000), int64(1000)
	return pod.Spec{
		Workload:  "deployment/agents",
		Namespace: ns,
		Secret:    "logins",
		Container: "cli",
		Logins:    []pod.Login{{CLI: "codex"}, {CLI: "claude", Key: "work-claude.json"}},
		Image:     "registry.example/agents:1.4",
		Binary:    "/usr/local/bin/mc-broker",
		Home:      "/home/node",
		UID:       &uid,
		GID:       &gid,
	}
}

func TestGenerateIsDeterministicAndSaysHowToApply(t *testing.T) {
	a, err := pod.Generate(spec("agents"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pod.Generate(spec("agents"))
	if !bytes.Equal(a, b) {
		t.Error("two runs give different manifests")
	}
	text := string(a)
	for _, want := range []string{
		pod.Marker + "\n",
		"kubectl apply --server-side --field-manager=mc-broker",
		"- /usr/local/bin/mc-broker\n",
		"- claude/work-claude.json=/home/node/.claude\n",
		"- codex=/home/node/.codex\n",
		"resourceNames: [logins]\n",
		"verbs: [get, update, watch]\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("manifest lacks %q:\n%s", want, text)
		}
	}
	if !strings.HasPrefix(text, pod.Marker+"\n") {
		t.Error("the marker is not the first line: -o could not recognise its own file")
	}
}

func TestSpecErrorsSayWhatToChange(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*pod.Spec)
		want   string
	}{
		{"no kind", func(s *pod.Spec) { s.Workload = "agents" }, "KIND/NAME"},
		{"a job", func(s *pod.Spec) { s.Workload = "job/agents" }, "one of deployment, statefulset, daemonset"},
		{"no image", func(s *pod.Spec) { s.Image = "" }, "--image"},
		{"unknown CLI", func(s *pod.Spec) { s.Logins = []pod.Login{{CLI: "aider"}} }, "unknown CLI"},
		{"a CLI twice", func(s *pod.Spec) { s.Logins = []pod.Login{{CLI: "codex"}, {CLI: "codex"}} }, "named twice"},
		{"our own container", func(s *pod.Spec) { s.Container = "mc-broker-agent" }, "mc-broker's own"},
		{"relative home", func(s *pod.Spec) { s.Home = "home" }, "absolute"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := spec("agents")
			tc.change(&s)
			_, err := pod.Generate(s)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to say %q", err, tc.want)
			}
		})
	}
}

func TestAgentArgRoundTrips(t *testing.T) {
	for _, tc := range []struct{ cli, key, dir, arg string }{
		{"claude", "", "/root/.claude", "claude=/root/.claude"},
		{"claude", ".credentials.json", "/root/.claude", "claude=/root/.claude"},
		{"codex", "work.json", "/home/node/.codex", "codex/work.json=/home/node/.codex"},
	} {
		arg := pod.AgentArg(tc.cli, tc.key, tc.dir)
		if arg != tc.arg {
			t.Errorf("AgentArg(%q, %q, %q) = %q, want %q", tc.cli, tc.key, tc.dir, arg, tc.arg)
		}
		cli, key, dir, err := pod.ParseAgentArg(arg)
		if err != nil || cli != tc.cli || dir != tc.dir || (key != tc.key && tc.key != "") {
			t.Errorf("ParseAgentArg(%q) = %q %q %q %v", arg, cli, key, dir, err)
		}
	}
	for _, bad := range []string{"claude", "aider=/x", "claude=relative", "claude/a:b=/x"} {
		if _, _, _, err := pod.ParseAgentArg(bad); err == nil {
			t.Errorf("ParseAgentArg(%q) accepted", bad)
		}
	}
}

// toJSON renders a manifest document as the API takes it.
func toJSON(t *testing.T, n *yaml.Node) []byte {
	t.Helper()
	var v any
	if err := n.Decode(&v); err != nil {
		t.Fatal(err)
	}
	out, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// The manifest is what the API server accepts: every document passes a
// server-side dry-run apply (validation, admission, the merge into the
// user's own Deployment), and the merged pod template keeps the user's
// container as it was.
func TestManifestPassesTheAPIServersValidation(t *testing.T) {
	srv := kubetest.Require(t)
	ns := srv.Namespace(t)
	c := srv.Admin()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// The user's workload, as they created it.
	user := fmt.Sprintf(`{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"agents","namespace":%q},
		"spec":{"selector":{"matchLabels":{"app":"agents"}},"template":{"metadata":{"labels":{"app":"agents"}},
		"spec":{"containers":[{"name":"cli","image":"registry.example/agents:1.4","args":["sleep","infinity"]}]}}}}`, ns)
	if _, err := c.Create(ctx, []byte(user), false); err != nil {
		t.Fatal(err)
	}
	docs, err := pod.Objects(spec(ns))
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) != 4 {
		t.Fatalf("%d documents, want ServiceAccount, Role, RoleBinding, Deployment", len(docs))
	}
	for _, d := range docs {
		obj := toJSON(t, d)
		if _, err := c.Apply(ctx, obj, kube.ApplyOptions{FieldManager: pod.FieldManager, DryRun: true}); err != nil {
			t.Fatalf("server-side dry-run of %s: %v", obj[:80], err)
		}
	}
	// Nothing was stored by the dry run.
	if _, err := c.Do(ctx, kube.Request{Method: "GET", Path: "/api/v1/namespaces/" + ns + "/serviceaccounts/agents-mc-broker"}); !kube.IsNotFound(err) {
		t.Fatalf("the dry run created the service account: %v", err)
	}
	// Applied for real, as kubectl apply --server-side would.
	var merged []byte
	for _, d := range docs {
		if merged, err = c.Apply(ctx, toJSON(t, d), kube.ApplyOptions{FieldManager: pod.FieldManager}); err != nil {
			t.Fatal(err)
		}
	}
	var dep struct {
		Spec struct {
			Template struct {
				Metadata json.RawMessage `json:"metadata"`
				Spec     struct {
					ServiceAccountName string `json:"serviceAccountName"`
					Containers         []struct {
						Name         string   `json:"name"`
						Image        string   `json:"image"`
						Args         []string `json:"args"`
						VolumeMounts []struct {
							Name, MountPath string
						} `json:"volumeMounts"`
					} `json:"containers"`
					InitContainers []struct {
						Name          string `json:"name"`
						RestartPolicy string `json:"restartPolicy"`
					} `json:"initContainers"`
					Volumes []struct {
						Name string `json:"name"`
					} `json:"volumes"`
				} `json:"spec"`
			} `json:"template"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(merged, &dep); err != nil {
		t.Fatal(err)
	}
	ps := dep.Spec.Template.Spec
	if len(ps.Containers) != 1 || ps.Containers[0].Image != "registry.example/agents:1.4" || len(ps.Containers[0].Args) != 2 || len(ps.Containers[0].VolumeMounts) != 2 {
		t.Errorf("the user's container after the merge: %+v", ps.Containers)
	}
	if len(ps.InitContainers) != 2 || ps.InitContainers[0].Name != "mc-broker-init" || ps.InitContainers[1].RestartPolicy != "Always" {
		t.Errorf("init containers %+v: want mc-broker-init, then the mc-broker-agent sidecar (restartPolicy Always)", ps.InitContainers)
	}
	if ps.ServiceAccountName != "agents-mc-broker" || len(ps.Volumes) != 4 {
		t.Errorf("service account %q, %d volumes", ps.ServiceAccountName, len(ps.Volumes))
	}
	// A pod made from the merged template passes the pod checks and the
	// service account admission (the account exists now).
	var tmpl struct {
		Spec struct {
			Template json.RawMessage `json:"template"`
		} `json:"spec"`
	}
	_ = json.Unmarshal(merged, &tmpl)
	var podObj map[string]any
	_ = json.Unmarshal(tmpl.Spec.Template, &podObj)
	podObj["apiVersion"], podObj["kind"] = "v1", "Pod"
	podObj["metadata"] = map[string]any{"name": "agents-x", "namespace": ns}
	podJSON, _ := json.Marshal(podObj)
	if _, err := c.Create(ctx, podJSON, true); err != nil {
		t.Fatalf("a pod from the merged template: %v", err)
	}
}

// Applied on its own (no such workload yet), the workload document is
// refused rather than creating a half Deployment.
func TestWorkloadDocumentNeedsTheWorkload(t *testing.T) {
	srv := kubetest.Require(t)
	ns := srv.Namespace(t)
	docs, err := pod.Objects(spec(ns))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = srv.Admin().Apply(ctx, toJSON(t, docs[len(docs)-1]), kube.ApplyOptions{FieldManager: pod.FieldManager, DryRun: true})
	if err == nil || !strings.Contains(err.Error(), "selector") {
		t.Fatalf("applying the workload document without the workload: %v, want a refusal about the missing selector", err)
	}
}
