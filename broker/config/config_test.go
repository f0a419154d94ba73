package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func testEnv(vars map[string]string) Env {
	return Env{Home: "/home/dev", Getenv: func(k string) string { return vars[k] }, GOOS: "linux", User: "dev"}
}

func TestParseFullConfig(t *testing.T) {
	cfg, err := Parse("config.yaml", []byte(`
sources:
  claude: {}
  work-claude: {kind: claude, path: /srv/other/.credentials.json}
  notes: {kind: file, path: ~/notes/token.txt}
sinks:
  - source: claude
    dir: ~/cooks/shared/.auth/claude
    uid: 1000
    gid: 1001
  - source: work-claude
    dir: /srv/auth/work
    include_mcp_oauth: true
  - source: notes
    dir: /srv/auth/notes
    file_name: token
`), testEnv(nil))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Sources) != 3 || len(cfg.Sinks) != 3 {
		t.Fatalf("got %d sources, %d sinks", len(cfg.Sources), len(cfg.Sinks))
	}
	if s := cfg.Sources[0]; s.Kind != "claude" || s.Path != "/home/dev/.claude/.credentials.json" {
		t.Errorf("claude source defaults: %+v", s)
	}
	if s := cfg.Sources[2]; s.Path != "/home/dev/notes/token.txt" {
		t.Errorf("~ not expanded: %+v", s)
	}
	k := cfg.Sinks[0]
	if k.Dir != "/home/dev/cooks/shared/.auth/claude" || *k.UID != 1000 || *k.GID != 1001 || k.Line != 7 {
		t.Errorf("sink 0: %+v", k)
	}
	if !cfg.Sinks[1].IncludeMCPOAuth || cfg.Sinks[2].FileName != "token" {
		t.Errorf("sinks 1,2: %+v %+v", cfg.Sinks[1], cfg.Sinks[2])
	}
}

