package compose

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"go.yaml.in/yaml/v3"
)

func testSpec(dir string) Spec {
	return Spec{Services: map[string][]Mount{
		"web": {{CLI: "gemini", Volume: "mc-gemini-auth"}, {CLI: "claude", Dir: filepath.Join(dir, "claude")}},
		"app": {{CLI: "codex", Dir: filepath.Join(dir, "codex")}},
	}}
}

func TestGenerateIsDeterministicYAMLWithUsage(t *testing.T) {
	dir := t.TempDir()
	a, err := Generate(testSpec(dir))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Generate(testSpec(dir))
	if !bytes.Equal(a, b) {
		t.Error("two runs gave different bytes")
	}
	if !bytes.HasPrefix(a, []byte(Marker+"\n")) {
		t.Errorf("override does not start with the marker line:\n%s", a)
	}
	for _, want := range []string{
		"docker compose -f compose.yaml -f compose.mc-broker.yaml up",
		"mc-broker sync",
		"  app:\n    volumes:\n      - type: bind\n        source: " + dir + "/codex\n        target: /root/.codex\n  web:",
		"volumes:\n  # external",
		"  mc-gemini-auth:\n    external: true\n",
	} {
		if !strings.Contains(string(a), want) {
			t.Errorf("override lacks %q:\n%s", want, a)
		}
	}
	var doc map[string]any
	if err := yaml.Unmarshal(a, &doc); err != nil {
		t.Fatalf("not valid YAML: %v", err)
	}
	if strings.Contains(string(a), ":ro") || strings.Contains(string(a), "read_only") || strings.Contains(string(a), "create_host_path") {
		t.Errorf("override has a read-only mount or an option docker-compose 1.29 rejects:\n%s", a)
	}
}

func TestGenerateHome(t *testing.T) {
	out, err := Generate(Spec{Home: "/home/node/", Services: map[string][]Mount{"a": {{CLI: "claude", Volume: "v"}}}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "target: /home/node/.claude\n") {
		t.Errorf("home not used:\n%s", out)
	}
	// Claude finds the onboarding companion (.claude.json) in the mounted
	// directory only through CLAUDE_CONFIG_DIR.
	if !strings.Contains(string(out), "CLAUDE_CONFIG_DIR: /home/node/.claude\n") {
		t.Errorf("CLAUDE_CONFIG_DIR not set for a claude service:\n%s", out)
	}
	out, _ = Generate(Spec{Services: map[string][]Mount{"a": {{CLI: "codex", Volume: "v"}}}})
	if strings.Contains(string(out), "CLAUDE_CONFIG_DIR") {
		t.Errorf("CLAUDE_CONFIG_DIR set for a service without claude:\n%s", out)
	}
}

func TestGenerateRefusesBadSpecs(t *testing.T) {
	for _, tt := range []struct {
		spec Spec
		want string
	}{
		{Spec{}, "no services"},
		{Spec{Home: "root", Services: map[string][]Mount{"a": {{CLI: "claude", Dir: "/x"}}}}, "absolute path inside the container"},
		{Spec{Services: map[string][]Mount{"a b": {{CLI: "claude", Dir: "/x"}}}}, "not a compose service name"},
		{Spec{Services: map[string][]Mount{"a": nil}}, "mounts no CLI"},
		{Spec{Services: map[string][]Mount{"a": {{CLI: "aider", Dir: "/x"}}}}, `unknown CLI "aider"`},
		{Spec{Services: map[string][]Mount{"a": {{CLI: "claude", Dir: "/x"}, {CLI: "claude", Dir: "/y"}}}}, "two copies of claude at /root/.claude"},
		{Spec{Services: map[string][]Mount{"a": {{CLI: "claude"}}}}, "either a host directory or a volume"},
		{Spec{Services: map[string][]Mount{"a": {{CLI: "claude", Dir: "/x", Volume: "v"}}}}, "either a host directory or a volume"},
		{Spec{Services: map[string][]Mount{"a": {{CLI: "claude", Dir: "rel"}}}}, "must be absolute"},
		{Spec{Services: map[string][]Mount{"a": {{CLI: "claude", Volume: "a/b"}}}}, "not a volume name"},
	} {
		_, err := Generate(tt.spec)
		var se *SpecError
		if !errors.As(err, &se) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Generate(%+v) = %v, want a SpecError saying %q", tt.spec, err, tt.want)
		}
	}
}

// writeProject writes a base compose file and the generated override, and
// creates the copy directories.
func writeProject(t *testing.T) (dir, base, override string) {
	t.Helper()
	dir = t.TempDir()
	for _, d := range []string{"claude", "codex"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	base = filepath.Join(dir, "compose.yaml")
	writeFile(t, base, "services:\n  app:\n    image: mc-broker-test-busybox:latest\n  web:\n    image: mc-broker-test-busybox:latest\n")
	out, err := Generate(testSpec(dir))
	if err != nil {
		t.Fatal(err)
	}
	override = filepath.Join(dir, "compose.mc-broker.yaml")
	writeFile(t, override, string(out))
	return dir, base, override
}

// Compose v2 is compose-go: the merged project has read-write directory
// mounts, binds that do not create a missing source (so compose v2 hands
// them to the engine's mount API), and an external volume.
func TestOverrideMergesInComposeV2Loader(t *testing.T) {
	dir, base, override := writeProject(t)
	opts, err := cli.NewProjectOptions([]string{base, override}, cli.WithEnv(nil))
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	app := p.Services["app"].Volumes
	if len(app) != 1 || app[0].Type != types.VolumeTypeBind || app[0].Source != filepath.Join(dir, "codex") ||
		app[0].Target != "/root/.codex" || app[0].ReadOnly || (app[0].Bind != nil && bool(app[0].Bind.CreateHostPath)) {
		t.Errorf("app mounts %+v", app)
	}
	if v := p.Volumes["mc-gemini-auth"]; !bool(v.External) || v.Name != "mc-gemini-auth" {
		t.Errorf("volume %+v, want external mc-gemini-auth", v)
	}
	fs, err := CheckOptions{Env: map[string]string{}}.Check(base, override)
	if err != nil || len(fs) != 0 {
		t.Errorf("compose check on the override: %v\n%s", err, summary(fs))
	}
}

// docker-compose 1.29 (Debian's) accepts the same file.
func TestOverridePassesDockerCompose1Config(t *testing.T) {
	bin, err := exec.LookPath("docker-compose")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("docker-compose not installed (scripts/docker-env.sh installs it)")
		}
		t.Skip("docker-compose not installed")
	}
	dir, base, override := writeProject(t)
	cmd := exec.Command(bin, "-f", base, "-f", override, "config")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("docker-compose config: %v\n%s", err, out)
	}
	var merged struct {
		Services map[string]struct {
			Volumes []map[string]any
		}
		Volumes map[string]map[string]any
	}
	if err := yaml.Unmarshal(out, &merged); err != nil {
		t.Fatalf("docker-compose config printed no YAML: %v\n%s", err, out)
	}
	web := merged.Services["web"].Volumes
	if len(web) != 2 || web[0]["target"] != "/root/.claude" || web[1]["source"] != "mc-gemini-auth" {
		t.Errorf("web mounts %v", web)
	}
	if merged.Volumes["mc-gemini-auth"]["external"] != true {
		t.Errorf("volumes %v", merged.Volumes)
	}
}
