package cli

import (
	"context"
	"strings"
	"testing"

	"github.com/mc-broker/mc-broker/broker/config"
)

// TestCLICommandPointsAtTheAccount: the CLI's own command runs with its
// config-directory variable set to the account's directory, or without
// it for the CLI's default directory, whatever the shell had set.
func TestCLICommandPointsAtTheAccount(t *testing.T) {
	t.Setenv("CLAUDE_CONFIG_DIR", "/somewhere/else")
	env := config.Env{Home: "/home/me", Getenv: func(string) string { return "" }, GOOS: "linux"}
	for _, tt := range []struct {
		src  config.Source
		argv []string
		want string // the variable as set, "" when absent
		line string
	}{
		{config.Source{Name: "claude", Kind: "claude", Path: "/home/me/.claude/.credentials.json"}, []string{"claude", "auth", "login"}, "", "claude auth login"},
		{config.Source{Name: "work-claude", Kind: "claude", Path: "/home/me/.claude-work/.credentials.json"}, []string{"claude", "auth", "logout"}, "CLAUDE_CONFIG_DIR=/home/me/.claude-work", "CLAUDE_CONFIG_DIR=/home/me/.claude-work claude auth logout"},
		{config.Source{Name: "acme", Kind: "codex", Path: "/srv/acme/auth.json"}, []string{"codex", "login"}, "CODEX_HOME=/srv/acme", "CODEX_HOME=/srv/acme codex login --device-auth"},
		{config.Source{Name: "gemini", Kind: "gemini", Path: "/home/me/other/.gemini/oauth_creds.json"}, []string{"gemini"}, "GEMINI_CLI_HOME=/home/me/other", "GEMINI_CLI_HOME=/home/me/other gemini"},
	} {
		var args []string
		if tt.src.Kind == "codex" {
			args = []string{"--device-auth"}
		}
		cmd, err := cliCommand(context.Background(), env, tt.src, tt.argv, args)
		if err != nil {
			t.Fatal(err)
		}
		variable := map[string]string{"claude": "CLAUDE_CONFIG_DIR", "codex": "CODEX_HOME", "gemini": "GEMINI_CLI_HOME"}[tt.src.Kind]
		var got []string
		for _, kv := range cmd.Env {
			if strings.HasPrefix(kv, variable+"=") {
				got = append(got, kv)
			}
		}
		if strings.Join(got, " ") != tt.want {
			t.Errorf("%s: %v, want %q", tt.src.Name, got, tt.want)
		}
		if l := cliCommandLine(cmd, variable); l != tt.line {
			t.Errorf("%s: shown as %q, want %q", tt.src.Name, l, tt.line)
		}
	}
	if _, err := cliCommand(context.Background(), env, config.Source{Name: "odd", Kind: "claude", Path: "/x/creds.json"}, []string{"claude"}, nil); err == nil {
		t.Error("a Claude login file of another name cannot be pointed at")
	}
}
