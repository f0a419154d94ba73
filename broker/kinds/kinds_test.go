package kinds_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/mc-broker/mc-broker/broker/credential"
	"github.com/mc-broker/mc-broker/broker/kinds"
	"github.com/mc-broker/mc-broker/broker/kinds/claude"
	"github.com/mc-broker/mc-broker/broker/kinds/codex"
	filekind "github.com/mc-broker/mc-broker/broker/kinds/file"
	"github.com/mc-broker/mc-broker/broker/kinds/gemini"
)

var (
	Claude = claude.Kind
	Codex  = codex.Kind
	Gemini = gemini.Kind
	Opaque = filekind.Kind
)

func ForCopy(k Kind, data []byte, o CopyOptions) ([]byte, error) { return k.ForCopy(data, o) }

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "testdata", "fixtures", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

var year2100 = time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)

func TestInspectFixtures(t *testing.T) {
	tests := []struct {
		kind       Kind
		file       string
		wantErr    string // "" valid, "broken", "not-logged-in"
		wantExpiry time.Time
	}{
		{Claude, "claude/credentials.valid.json", "", year2100},
		{Claude, "claude/credentials.expired-refreshable.json", "", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)},
		{Claude, "claude/credentials.blanked.json", "broken", time.Time{}},
		{Claude, "claude/credentials.truncated.json", "broken", time.Time{}},
		{Codex, "codex/auth.chatgpt.json", "", year2100},
		{Codex, "codex/auth.apikey.json", "", time.Time{}},
		{Gemini, "gemini/oauth_creds.json", "", year2100},
		{Gemini, "gemini/settings.json", "broken", time.Time{}},
		{Claude, "codex/auth.chatgpt.json", "foreign", time.Time{}},
		{Codex, "claude/credentials.valid.json", "foreign", time.Time{}},
		{Opaque, "gemini/settings.json", "", time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.kind.Name()+"/"+tt.file, func(t *testing.T) {
			info, err := tt.kind.Inspect(fixture(t, tt.file))
			switch tt.wantErr {
			case "":
				if err != nil {
					t.Fatalf("want a valid login, got %v", err)
				}
				if !info.Expiry.Equal(tt.wantExpiry) {
					t.Errorf("expiry %v, want %v", info.Expiry, tt.wantExpiry)
				}
				if !strings.HasPrefix(info.Fingerprint, "sha256:") || len(info.Fingerprint) != len("sha256:")+12 {
					t.Errorf("fingerprint %q is not sha256:+12 hex", info.Fingerprint)
				}
			case "broken":
				if !IsBroken(err) {
					t.Fatalf("want broken, got %v", err)
				}
			case "not-logged-in":
				if !errors.Is(err, ErrNotLoggedIn) {
					t.Fatalf("want not logged in, got %v", err)
				}
			case "foreign":
				if !IsForeign(err) {
					t.Fatalf("want foreign (not this kind's file), got %v", err)
				}
			}
			if err != nil && strings.Contains(err.Error(), "FAKE") {
				t.Errorf("error shows a secret: %v", err)
			}
		})
	}
}

func TestBrokenShapes(t *testing.T) {
	tests := []struct {
		kind Kind
		data string
		want string // substring of the reason
	}{
		{Claude, "", "empty file"},
		{Claude, "   \n", "empty file"},
		{Claude, `{"claudeAiOauth": {"accessToken": "sk-ant-oat01-FAKE`, "ends early"},
		{Claude, `{not json at all`, "not valid JSON"},
		{Claude, `["sk-ant-oat01-FAKE"]`, "not a JSON object"},
		{Claude, `{"claudeAiOauth": "sk-ant-oat01-FAKE"}`, "claudeAiOauth is not a JSON object"},
		{Claude, `{"claudeAiOauth": {"accessToken": 12, "refreshToken": "sk-ant-ort01-FAKE"}}`, "claudeAiOauth.accessToken is not a string"},
		{Claude, `{"claudeAiOauth": {"accessToken": "sk-ant-oat01-FAKE", "expiresAt": "soon"}}`, "claudeAiOauth.expiresAt is not a whole number"},
		{Codex, `{"auth_mode": "chatgpt", "OPENAI_API_KEY": null, "tokens": null}`, "no tokens and no OPENAI_API_KEY"},
		{Codex, `{"auth_mode": "chatgpt", "tokens": {"access_token": "", "refresh_token": ""}}`, "no tokens"},
		{Gemini, `{"token_type": "Bearer"}`, "no access_token or refresh_token"},
		{Claude, `root:x:0:0:root:/root:/bin/bash`, "not JSON"},
		{Codex, `{"hasCompletedOnboarding": true}`, "not a Codex auth.json"},
		{Opaque, "", "empty file"},
		{Claude, `{"claudeAiOauth": {"accessToken": "` + strings.Repeat("FAKE", MaxSize/4) + `"}}`, "larger than"},
	}
	for i, tt := range tests {
		_, err := tt.kind.Inspect([]byte(tt.data))
		if !IsBroken(err) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s case %d: got %v, want broken with %q", tt.kind.Name(), i, err, tt.want)
		}
		if err != nil && strings.Contains(err.Error(), "FAKE") {
			t.Errorf("error shows a secret: %v", err)
		}
	}
}

