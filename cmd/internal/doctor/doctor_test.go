package doctor

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mc-broker/mc-broker/broker"
)

func find(t *testing.T, r *Result, area, name string) Check {
	t.Helper()
	for _, c := range r.Checks {
		if c.Area == area && strings.Contains(c.Name, name) {
			return c
		}
	}
	t.Fatalf("no %s check for %q in %+v", area, name, r.Checks)
	return Check{}
}

func TestABrokenSetUpNamesEachProblemAndItsFix(t *testing.T) {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	loose := filepath.Join(t.TempDir(), "auth.json")
	os.WriteFile(loose, []byte("{}"), 0o644)
	in := Inputs{
		Now: now,
		Status: &broker.Report{Sources: []broker.SourceReport{
			{Name: "claude", State: broker.SourceBroken, Location: "/h/.claude/.credentials.json", Problem: "blanked: expiresAt is 0", Hint: "run claude and /login",
				Copies: []broker.CopyReport{{Location: "/c/claude/.credentials.json", Outcome: broker.Present}}},
			{Name: "codex", State: broker.SourceValid, Location: "/h/.codex/auth.json", Fingerprint: "sha256:0123456789ab",
				Copies: []broker.CopyReport{{Location: loose, Outcome: broker.InSync, Fingerprint: "sha256:0123456789ab"}}},
		}},
		VolumeCopies: 1,
		Engine: func(context.Context) Engine {
			return Engine{Endpoint: "unix:///var/run/docker.sock", Err: errors.New("docker engine not reachable at unix:///var/run/docker.sock: is Docker Desktop / colima running?")}
		},
		Service:      func(context.Context) Service { return Service{} },
		ComposeFiles: []string{"compose.yaml"},
		Compose: func([]string) ([]Finding, error) {
			return []Finding{{Where: "compose.yaml:7", Service: "dev", Problem: "the login file is bind-mounted on its own", Fix: "mount the directory"}}, nil
		},
	}
	r := Run(context.Background(), in)
	if !r.NeedsAttention() {
		t.Fatal("a broken set-up passed")
	}
	for _, want := range []struct {
		area, name string
		status     Status
		fix        string
	}{
		{"source", "claude", Fail, "run claude and /login"},
		{"copy", loose, Warn, "mode 0600"},
		{"docker", "engine", Fail, "colima"},
		{"service", "background", Warn, "mc-broker launch install"},
		{"compose", "compose.yaml:7", Fail, "mount the directory"},
	} {
		c := find(t, r, want.area, want.name)
		if c.Status != want.status || !strings.Contains(c.Fix+c.Detail, want.fix) {
			t.Errorf("%s %s: %s %q fix %q; want %s mentioning %q", want.area, want.name, c.Status, c.Detail, c.Fix, want.status, want.fix)
		}
	}
}

func TestAllIsWell(t *testing.T) {
	in := Inputs{
		Now: time.Now(),
		Status: &broker.Report{Sources: []broker.SourceReport{
			{Name: "claude", State: broker.SourceValid, Fingerprint: "sha256:0123456789ab",
				Copies: []broker.CopyReport{{Location: "volume mc-claude-auth:/.credentials.json", Outcome: broker.InSync}}},
			{Name: "gemini", State: broker.SourceNotLoggedIn, Copies: []broker.CopyReport{{Location: "/x/gemini/oauth_creds.json", Outcome: broker.Missing}}},
		}},
		Engine: func(context.Context) Engine {
			return Engine{Endpoint: "unix:///var/run/docker.sock", Version: "20.10.24"}
		},
		Service: func(context.Context) Service {
			return Service{Installed: true, Running: true, Detail: "mc-broker.service"}
		},
	}
	r := Run(context.Background(), in)
	if r.NeedsAttention() {
		t.Fatalf("a good set-up needs attention: %+v", r.Checks)
	}
}

func TestNoEngineIsOnlyNewsWithoutVolumeCopies(t *testing.T) {
	in := Inputs{Engine: func(context.Context) Engine { return Engine{Err: errors.New("not reachable")} }}
	if c := find(t, Run(context.Background(), in), "docker", "engine"); c.Status != Info {
		t.Fatalf("engine down without volume copies: %s, want info", c.Status)
	}
}

func TestAConfigErrorStopsTheChecks(t *testing.T) {
	r := Run(context.Background(), Inputs{ConfigErr: errors.New("config.yaml:3: sinks[0]: unknown key")})
	if len(r.Checks) != 1 || r.Checks[0].Status != Fail || !strings.Contains(r.Checks[0].Detail, "config.yaml:3") {
		t.Fatalf("checks = %+v", r.Checks)
	}
}

