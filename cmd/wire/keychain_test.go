package wire

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mc-broker/mc-broker/broker/config"
	"github.com/mc-broker/mc-broker/sources/file"
	"github.com/mc-broker/mc-broker/sources/keychain"
)

func TestParseKeychainSettings(t *testing.T) {
	cfg, err := config.Parse("cfg.yaml", []byte(`
sources:
  claude: {store: keychain, service: Claude Code-credentials-1a2b3c4d, account: jane, timeout: 30s}
  gemini: {store: keychain}
  codex: {store: file}
  work: {kind: claude}
`), testEnv(nil))
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Sources[0]
	if c.Store != "keychain" || c.Service != "Claude Code-credentials-1a2b3c4d" || c.Account != "jane" || c.Timeout != 30*time.Second {
		t.Errorf("claude: %+v", c)
	}
	if cfg.Sources[1].Store != "keychain" || cfg.Sources[2].Store != "file" || cfg.Sources[3].Store != "auto" {
		t.Errorf("stores: %+v", cfg.Sources)
	}
}

func TestStoreAutoIsTheKeychainOnMacOS(t *testing.T) {
	home := t.TempDir()
	vars := map[string]string{}
	env := config.Env{Home: home, Getenv: func(k string) string { return vars[k] }, User: "dev"}
	store := func(goos, name string) string {
		t.Helper()
		env.GOOS = goos
		s, _ := config.Default(env).Source(name)
		got, err := StoreFor(s, env)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := store("darwin", "claude"); got != "keychain" {
		t.Errorf("claude on macOS: %s", got)
	}
	if got := store("linux", "claude"); got != "file" {
		t.Errorf("claude on Linux: %s", got)
	}
	if got := store("darwin", "gemini"); got != "file" {
		t.Errorf("gemini on macOS without GEMINI_FORCE_ENCRYPTED_FILE_STORAGE: %s", got)
	}
	vars["GEMINI_FORCE_ENCRYPTED_FILE_STORAGE"] = "true"
	if got := store("darwin", "gemini"); got != "keychain" {
		t.Errorf("gemini on macOS with encrypted storage: %s", got)
	}
	if got := store("darwin", "codex"); got != "file" {
		t.Errorf("codex without config.toml: %s", got)
	}
	os.MkdirAll(filepath.Join(home, ".codex"), 0o700)
	os.WriteFile(filepath.Join(home, ".codex", "config.toml"), []byte("cli_auth_credentials_store = \"keyring\"\n"), 0o600)
	if got := store("darwin", "codex"); got != "keychain" {
		t.Errorf("codex with keyring storage and no auth.json: %s", got)
	}
	os.WriteFile(filepath.Join(home, ".codex", "auth.json"), []byte("{}"), 0o600)
	if got := store("darwin", "codex"); got != "file" {
		t.Errorf("codex with an auth.json: %s", got)
	}

	// A claude source at a path of its own is a file, even on macOS.
	cfg, err := config.Parse("cfg.yaml", []byte("sources:\n  work: {kind: claude, path: /srv/work/.credentials.json}\n"), env)
	if err != nil {
		t.Fatal(err)
	}
	env.GOOS = "darwin"
	if got, _ := StoreFor(cfg.Sources[0], env); got != "file" {
		t.Errorf("claude at a configured path on macOS: %s", got)
	}
}

func TestBuildPicksTheSourceAndNamesTheItem(t *testing.T) {
	vars := map[string]string{"CLAUDE_CONFIG_DIR": "/Users/dev/.claude-work", "MC_BROKER_SECURITY_BIN": "/opt/fake/security"}
	env := config.Env{Home: "/Users/dev", Getenv: func(k string) string { return vars[k] }, GOOS: "darwin", User: "dev"}
	b, err := Build(config.Default(env), env, nil)
	if err != nil {
		t.Fatal(err)
	}
	kc, ok := b.Sources[0].(*keychain.Source)
	if !ok {
		t.Fatalf("claude on macOS is a %T, want *keychain.Source", b.Sources[0])
	}
	if want := keychain.ClaudeItem("/Users/dev/.claude-work", "dev"); kc.Item() != want {
		t.Errorf("item %+v, want %+v", kc.Item(), want)
	}
	if got := kc.WatchedFiles(); len(got) != 1 || got[0] != "/Users/dev/Library/Keychains/login.keychain-db" {
		t.Errorf("watched files: %v", got)
	}
	if _, ok := b.Sources[1].(*file.Source); !ok {
		t.Errorf("codex is a %T, want a file source", b.Sources[1])
	}

	cfg, err := config.Parse("cfg.yaml", []byte("sources:\n  claude: {service: Mine, account: other}\n"), env)
	if err != nil {
		t.Fatal(err)
	}
	b, err = Build(cfg, env, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := b.Sources[0].(*keychain.Source).Item(); got != (keychain.Item{Service: "Mine", Account: "other"}) {
		t.Errorf("overridden item: %+v", got)
	}

	env.GOOS = "linux"
	cfg, _ = config.Parse("cfg.yaml", []byte("sources:\n  claude: {store: keychain}\n"), env)
	if b, err = Build(cfg, env, nil); err != nil {
		t.Fatal(err)
	}
	if _, ok := b.Sources[0].(*keychain.Source); !ok {
		t.Errorf("store: keychain on Linux is a %T", b.Sources[0])
	}
}

func TestBuildNeverWritesTheHostsClaudeFileOnMacOS(t *testing.T) {
	home := t.TempDir()
	env := config.Env{Home: home, Getenv: func(string) string { return "" }, GOOS: "darwin", User: "dev"}
	for name, yaml := range map[string]string{
		"keychain source, copy into ~/.claude": "sources:\n  claude: {}\nsinks:\n  - {source: claude, dir: ~/.claude}\n",
		"another claude source":                "sources:\n  work: {kind: claude, path: /srv/w/.credentials.json}\nsinks:\n  - {source: work, dir: ~/.claude}\n",
	} {
		cfg, err := config.Parse("cfg.yaml", []byte(yaml), env)
		if err != nil {
			t.Fatal(err)
		}
		_, err = Build(cfg, env, nil)
		if err == nil || !strings.Contains(err.Error(), "claude's own config directory") {
			t.Errorf("%s: Build = %v, want a refusal", name, err)
		}
	}
	// --dir at the home directory's .claude parent: the claude copy would
	// be ~/.claude/.credentials.json.
	_, err := Build(config.Default(env).WithDirLayout(home), env, nil)
	if err != nil {
		t.Errorf("--dir ~: %v (claude goes to ~/claude, not ~/.claude)", err)
	}
	env.GOOS = "linux"
	cfg, _ := config.Parse("cfg.yaml", []byte("sources:\n  work: {kind: claude, path: /srv/w/.credentials.json}\nsinks:\n  - {source: work, dir: ~/.claude}\n"), env)
	if _, err := Build(cfg, env, nil); err == nil || !strings.Contains(err.Error(), "claude's own config directory") {
		t.Errorf("on Linux a copy into ~/.claude (the host's Claude directory) from another source: %v, want a refusal", err)
	}
}

// A second Claude login, configured by its config directory, is the item
// Claude keeps for that directory, not the default one: reading (and
// writing back into) the default item would copy the wrong account, and
// overwrite the main login with the other one.
func TestAClaudeSourceAtAnotherDirectoryNamesThatDirectorysItem(t *testing.T) {
	vars := map[string]string{}
	env := config.Env{Home: "/Users/dev", Getenv: func(k string) string { return vars[k] }, GOOS: "darwin", User: "dev"}
	cfg, err := config.Parse("cfg.yaml", []byte(`
sources:
  claude: {}
  work: {kind: claude, path: /Users/dev/.claude-work/.credentials.json, store: keychain}
  home: {kind: claude, path: ~/.claude/.credentials.json, store: keychain}
`), env)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		want keychain.Item
	}{
		{"claude", keychain.ClaudeItem("", "dev")},
		{"work", keychain.ClaudeItem("/Users/dev/.claude-work", "dev")},
		{"home", keychain.ClaudeItem("", "dev")},
	} {
		s, _ := cfg.Source(tc.name)
		if got := KeychainItem(s, env); got != tc.want {
			t.Errorf("%s: item %+v, want %+v", tc.name, got, tc.want)
		}
	}
	// With CLAUDE_CONFIG_DIR set, the default source follows it, and a
	// source pinned to ~/.claude is Claude run without it.
	vars["CLAUDE_CONFIG_DIR"] = "/Users/dev/.claude-work"
	cfg, _ = config.Parse("cfg.yaml", []byte("sources:\n  claude: {}\n  home: {kind: claude, path: ~/.claude/.credentials.json, store: keychain}\n"), env)
	for name, want := range map[string]keychain.Item{"claude": keychain.ClaudeItem("/Users/dev/.claude-work", "dev"), "home": keychain.ClaudeItem("", "dev")} {
		s, _ := cfg.Source(name)
		if got := KeychainItem(s, env); got != want {
			t.Errorf("with CLAUDE_CONFIG_DIR, %s: item %+v, want %+v", name, got, want)
		}
	}
}
