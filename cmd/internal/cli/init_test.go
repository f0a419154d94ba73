package cli

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mc-broker/mc-broker/broker"
	"github.com/mc-broker/mc-broker/broker/config"
)

func TestStarterConfigParsesWithAndWithoutAnEngine(t *testing.T) {
	env := config.Env{Home: "/home/me", Getenv: func(string) string { return "" }, GOOS: "linux"}
	defaults := config.Default(env)
	report := &broker.Report{Sources: []broker.SourceReport{{Name: "claude", State: broker.SourceValid, Fingerprint: "sha256:0123456789ab", Location: "/home/me/.claude/.credentials.json"}}}
	for _, engineErr := range []error{nil, errors.New("no engine")} {
		text := starterConfig(env, defaults, report, "unix:///var/run/docker.sock", engineErr)
		cfg, err := config.Parse("config.yaml", []byte(text), env)
		if err != nil {
			t.Fatalf("engine err %v: the starter config does not parse: %v\n%s", engineErr, err, text)
		}
		volumes := 0
		for _, sk := range cfg.Sinks {
			if sk.Volume != "" {
				volumes++
			}
			if !sk.Companions {
				t.Errorf("copy of %s without companions", sk.Source)
			}
		}
		if want := map[bool]int{true: 3, false: 0}[engineErr == nil]; volumes != want {
			t.Errorf("engine err %v: %d volume copies, want %d", engineErr, volumes, want)
		}
		if !strings.Contains(text, "~/.local/share/mc-broker/claude") {
			t.Errorf("copy directory not shown under ~:\n%s", text)
		}
	}
}

// TestInitFindsAccounts: a config directory per account (~/.claude-work,
// ~/.codex-Client.B) becomes a source of its own with its own copy and
// volume; on macOS a Claude account's login is in the Keychain. Directories
// without a login are not offered.
func TestInitFindsAccounts(t *testing.T) {
	home := t.TempDir()
	for _, f := range []string{".claude-work/.credentials.json", ".codex-Client.B/auth.json", ".claude-mac/.claude.json"} {
		p := filepath.Join(home, f)
		os.MkdirAll(filepath.Dir(p), 0o700)
		os.WriteFile(p, []byte("{}"), 0o600)
	}
	os.MkdirAll(filepath.Join(home, ".claude-empty"), 0o700)
	for _, goos := range []string{"linux", "darwin"} {
		env := config.Env{Home: home, Getenv: func(string) string { return "" }, GOOS: goos}
		found := findAccounts(env, config.Default(env))
		var got []string
		for _, a := range found {
			got = append(got, a.Name+" "+a.Store+" "+a.Path)
		}
		want := []string{"work-claude auto " + filepath.Join(home, ".claude-work/.credentials.json"), "client.b-codex auto " + filepath.Join(home, ".codex-Client.B/auth.json")}
		if goos == "darwin" {
			want = append([]string{"mac-claude keychain " + filepath.Join(home, ".claude-mac/.credentials.json")}, want...)
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s: found\n%s\nwant\n%s", goos, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		cfg := config.Default(env)
		for _, a := range found {
			cfg.Sources = append(cfg.Sources, a)
			cfg.Sinks = append(cfg.Sinks, config.Sink{Source: a.Name, Dir: filepath.Join(env.DataDir(), a.Name), Companions: true})
		}
		text := starterConfig(env, cfg, &broker.Report{}, "unix:///var/run/docker.sock", nil)
		parsed, err := config.Parse("config.yaml", []byte(text), env)
		if err != nil {
			t.Fatalf("%s: %v\n%s", goos, err, text)
		}
		if src, ok := parsed.Source("work-claude"); !ok || src.Kind != "claude" || src.Path != filepath.Join(home, ".claude-work/.credentials.json") {
			t.Errorf("%s: work-claude parsed as %+v", goos, src)
		}
		for _, want := range []string{"volume: mc-work-claude-auth", "dir: ~/.local/share/mc-broker/work-claude", "--service work-claude=work-claude", "CLAUDE_CONFIG_DIR=~/.claude-work claude"} {
			if !strings.Contains(text, want) {
				t.Errorf("%s: the starter config lacks %q:\n%s", goos, want, text)
			}
		}
	}
}
