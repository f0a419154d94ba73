package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mc-broker/mc-broker/launch/pod"
)

func TestKubeManifestFlagsReachOptions(t *testing.T) {
	f, _, _ := testFactory(t, nil)
	var got *KubeManifestOptions
	cmd := NewCmdKubeManifest(f, func(o *KubeManifestOptions) error { got = o; return nil })
	cmd.SetArgs([]string{"statefulset/a", "--cli", "claude,codex", "--image", "img", "--binary", "/mc-broker",
		"--secret", "ns/s", "-n", "ns", "--container", "cli", "--home", "/home/node", "--uid", "1000",
		"--service-account", "sa", "-o", "out.yaml", "--force", "--config", "c.yaml"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if got.Workload != "statefulset/a" || strings.Join(got.CLIs, " ") != "claude codex" || got.Image != "img" ||
		got.Binary != "/mc-broker" || got.Secret != "ns/s" || got.Namespace != "ns" || got.Container != "cli" ||
		got.Home != "/home/node" || !got.uidSet || got.UID != 1000 || got.gidSet || got.ServiceAccount != "sa" ||
		got.Output != "out.yaml" || !got.Force || got.ConfigFile != "c.yaml" {
		t.Errorf("options %+v", got)
	}
}

func TestKubeManifestUsageErrors(t *testing.T) {
	dir := t.TempDir()
	twoSecrets := filepath.Join(dir, "two.yaml")
	writeTestFile(t, twoSecrets, "sources:\n  claude: {}\n  codex: {}\nsinks:\n  - {source: claude, secret: a/one}\n  - {source: codex, secret: a/two}\n")
	noSecret := filepath.Join(dir, "none.yaml")
	writeTestFile(t, noSecret, "sources:\n  claude: {}\nsinks:\n  - {source: claude, dir: /x}\n")
	base := []string{"kube", "manifest", "deployment/agents", "--image", "img"}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"kube", "manifest", "--cli", "claude"}, "name the workload"},
		{append(base, "--secret", "a/s"), "name the CLIs"},
		{append(base, "--cli", "claude", "--config", noSecret), "none of claude has a secret: copy in " + noSecret},
		{append(base, "--cli", "claude,codex", "--config", twoSecrets), "in 2 Secrets (a/one, a/two)"},
		{append(base, "--cli", "aider", "--secret", "a/s"), `unknown CLI "aider"`},
		{append(base, "--cli", "claude", "--secret", "a/s", "-n", "b"), "a pod reads Secrets of its own namespace"},
		{[]string{"kube", "manifest", "job/x", "--image", "img", "--cli", "claude", "--secret", "a/s"}, "one of deployment, statefulset, daemonset"},
		{[]string{"kube", "manifest", "deployment/x", "--cli", "claude", "--secret", "a/s"}, "--image"},
		{[]string{"agent", "--cli", "claude=/x"}, "name the Secret"},
		{[]string{"agent", "--secret", "a/s"}, "name at least one login"},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) { checkUsageError(t, tt.args, tt.want) })
	}
}

// The Secret and its keys come from the config's secret: copies, so that
// the pods read what sync writes.
func TestKubeManifestFollowsTheConfigsSecretCopies(t *testing.T) {
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "config.yaml")
	writeTestFile(t, cfgFile, `sources:
  work: {kind: claude, path: /nonexistent/creds.json}
  codex: {}
sinks:
  - {source: work, secret: agents/logins, key: work.json}
  - {source: codex, secret: agents/logins}
  - {source: codex, dir: /x}
`)
	f, out, errb := testFactory(t, nil)
	if code := Main([]string{"kube", "manifest", "deployment/agents", "--config", cfgFile, "--cli", "work,codex", "--image", "img"}, f); code != 0 {
		t.Fatalf("exit %d: %s", code, errb)
	}
	for _, want := range []string{"namespace: agents\n", "resourceNames: [logins]", "- agents/logins\n", "- claude/work.json=/root/.claude\n", "- codex=/root/.codex\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("manifest lacks %q:\n%s", want, out)
		}
	}
}

func TestKubeManifestOutputRefusesOtherFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "m.yaml")
	args := []string{"kube", "manifest", "deployment/agents", "--cli", "claude", "--secret", "agents/logins", "--image", "img", "-o", path}
	f, out, errb := testFactory(t, nil)
	if code := Main(args, f); code != 0 {
		t.Fatalf("exit %d: %s", code, errb)
	}
	data, _ := os.ReadFile(path)
	if !strings.HasPrefix(string(data), pod.Marker) || !strings.Contains(out.String(), "kubectl apply --server-side --field-manager=mc-broker -f "+path) {
		t.Errorf("file %q, stdout %q", data[:40], out)
	}
	f, out, _ = testFactory(t, nil)
	if code := Main(args, f); code != 0 || !strings.Contains(out.String(), "unchanged") {
		t.Errorf("second run: exit %d, %q", code, out)
	}
	mine := filepath.Join(dir, "mine.yaml")
	writeTestFile(t, mine, "my own manifest\n")
	f, _, errb = testFactory(t, nil)
	if code := Main(append(args[:len(args)-1], mine), f); code != 2 || !strings.Contains(errb.String(), "not written by mc-broker kube manifest") {
		t.Errorf("replacing a file of the user's: exit %d, %q", code, errb)
	}
	if data, _ := os.ReadFile(mine); string(data) != "my own manifest\n" {
		t.Error("the user's file was replaced")
	}
}

func TestAgentFlagsReachOptions(t *testing.T) {
	f, _, _ := testFactory(t, nil)
	var got *AgentOptions
	cmd := NewCmdAgent(f, func(_ context.Context, o *AgentOptions) error { got = o; return nil })
	cmd.SetArgs([]string{"--once", "--secret", "a/s", "--cli", "claude=/r/.claude", "--cli", "codex/k=/r/.codex",
		"--kubeconfig", "kc", "--context", "c", "--lock-dir", "/l"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if !got.Once || got.Secret != "a/s" || strings.Join(got.CLIs, " ") != "claude=/r/.claude codex/k=/r/.codex" ||
		got.Kubeconfig != "kc" || got.Context != "c" || got.LockDir != "/l" {
		t.Errorf("options %+v", got)
	}
}