func TestFreshnessOrdersLogins(t *testing.T) {
	older, _ := Claude.Inspect(fixture(t, "claude/credentials.expired-refreshable.json"))
	newer, _ := Claude.Inspect(fixture(t, "claude/credentials.valid.json"))
	if c, ok := older.Freshness.Compare(newer.Freshness); !ok || c != -1 {
		t.Errorf("expired login compares %d,%v with a valid one, want -1,true", c, ok)
	}
	if _, ok := (Freshness{}).Compare(newer.Freshness); ok {
		t.Error("unknown freshness must not order")
	}
	// Codex: same JWT exp, later last_refresh wins.
	a := fixture(t, "codex/auth.chatgpt.json")
	b := bytes.Replace(a, []byte("2026-11-28T08:00:00"), []byte("2026-11-28T09:00:00"), 1)
	ia, err := Codex.Inspect(a)
	if err != nil {
		t.Fatal(err)
	}
	ib, _ := Codex.Inspect(b)
	if c, ok := ia.Freshness.Compare(ib.Freshness); !ok || c != -1 {
		t.Errorf("codex last_refresh order: %d,%v, want -1,true", c, ok)
	}
	if k, _ := Codex.Inspect(fixture(t, "codex/auth.apikey.json")); k.Freshness.Known {
		t.Error("an API key has no freshness")
	}
}

