package wire

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mc-broker/mc-broker/broker/config"
)

func testEnv(vars map[string]string) config.Env {
	return config.Env{Home: "/home/dev", Getenv: func(k string) string { return vars[k] }, GOOS: "linux", User: "dev"}
}

func build(c *config.Config, env config.Env) error {
	_, err := Build(c, env, nil)
	return err
}

func TestBuildRefusesLayoutsThatLoseData(t *testing.T) {
	for name, yaml := range map[string]string{
		"copy over its source": "sources:\n  claude: {}\nsinks:\n  - {source: claude, dir: ~/.claude}\n",
		"two copies one file":  "sources:\n  claude: {}\nsinks:\n  - {source: claude, dir: /x}\n  - {source: claude, dir: /x}\n",
	} {
		cfg, err := config.Parse("cfg.yaml", []byte(yaml), testEnv(nil))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Build(cfg, testEnv(nil), nil); err == nil {
			t.Errorf("%s: Build accepted it", name)
		}
	}
}

// A symlinked ~/.claude that points at the default copy directory would make
// the default copy the host's own file: refused before anything is written.
func TestBuildSeesThroughSymlinks(t *testing.T) {
	home := t.TempDir()
	env := config.Env{Home: home, Getenv: func(string) string { return "" }, GOOS: "linux"}
	copyDir := filepath.Join(env.DataDir(), "claude")
	if err := os.MkdirAll(copyDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(copyDir, filepath.Join(home, ".claude")); err != nil {
		t.Fatal(err)
	}
	_, err := Build(config.Default(env), env, nil)
	if err == nil || !strings.Contains(err.Error(), "claude's own config directory") {
		t.Errorf("Build = %v, want a refusal", err)
	}
}

// locations parses and builds yaml and returns where each copy is.
func locations(t *testing.T, yaml string) ([]string, *config.Config) {
	t.Helper()
	cfg, err := config.Parse("cfg.yaml", []byte(yaml), testEnv(nil))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Build(cfg, testEnv(nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range b.Copies {
		got = append(got, c.Sink.Location())
	}
	return got, cfg
}

// buildError parses yaml and returns Build's error.
func buildError(t *testing.T, yaml string) error {
	t.Helper()
	cfg, err := config.Parse("cfg.yaml", []byte(yaml), testEnv(nil))
	if err != nil {
		t.Fatal(err)
	}
	_, err = Build(cfg, testEnv(nil), nil)
	return err
}

// Volume copies, on one engine or several (engine: and context: per copy,
// the same volume name on each, adopt: where asked): each is its own copy,
// and two copies of one file on one engine are refused.
func TestVolumeCopies(t *testing.T) {
	for _, tt := range []struct {
		name, yaml string
		want       []string
		twice      string
		twiceErr   string
	}{{
		name: "one engine",
		yaml: `
sources:
  claude: {}
  codex: {}
sinks:
  - {source: claude, volume: mc-claude-auth, uid: 1000, gid: 1000}
  - {source: codex, volume: shared_auth.v2, path: /home/.codex}
  - {source: codex, dir: ~/auth/codex}
`,
		want:     []string{"volume mc-claude-auth:/.credentials.json", "volume shared_auth.v2:/home/.codex/auth.json", "/home/dev/auth/codex/auth.json"},
		twice:    "sources:\n  claude: {}\nsinks:\n  - {source: claude, volume: v1}\n  - {source: claude, volume: v1, path: /}\n",
		twiceErr: "two copies write volume v1:/.credentials.json",
	}, {
		name: "several engines",
		yaml: `
sources:
  claude: {}
sinks:
  - {source: claude, volume: mc-claude-auth}
  - {source: claude, volume: mc-claude-auth, engine: 'ssh://me@build:2222'}
  - {source: claude, volume: mc-claude-auth, context: colima, adopt: true}
`,
		want:     []string{"volume mc-claude-auth:/.credentials.json", "volume mc-claude-auth:/.credentials.json on ssh://me@build:2222", "volume mc-claude-auth:/.credentials.json on context colima"},
		twice:    "sources:\n  claude: {}\nsinks:\n  - {source: claude, volume: v1, context: box}\n  - {source: claude, volume: v1, context: box}\n",
		twiceErr: "two copies write volume v1:/.credentials.json on context box",
	}} {
		t.Run(tt.name, func(t *testing.T) {
			got, _ := locations(t, tt.yaml)
			if strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Errorf("locations %q, want %q", got, tt.want)
			}
			if err := buildError(t, tt.twice); err == nil || !strings.Contains(err.Error(), tt.twiceErr) {
				t.Errorf("two copies in one volume file: %v", err)
			}
		})
	}
	_, cfg := locations(t, "sources:\n  claude: {}\nsinks:\n  - {source: claude, volume: v1, path: /home/.claude}\n  - {source: claude, volume: v1, engine: 'ssh://me@build:2222'}\n  - {source: claude, volume: w1, context: colima, adopt: true}\n")
	if k := cfg.Sinks[0]; k.Volume != "v1" || k.Path != "/home/.claude" || k.Dir != "" {
		t.Errorf("volume sink: %+v", k)
	}
	if k := cfg.Sinks[1]; k.Engine != "ssh://me@build:2222" || k.Context != "" || k.Adopt {
		t.Errorf("sink 1: %+v", k)
	}
	if k := cfg.Sinks[2]; k.Context != "colima" || !k.Adopt {
		t.Errorf("sink 2: %+v", k)
	}
}

// The default volumes get companions, on the copy too, so that a sync
// reports them.
func TestDefaultVolumesGetCompanions(t *testing.T) {
	cfg := config.Default(testEnv(nil)).WithDefaultVolumes()
	b, err := Build(cfg, testEnv(nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range b.Copies {
		if c.Source == "claude" && len(c.Companions) == 0 {
			t.Errorf("%s: no companions", c.Sink.Location())
		}
	}
}

// engine: must be an address mc-broker can reach; the error names the copy
// and its line, and never shows a password.
func TestEngineAddressesAreChecked(t *testing.T) {
	for _, tt := range []struct{ engine, want string }{
		{"box", `cfg.yaml:4: sinks[0].engine: "box" is not an address like unix:///var/run/docker.sock, tcp://host:2376 or ssh://user@host`},
		{"'npipe:////./pipe/x'", "only unix://, tcp:// and ssh:// engines"},
		{"'ssh://me:pw@box'", "ssh://me:xxxxx@box holds a password"},
	} {
		err := buildError(t, "sources:\n  claude: {}\nsinks:\n  - {source: claude, volume: v1, engine: "+tt.engine+"}\n")
		var ce *config.Error
		if !errors.As(err, &ce) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("engine %s: %v, want a config error saying %q", tt.engine, err, tt.want)
		}
		if err != nil && strings.Contains(err.Error(), "pw@") {
			t.Errorf("engine %s: the password is in %q", tt.engine, err)
		}
	}
}

// Copy directories that would hand a container write access to the system,
// a home directory, or a CLI's own config directory are refused.
func TestBuildRefusesUnsafeCopyDirectories(t *testing.T) {
	for dir, want := range map[string]string{
		"/":              "use a directory of its own",
		"/etc":           "a system directory",
		"/usr/local/bin": "a system directory",
		"~":              "use a directory of its own",
		"~/.claude":      "claude's own config directory",
		"~/.codex":       "codex's own config directory",
		"/srv/w":         "the directory of the source work",
	} {
		cfg, err := config.Parse("cfg.yaml", []byte("sources:\n  codex: {}\n  work: {kind: claude, path: /srv/w/.credentials.json}\nsinks:\n  - {source: codex, dir: "+dir+"}\n"), testEnv(nil))
		if err != nil {
			t.Fatal(err)
		}
		if err := build(cfg, testEnv(nil)); err == nil || !strings.Contains(err.Error(), want) || !strings.HasPrefix(err.Error(), "cfg.yaml:5: ") {
			t.Errorf("dir %s: %v, want cfg.yaml:5: ...%s", dir, err, want)
		}
	}
}

// TestCopyAt: a location the memory knows becomes the copy that wrote it,
// under the same rules as a configured one.
func TestCopyAt(t *testing.T) {
	env := testEnv(nil)
	cfg, err := config.Parse("cfg.yaml", []byte("sources:\n  claude: {}\n  work: {kind: claude, path: ~/.claude-work/.credentials.json}\n"), env)
	if err != nil {
		t.Fatal(err)
	}
	src, _ := cfg.Source("claude")
	for loc, want := range map[string]string{
		"/work/.auth/claude/.credentials.json":          "",
		"volume mc-claude-auth:/.credentials.json":      "",
		"volume shared:/home/.claude/.credentials.json": "",
		"/home/dev/.claude/.credentials.json":           "claude's own config directory",
		"/home/dev/.claude-work/.credentials.json":      "the directory of the source work",
		"/etc/.credentials.json":                        "a system directory",
		"relative/.credentials.json":                    "not a copy's location",
		"volume bad name:/x":                            "not a volume copy's location",
	} {
		s, err := CopyAt(cfg, src, loc, env, nil)
		switch {
		case want == "" && (err != nil || s.Location() != loc):
			t.Errorf("%s: %v (location %v)", loc, err, s)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("%s: %v, want an error saying %q", loc, err, want)
		}
	}
}