// Where no service manager answers (a container, a login without a
// systemd user instance), launch install fails: the fix must not send the
// user there.
func TestNoServiceManagerSuggestsAWatcherNotInstall(t *testing.T) {
	in := Inputs{Service: func(context.Context) Service {
		return Service{Unreachable: errors.New("cannot reach your systemd user instance (systemctl --user): Failed to connect to bus")}
	}}
	c := find(t, Run(context.Background(), in), "service", "background")
	if c.Status != Warn || !strings.Contains(c.Fix, "mc-broker watch") || !strings.Contains(c.Detail, "Failed to connect to bus") {
		t.Fatalf("no service manager: %s %q fix %q; want warn, the reason, and mc-broker watch as the fix", c.Status, c.Detail, c.Fix)
	}
	if strings.HasPrefix(c.Fix, "mc-broker launch install") {
		t.Errorf("fix %q sends the user to a command that cannot work here", c.Fix)
	}
}

// A running service that runs another binary, or a file install would now
// write differently (an upgrade, a changed environment), needs the user:
// doctor must not call it all well.
func TestServiceWarningsNeedTheUser(t *testing.T) {
	in := Inputs{Service: func(context.Context) Service {
		return Service{Installed: true, Running: true, Detail: "mc-broker.service",
			Warnings: []string{"the service runs /old/mc-broker, not this mc-broker (/new/mc-broker): run mc-broker launch install to switch to this one"}}
	}}
	r := Run(context.Background(), in)
	c := find(t, r, "service", "background")
	if c.Status != Warn || !strings.Contains(c.Detail, "/old/mc-broker") || !strings.Contains(c.Fix, "mc-broker launch install") {
		t.Fatalf("service with a warning: %s %q fix %q", c.Status, c.Detail, c.Fix)
	}
	if !r.NeedsAttention() {
		t.Error("doctor says all is well")
	}
}

// TestRefreshTokenEnd: doctor asks for a new login a few days before the
// refresh token ends, and says so plainly once it has.
func TestRefreshTokenEnd(t *testing.T) {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		left   time.Duration
		status Status
		detail string
	}{
		{10 * 24 * time.Hour, OK, "valid until 2026-12-09"},
		{2 * 24 * time.Hour, Warn, "ends 2026-12-01 12:00 UTC (in 2d)"},
		{-time.Hour, Fail, "ended 2026-11-29 11:00 UTC (1h00m ago)"},
	} {
		at := now.Add(tt.left)
		r := Run(context.Background(), Inputs{Now: now, Status: &broker.Report{Sources: []broker.SourceReport{
			{Name: "work-claude", State: broker.SourceValid, Fingerprint: "sha256:0123456789ab", RefreshExpiresAt: &at},
		}}})
		c := find(t, r, "source", "work-claude refresh token")
		if c.Status != tt.status || !strings.Contains(c.Detail, tt.detail) {
			t.Errorf("%s left: %s %q; want %s with %q", tt.left, c.Status, c.Detail, tt.status, tt.detail)
		}
		if tt.status != OK && !strings.Contains(c.Fix, "mc-broker login work-claude") {
			t.Errorf("%s left: the fix does not say how to log in again: %q", tt.left, c.Fix)
		}
		if r.NeedsAttention() != (tt.status != OK) {
			t.Errorf("%s left: NeedsAttention = %v", tt.left, r.NeedsAttention())
		}
	}
}