func TestForCopyDropsMCPOAuthOnly(t *testing.T) {
	src := fixture(t, "claude/credentials.valid.json")
	out, err := ForCopy(Claude, src, CopyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(out, []byte("mcpOAuth")) || bytes.Contains(out, []byte("FAKE-MCP")) {
		t.Fatalf("copy still carries the MCP tokens (%s)", Fingerprint(out))
	}
	// Everything else is byte for byte: the copy is a prefix of the source
	// up to where the removed block began, and ends with the same brace.
	i := bytes.Index(src, []byte(`,
  "mcpOAuth"`))
	if want := append(append([]byte{}, src[:i]...), "\n}\n"...); !bytes.Equal(out, want) {
		t.Errorf("copy is re-encoded: %d bytes %s, want %d bytes %s", len(out), Fingerprint(out), len(want), Fingerprint(want))
	}
	srcInfo, _ := Claude.Inspect(src)
	outInfo, _ := Claude.Inspect(out)
	if srcInfo.Fingerprint != outInfo.Fingerprint {
		t.Error("the copy's fingerprint differs from the source's; users compare them")
	}
	if same, _ := ForCopy(Claude, src, CopyOptions{IncludeMCPOAuth: true}); !bytes.Equal(same, src) {
		t.Error("include_mcp_oauth must keep the file byte for byte")
	}
}

func TestForCopyKeepsUnknownKeysInAnyPosition(t *testing.T) {
	for i, in := range []string{
		`{"mcpOAuth":{"a":1},"claudeAiOauth":{"accessToken":"x"},"future":[1,2]}`,
		`{"claudeAiOauth":{"accessToken":"x"},"mcpOAuth":{"a":1},"future":[1,2]}`,
		`{"claudeAiOauth":{"accessToken":"x"},"future":[1,2],"mcpOAuth":{"a":1}}`,
		`{ "mcpOAuth" : {} }`,
		`{"mcpOAuth":{"a":"MCP-1"},"claudeAiOauth":{"accessToken":"x"},"mcpOAuth":{"b":"MCP-2"},"future":[1,2]}`,
	} {
		out, err := ForCopy(Claude, []byte(in), CopyOptions{})
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		var m map[string]any
		if err := json.Unmarshal(out, &m); err != nil {
			t.Fatalf("copy %d is not valid JSON", i)
		}
		if bytes.Contains(out, []byte("mcpOAuth")) || bytes.Contains(out, []byte("MCP-")) {
			t.Errorf("copy %d still carries an mcpOAuth block", i)
		}
		if strings.Contains(in, "future") && m["future"] == nil {
			t.Errorf("copy %d lost an unknown key", i)
		}
	}
	// Other kinds are never changed.
	in := fixture(t, "codex/auth.chatgpt.json")
	if out, _ := ForCopy(Codex, in, CopyOptions{}); !bytes.Equal(in, out) {
		t.Error("codex copy changed")
	}
}

// Short opaque content is not fingerprinted: 48 bits of a hash of a PIN can
// be reversed by trying every PIN.
func TestShortOpaqueContentHasNoFingerprint(t *testing.T) {
	if info, err := Opaque.Inspect([]byte("123456\n")); err != nil || info.Fingerprint != "" {
		t.Errorf("a 6-digit PIN got fingerprint %q (%v)", info.Fingerprint, err)
	}
	if info, _ := Opaque.Inspect([]byte("a-long-enough-opaque-token-value")); info.Fingerprint == "" {
		t.Error("a long token got no fingerprint")
	}
}

// A take-back puts the copy's login into the host's file and keeps the
// host's other members (its MCP servers' tokens); what else the copy holds
// stays out.
func TestTakeBackKeepsTheHostsOwnMembers(t *testing.T) {
	host := []byte(`{"claudeAiOauth":{"accessToken":"old"},"mcpOAuth":{"srv":{"accessToken":"mcp-host"}}}`)
	fromCopy := []byte(`{"claudeAiOauth":{"accessToken":"new"}}`)
	got, err := Claude.TakeBack(host, fromCopy)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"claudeAiOauth":{"accessToken":"new"},"mcpOAuth":{"srv":{"accessToken":"mcp-host"}}}`
	if string(got) != want {
		t.Fatalf("taken back = %s, want %s", got, want)
	}
	withOwn := []byte(`{"mcpOAuth":{"c":1},"claudeAiOauth":{"accessToken":"new"},"evil":1}`)
	got, err = Claude.TakeBack(host, withOwn)
	if err != nil || string(got) != want {
		t.Fatalf("taken back = %s, %v; want %s", got, err, want)
	}
	// A broken host file: the copy's login alone.
	got, err = Claude.TakeBack([]byte(`{"claudeAiOauth": {"acc`), withOwn)
	if err != nil || string(got) != `{"claudeAiOauth":{"accessToken":"new"}}`+"\n" {
		t.Fatalf("taken back into a broken host = %q, %v", got, err)
	}
	// Codex: tokens and last_refresh; the host's auth_mode and key field
	// stay.
	codexHost := []byte(`{"auth_mode":"chatgpt","OPENAI_API_KEY":null,"tokens":{"access_token":"a"},"last_refresh":"2026-01-01T00:00:00Z","mine":1}`)
	codexCopy := []byte(`{"auth_mode":"apikey","OPENAI_API_KEY":"sk-x","tokens":{"access_token":"b"},"last_refresh":"2026-02-01T00:00:00Z","theirs":2}`)
	got, err = Codex.TakeBack(codexHost, codexCopy)
	if err != nil || string(got) != `{"auth_mode":"chatgpt","OPENAI_API_KEY":null,"tokens":{"access_token":"b"},"last_refresh":"2026-02-01T00:00:00Z","mine":1}` {
		t.Fatalf("codex taken back = %s, %v", got, err)
	}
}

// Identity names the account: the same across refreshes, different for
// another account or another way of logging in.
func TestIdentity(t *testing.T) {
	id := func(k Kind, data []byte) string {
		t.Helper()
		info, err := k.Inspect(data)
		if err != nil {
			t.Fatal(err)
		}
		if info.Identity == "" {
			t.Fatal("no identity")
		}
		return info.Identity
	}
	me := fixture(t, "codex/auth.chatgpt.json")
	refreshed := bytes.ReplaceAll(me, []byte("TOKEN-0001"), []byte("TOKEN-0002"))
	if id(Codex, me) != id(Codex, refreshed) {
		t.Error("codex: a refresh changed the identity")
	}
	if id(Codex, me) == id(Codex, fixture(t, "codex/auth.chatgpt.other-account.json")) {
		t.Error("codex: another account has the same identity")
	}
	if id(Codex, me) == id(Codex, fixture(t, "codex/auth.apikey.json")) {
		t.Error("codex: an API key has the ChatGPT login's identity")
	}
	cl := fixture(t, "claude/credentials.valid.json")
	if id(Claude, cl) != id(Claude, bytes.ReplaceAll(cl, []byte("TOKEN-0001"), []byte("TOKEN-0002"))) {
		t.Error("claude: a refresh changed the identity")
	}
	if id(Claude, cl) == id(Claude, bytes.Replace(cl, []byte(`"max"`), []byte(`"pro"`), 1)) {
		t.Error("claude: another plan has the same identity")
	}
	g := fixture(t, "gemini/oauth_creds.json")
	if id(Gemini, g) != id(Gemini, bytes.ReplaceAll(g, []byte("ACCESS-TOKEN-0001"), []byte("ACCESS-TOKEN-0002"))) {
		t.Error("gemini: a refresh changed the identity")
	}
	if info, _ := Opaque.Inspect([]byte("a-long-enough-opaque-token-value")); info.Identity != "" {
		t.Error("an opaque file has an identity")
	}
}

func TestRefreshTokenExpiry(t *testing.T) {
	info, err := Claude.Inspect(fixture(t, "claude/credentials.with-refresh-expiry.json"))
	if err != nil {
		t.Fatal(err)
	}
	if want := time.UnixMilli(4103999999000).UTC(); !info.RefreshExpiry.Equal(want) {
		t.Errorf("refresh expiry %v, want %v", info.RefreshExpiry, want)
	}
}

func TestConfigDirValue(t *testing.T) {
	tests := []struct {
		kind, path string
		want       string
		ok         bool
	}{
		{"claude", "/h/.claude/.credentials.json", "", true},
		{"claude", "/h/.claude-work/.credentials.json", "/h/.claude-work", true},
		{"claude", "/h/.claude-work/creds.json", "", false},
		{"codex", "/h/.codex/auth.json", "", true},
		{"codex", "/h/work/codex/auth.json", "/h/work/codex", true},
		{"gemini", "/h/.gemini/oauth_creds.json", "", true},
		{"gemini", "/h/work/.gemini/oauth_creds.json", "/h/work", true},
		{"gemini", "/h/work/gemini/oauth_creds.json", "", false},
		{"file", "/h/token", "", false},
	}
	for _, tt := range tests {
		got, ok := kinds.ConfigDirValue(tt.kind, "/h", tt.path)
		if got != tt.want || ok != tt.ok {
			t.Errorf("ConfigDirValue(%s, %s) = %q, %v; want %q, %v", tt.kind, tt.path, got, ok, tt.want, tt.ok)
		}
	}
}

// TestFactsNameTheCLIsOwnCommands: every CLI kind says how it logs in and
// which variables beat its login; only Claude's file names its refresh
// token's end.
func TestFactsNameTheCLIsOwnCommands(t *testing.T) {
	for _, k := range []Kind{Claude, Codex, Gemini} {
		f := k.Facts()
		if len(f.Login) == 0 || f.Login[0] != k.Name() || f.ConfigDirVariable == "" || len(f.Overrides) == 0 {
			t.Errorf("%s: facts miss the login command, config variable or overrides: %+v", k.Name(), f)
		}
		if (len(f.Logout) == 0) == (f.LogoutHint == "") {
			t.Errorf("%s: needs a logout command or a hint saying there is none", k.Name())
		}
		if f.RefreshExpiry != (k == Claude) {
			t.Errorf("%s: RefreshExpiry = %v", k.Name(), f.RefreshExpiry)
		}
	}
	if f := Opaque.Facts(); len(f.Login) != 0 {
		t.Errorf("an opaque file has no CLI to log in with: %v", f.Login)
	}
}

// A copy made by ForCopy carries the same login as its source: the plan
// takes the host's Info for a copy that holds exactly those bytes, without
// parsing it again.
func TestForCopyKeepsTheLoginsInfo(t *testing.T) {
	for _, tt := range []struct {
		kind Kind
		file string
	}{
		{Claude, "claude/credentials.valid.json"},
		{Claude, "claude/credentials.expired-refreshable.json"},
		{Claude, "claude/credentials.with-refresh-expiry.json"},
		{Codex, "codex/auth.chatgpt.json"},
		{Codex, "codex/auth.chatgpt.other-account.json"},
		{Codex, "codex/auth.apikey.json"},
		{Gemini, "gemini/oauth_creds.json"},
		{Opaque, "gemini/settings.json"},
	} {
		data := fixture(t, tt.file)
		want, err := tt.kind.Inspect(data)
		if err != nil {
			t.Fatalf("%s: %v", tt.file, err)
		}
		for _, o := range []CopyOptions{{}, {IncludeMCPOAuth: true}} {
			c, err := tt.kind.ForCopy(data, o)
			if err != nil {
				t.Fatalf("%s %+v: %v", tt.file, o, err)
			}
			got, err := tt.kind.Inspect(c)
			if err != nil || got != want {
				t.Errorf("%s %+v: copy's info %+v (%v), source's %+v", tt.file, o, got, err, want)
			}
		}
	}
}