func TestParseErrorsNameKeyAndLine(t *testing.T) {
	tests := []struct {
		name, yaml string
		line       int
		want       string
	}{
		{"unknown top key", "sources: {}\nsinkz: []\n", 2, `unknown key "sinkz"`},
		{"unknown source key", "sources:\n  claude:\n    paht: /x\n", 3, `sources.claude: unknown key "paht"`},
		{"unknown sink key", "sources:\n  claude: {}\nsinks:\n  - source: claude\n    dir: /x\n    mode: 0644\n", 6, `sinks[0]: unknown key "mode"`},
		{"sink names unknown source", "sources:\n  claude: {}\nsinks:\n  - source: cluade\n    dir: /x\n", 4, `no source called "cluade" (sources: claude)`},
		{"relative dir", "sources:\n  claude: {}\nsinks:\n  - source: claude\n    dir: auth/claude\n", 5, "sinks[0].dir must be an absolute path"},
		{"relative source path", "sources:\n  claude: {path: creds.json}\n", 2, "sources.claude.path must be an absolute path"},
		{"$HOME in a dir", "sources:\n  claude: {}\nsinks:\n  - source: claude\n    dir: $HOME/auth/claude\n", 5, "sinks[0].dir uses $HOME, but environment variables are not expanded (a background service has another environment): write ~/auth/claude"},
		{"${HOME} in a path", "sources:\n  notes: {kind: file, path: '${HOME}/t'}\n", 2, "sources.notes.path uses ${HOME}, but environment variables are not expanded (a background service has another environment): write ~/t"},
		{"a variable inside an absolute dir", "sources:\n  claude: {}\nsinks:\n  - {source: claude, dir: /srv/$USER/claude}\n", 4, "sinks[0].dir uses $USER, but environment variables are not expanded (a background service has another environment): write the absolute path, or ~/..."},
		{"unknown kind", "sources:\n  x: {kind: copilot, path: /x}\n", 2, "sources.x.kind must be one of claude, codex, gemini, file"},
		{"missing kind", "sources:\n  work: {path: /x}\n", 2, "sources.work: kind is missing"},
		{"file without path", "sources:\n  notes: {kind: file}\n", 2, "needs a path"},
		{"bad store", "sources:\n  claude: {store: vault}\n", 2, "store must be auto, file or keychain"},
		{"keychain for a file kind", "sources:\n  notes: {kind: file, path: /n, store: keychain}\n", 2, "a source of kind file is read from its file"},
		{"service with store file", "sources:\n  claude:\n    store: file\n    service: x\n", 3, "but store is file"},
		{"quote in account", "sources:\n  claude: {account: 'a\"b'}\n", 2, "account must be a non-empty name"},
		{"bad timeout", "sources:\n  claude: {timeout: soon}\n", 2, "timeout must be a duration"},
		{"bad uid", "sources:\n  claude: {}\nsinks:\n  - {source: claude, dir: /x, uid: -1}\n", 4, "uid must be a whole number"},
		{"missing dir", "sources:\n  claude: {}\nsinks:\n  - source: claude\n", 4, "dir or volume is missing"},
		{"dir and volume", "sources:\n  claude: {}\nsinks:\n  - {source: claude, dir: /x, volume: mc-claude-auth}\n", 4, "give dir or volume, not both"},
		{"bad volume name", "sources:\n  claude: {}\nsinks:\n  - {source: claude, volume: 'my vol'}\n", 4, `sinks[0].volume "my vol" is not a Docker volume name`},
		{"one-letter volume", "sources:\n  claude: {}\nsinks:\n  - {source: claude, volume: a}\n", 4, "at least two characters"},
		{"relative volume path", "sources:\n  claude: {}\nsinks:\n  - {source: claude, volume: v1, path: home}\n", 4, "sinks[0].path is the directory inside the volume"},
		{"volume path escapes", "sources:\n  claude: {}\nsinks:\n  - {source: claude, volume: v1, path: /a/../..}\n", 4, "no '..'"},
		{"path on a dir copy", "sources:\n  claude: {}\nsinks:\n  - {source: claude, dir: /x, path: /a}\n", 4, "path applies to volume copies only"},
		{"engine on a dir copy", "sources:\n  claude: {}\nsinks:\n  - {source: claude, dir: /x, engine: 'ssh://box'}\n", 4, "sinks[0].engine applies to volume copies only"},
		{"adopt on a dir copy", "sources:\n  claude: {}\nsinks:\n  - {source: claude, dir: /x, adopt: true}\n", 4, "sinks[0].adopt applies to volume and secret: copies only"},
		{"engine and context", "sources:\n  claude: {}\nsinks:\n  - {source: claude, volume: v1, engine: 'ssh://box', context: box}\n", 4, "give engine or context, not both"},
		{"bad context", "sources:\n  claude: {}\nsinks:\n  - {source: claude, volume: v1, context: 'my box'}\n", 4, `sinks[0].context "my box" is not a docker context name`},
		{"adopt not a bool", "sources:\n  claude: {}\nsinks:\n  - {source: claude, volume: v1, adopt: yes please}\n", 4, "sinks[0].adopt must be true or false"},
		{"mcp on codex", "sources:\n  codex: {}\nsinks:\n  - {source: codex, dir: /x, include_mcp_oauth: true}\n", 4, "applies to claude sources only"},
		{"bad name", "sources:\n  Work Claude: {kind: claude}\n", 2, "a source name uses lower-case"},
		{"sinks not a list", "sources:\n  claude: {}\nsinks:\n  source: claude\n", 4, "sinks must be a list"},
		{"bad yaml", "sources:\n  claude: {\n", 0, "not valid YAML"},
		{"two documents", "sources:\n  claude: {}\n---\nsinks: []\n", 3, "more than one YAML document"},
		{"blank file name", "sources:\n  notes: {kind: file, path: /n}\nsinks:\n  - {source: notes, dir: /x, file_name: ' '}\n", 4, "plain file name"},
		{"file name is a lock", "sources:\n  codex: {}\nsinks:\n  - {source: codex, dir: /x, file_name: auth.lock}\n", 4, "is a lock file of codex"},
		{"empty", "", 0, "is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("cfg.yaml", []byte(tt.yaml), testEnv(nil))
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("want *config.Error, got %v", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
			if tt.line > 0 && !strings.HasPrefix(err.Error(), "cfg.yaml:"+strconv.Itoa(tt.line)+": ") {
				t.Errorf("error %q does not point at line %d", err, tt.line)
			}
		})
	}
}