// TestOverridesAreNamedNeverShown: every variable, apiKeyHelper and
// keyring setting that beats a login is flagged by name and place, in the
// environment, the host's settings and the copies, and no value appears.
func TestOverridesAreNamedNeverShown(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o700)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	hostSettings := write("host/.claude/settings.json", `{"apiKeyHelper": "/usr/local/bin/get-FAKE-key", "model": "opus"}`)
	copySettings := write("copy/claude/settings.json", `{"env": {"ANTHROPIC_AUTH_TOKEN": "FAKE-TOKEN-IN-SETTINGS", "TERM": "x"}}`)
	hostCodex := write("host/.codex/config.toml", "model = \"o3\"\ncli_auth_credentials_store = \"keyring\"\n[tui]\n")
	copyCodex := write("copy/codex/config.toml", "cli_auth_credentials_store = 'auto' # in the container\n")
	quiet := write("copy/other/config.toml", "[x]\ncli_auth_credentials_store = \"keyring\"\n")
	// A container swaps a settings file for a symlink to a file it cannot
	// read: never followed.
	os.Symlink(hostSettings, filepath.Join(dir, "copy", "linked.json"))
	vars := map[string]string{}
	for _, v := range []string{"CLAUDE_CODE_OAUTH_TOKEN", "ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_PROVIDER_MANAGED_BY_HOST", "CLAUDE_CODE_SDK_HAS_OAUTH_REFRESH"} {
		vars[v] = "claude"
	}
	vars["OPENAI_API_KEY"], vars["CODEX_API_KEY"], vars["GEMINI_API_KEY"] = "codex", "codex", "gemini"
	r := Run(context.Background(), Inputs{Now: time.Now(), Overrides: &OverrideSources{
		Getenv: func(k string) string {
			return map[string]string{"CLAUDE_CODE_OAUTH_TOKEN": "sk-ant-oat01-FAKE", "GEMINI_API_KEY": "FAKE-GEMINI", "HOME": "/h"}[k]
		},
		Variables:        vars,
		ClaudeSettings:   []string{hostSettings, filepath.Join(dir, "missing.json")},
		CopySettings:     []string{copySettings, filepath.Join(dir, "copy", "linked.json")},
		CodexConfigs:     []string{hostCodex},
		CopyCodexConfigs: []string{copyCodex, quiet},
	}})
	var got []string
	for _, c := range r.Checks {
		got = append(got, string(c.Status)+" "+c.Name+": "+c.Detail)
		if strings.Contains(c.Detail+c.Fix, "FAKE") || strings.Contains(c.Detail+c.Fix, "opus") {
			t.Errorf("a value is shown: %s %s", c.Detail, c.Fix)
		}
		if c.Status != Warn || c.Fix == "" {
			t.Errorf("%s %s: want a warning with a fix", c.Status, c.Name)
		}
	}
	all := strings.Join(got, "\n")
	for _, want := range []string{
		"warn CLAUDE_CODE_OAUTH_TOKEN: is set in this environment (value not shown): claude uses it",
		"warn GEMINI_API_KEY: is set",
		"warn " + hostSettings + ": sets apiKeyHelper (command not shown): Claude Code on this host",
		"warn " + copySettings + ": sets ANTHROPIC_AUTH_TOKEN in its env block (value not shown): Claude Code in every container",
		"warn " + hostCodex + `: sets cli_auth_credentials_store = "keyring": Codex keeps its login in the OS keyring`,
		"warn " + copyCodex + `: sets cli_auth_credentials_store = "auto": Codex in a container`,
	} {
		if !strings.Contains(all, want) {
			t.Errorf("missing %q in:\n%s", want, all)
		}
	}
	if len(r.Checks) != 6 || !r.NeedsAttention() {
		t.Errorf("%d checks (want 6), needs attention %v:\n%s", len(r.Checks), r.NeedsAttention(), all)
	}

	clean := Run(context.Background(), Inputs{Now: time.Now(), Overrides: &OverrideSources{Getenv: func(string) string { return "" }, Variables: vars}})
	if clean.NeedsAttention() || len(clean.Checks) != 1 || clean.Checks[0].Status != OK {
		t.Errorf("nothing set: %+v", clean.Checks)
	}
}

// A revoked copy is what the user asked for: worth knowing, not a problem,
// unless a login turned up in it since.
func TestRevokedCopies(t *testing.T) {
	at := time.Now()
	r := Run(context.Background(), Inputs{Now: at, Status: &broker.Report{Sources: []broker.SourceReport{
		{Name: "claude", State: broker.SourceValid, Fingerprint: "sha256:0123456789ab", RevokedAt: &at, Copies: []broker.CopyReport{
			{Location: "/c/a/.credentials.json", Outcome: broker.Revoked},
			{Location: "/c/b/.credentials.json", Outcome: broker.Revoked, Problem: "holds a login written since the revoke"},
		}},
	}}})
	if c := find(t, r, "copy", "/c/a/"); c.Status != Info || !strings.Contains(c.Detail, "mc-broker sync or mc-broker login claude") {
		t.Errorf("revoked copy: %s %q", c.Status, c.Detail)
	}
	if c := find(t, r, "copy", "/c/b/"); c.Status != Warn || !strings.Contains(c.Fix, "mc-broker revoke claude") {
		t.Errorf("revoked copy with a login: %s %q %q", c.Status, c.Detail, c.Fix)
	}
}