func TestDefaultsFollowXDGAndCLIVariables(t *testing.T) {
	env := testEnv(map[string]string{
		"XDG_DATA_HOME":     "/data",
		"CLAUDE_CONFIG_DIR": "/cc",
		"CODEX_HOME":        "/cx",
		"GEMINI_CLI_HOME":   "/gm",
	})
	cfg := Default(env)
	want := map[string]string{"claude": "/cc/.credentials.json", "codex": "/cx/auth.json", "gemini": "/gm/.gemini/oauth_creds.json"}
	for _, s := range cfg.Sources {
		if s.Path != want[s.Name] {
			t.Errorf("%s reads %s, want %s", s.Name, s.Path, want[s.Name])
		}
	}
	for _, k := range cfg.Sinks {
		if k.Dir != "/data/mc-broker/"+k.Source {
			t.Errorf("%s copy in %s", k.Source, k.Dir)
		}
	}
	plain := testEnv(nil)
	if got := plain.DataDir(); got != "/home/dev/.local/share/mc-broker" {
		t.Errorf("DataDir %s", got)
	}
	if got := plain.ConfigFile(); got != "/home/dev/.config/mc-broker/config.yaml" {
		t.Errorf("ConfigFile %s", got)
	}
	if got := plain.StateDir(); got != "/home/dev/.local/state/mc-broker" {
		t.Errorf("StateDir %s", got)
	}
	layout := cfg.WithDirLayout("/hook/.auth")
	if layout.Sinks[1].Dir != "/hook/.auth/codex" || len(layout.Sinks) != 3 {
		t.Errorf("--dir layout: %+v", layout.Sinks)
	}
}

func TestLoadMissingAndOversized(t *testing.T) {
	dir := t.TempDir()
	if _, err := Load(filepath.Join(dir, "nope.yaml"), testEnv(nil)); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "no such config file") {
		t.Errorf("missing file: %v", err)
	}
	big := filepath.Join(dir, "big.yaml")
	os.WriteFile(big, make([]byte, maxConfigSize+1), 0o600)
	if _, err := Load(big, testEnv(nil)); err == nil || !strings.Contains(err.Error(), "not a config file") {
		t.Errorf("oversized file: %v", err)
	}
}

func TestDefaultVolumes(t *testing.T) {
	cfg := Default(testEnv(nil)).WithDefaultVolumes()
	var vols []string
	for _, k := range cfg.Sinks {
		if k.Volume != "" {
			vols = append(vols, k.Source+"="+k.Volume)
		}
	}
	if got := strings.Join(vols, " "); got != "claude=mc-claude-auth codex=mc-codex-auth gemini=mc-gemini-auth" {
		t.Errorf("default volumes: %s", got)
	}
	if len(cfg.Sinks) != 6 || len(Default(testEnv(nil)).Sinks) != 3 {
		t.Errorf("WithDefaultVolumes must add to a copy of the sinks: %d", len(cfg.Sinks))
	}
	if dl := cfg.WithDirLayout("/hook"); len(dl.Sinks) != 3 || dl.Sinks[0].Volume != "" {
		t.Errorf("--dir layout keeps volumes: %+v", dl.Sinks)
	}
}

func TestOnProblemAndNotify(t *testing.T) {
	env := Env{Home: "/h", Getenv: func(string) string { return "" }}
	cfg, err := Parse("c.yaml", []byte("on_problem: ~/bin/tell-me --json\nnotify: true\nsources:\n  claude: {}\n"), env)
	if err != nil || cfg.OnProblem != "~/bin/tell-me --json" || !cfg.Notify {
		t.Fatalf("%v %+v", err, cfg)
	}
	for _, bad := range []string{"on_problem: [a, b]\n", "on_problem: \"\"\n", "notify: yes please\n", "on_problem: 3\n"} {
		if _, err := Parse("c.yaml", []byte(bad), env); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
