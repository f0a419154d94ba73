// Package claude is what mc-broker knows about Claude Code: the login
// file's shape (the JSON kept in .credentials.json and in the macOS
// Keychain item), where the CLI keeps it, the locks it takes, what a
// container needs beside it, and what identifies the account.
package claude

import (
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/mc-broker/mc-broker/broker/credential"
)

// Names of Claude Code's files in its config directory (checked against
// claude 2.1.332).
const (
	FileName = ".credentials.json"
	// WriteLock is the proper-lockfile lock directory Claude Code holds while
	// it writes its secure storage (this file, or the Keychain item).
	WriteLock = ".storage-write.lock"
	// RefreshLock is the lock directory it holds across a refresh request.
	RefreshLock = ".oauth_refresh.lock"
	// ConfigFile is the config file Claude reads from its config directory
	// when CLAUDE_CONFIG_DIR is set; the companion written into copies.
	ConfigFile = ".claude.json"
)

// Kind is Claude Code's login.
var Kind credential.Kind = kind{}

type kind struct{}

func (kind) Name() string     { return "claude" }
func (kind) FileName() string { return FileName }

// DefaultPath is where Claude Code keeps its login file: in
// $CLAUDE_CONFIG_DIR, else ~/.claude.
func DefaultPath(home string, getenv func(string) string) string {
	if d := getenv("CLAUDE_CONFIG_DIR"); d != "" {
		return filepath.Join(d, FileName)
	}
	return filepath.Join(home, ".claude", FileName)
}

// Access tokens live about 8 hours; a day leaves a wide margin.
const maxLifetime = 24 * time.Hour

// companion is the generated .claude.json: onboarding done, nothing of the
// host's (installMethod, the user's projects).
var companion = []byte("{\n  \"hasCompletedOnboarding\": true\n}\n")

func (kind) Facts() credential.Facts {
	return credential.Facts{
		WriteLock:   WriteLock,
		RefreshLock: RefreshLock,
		Companions:  map[string][]byte{ConfigFile: companion},
		MaxLifetime: maxLifetime,
		LoginHint:   "run claude and /login",
		// Checked against claude 2.1.332: `claude auth login` signs in to the
		// Claude subscription by default (--claudeai), `claude auth logout`
		// removes the login from the file or the Keychain.
		Login:             []string{"claude", "auth", "login"},
		Logout:            []string{"claude", "auth", "logout"},
		ConfigDirVariable: "CLAUDE_CONFIG_DIR",
		Overrides: []string{
			"CLAUDE_CODE_OAUTH_TOKEN", "ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN",
			"CLAUDE_CODE_PROVIDER_MANAGED_BY_HOST", "CLAUDE_CODE_SDK_HAS_OAUTH_REFRESH",
		},
		RefreshExpiry: true,
	}
}

// loginKey holds the claude.ai login; the rest of the file (mcpOAuth: the
// host's own MCP servers' tokens) is not the login.
const loginKey = "claudeAiOauth"

func (kind) Inspect(data []byte) (credential.Info, error) {
	top, err := credential.ParseObject(data)
	if err != nil {
		return credential.Info{}, err
	}
	if top.Len() > 0 && !top.HasAny(loginKey, "mcpOAuth") {
		return credential.Info{}, credential.Foreign("no claudeAiOauth or mcpOAuth member: not a Claude Code login file")
	}
	oauth, ok, err := top.Child(loginKey)
	if err != nil {
		return credential.Info{}, err
	}
	if !ok {
		if top.Len() == 0 {
			return credential.Info{}, credential.Broken("an empty JSON object: no login")
		}
		// Claude keeps MCP server tokens in the same file for users who never
		// logged in to claude.ai: a valid file, but no login to copy.
		return credential.Info{}, &credential.NotLoggedInError{Reason: "the file holds no claudeAiOauth login"}
	}
	access, err := oauth.Str("accessToken")
	if err != nil {
		return credential.Info{}, err
	}
	refresh, err := oauth.Str("refreshToken")
	if err != nil {
		return credential.Info{}, err
	}
	expiresAt, hasExpiry, err := oauth.Num("expiresAt")
	if err != nil {
		return credential.Info{}, err
	}
	refreshEnd, hasRefreshEnd, err := oauth.Num("refreshTokenExpiresAt")
	if err != nil {
		return credential.Info{}, err
	}
	if access == "" && refresh == "" {
		// What a failed refresh leaves behind (expiresAt 0, empty tokens).
		return credential.Info{}, credential.Broken("blanked login: claudeAiOauth has empty tokens (a failed refresh leaves this)")
	}
	sub, err := oauth.Str("subscriptionType")
	if err != nil {
		return credential.Info{}, err
	}
	scopes, err := oauth.Strs("scopes")
	if err != nil {
		return credential.Info{}, err
	}
	scopes = append([]string(nil), scopes...)
	sort.Strings(scopes)
	info := credential.Info{
		Fingerprint: credential.Fingerprint([]byte(access), []byte(refresh)),
		// The file names no account: pin what it does carry. A login of
		// another plan, with other scopes, or with tokens of another form
		// is not a refresh of this one.
		Identity: credential.Identity("claude", sub, strings.Join(scopes, " "), tokenForm(access), tokenForm(refresh)),
	}
	if hasExpiry {
		info.Freshness = credential.Freshness{Known: true, Primary: expiresAt}
		info.Expiry = time.UnixMilli(expiresAt).UTC()
	}
	if hasRefreshEnd && refreshEnd > 0 {
		info.RefreshExpiry = time.UnixMilli(refreshEnd).UTC()
	}
	return info, nil
}

// tokenForm is a token's fixed prefix ("sk-ant-oat01"), never its secret
// part.
func tokenForm(tok string) string {
	parts := strings.SplitN(tok, "-", 4)
	if len(parts) < 4 {
		return ""
	}
	return strings.Join(parts[:3], "-")
}

func (kind) ForCopy(data []byte, o credential.CopyOptions) ([]byte, error) {
	if o.IncludeMCPOAuth {
		return data, nil
	}
	return credential.RemoveMember(data, "mcpOAuth")
}

func (kind) TakeBack(host, fromCopy []byte) ([]byte, error) {
	top, err := credential.ParseObject(fromCopy)
	if err != nil {
		return nil, err
	}
	login := top.Raw(loginKey)
	if login == nil {
		return nil, credential.Broken("the copy holds no claudeAiOauth login")
	}
	if _, err := credential.ParseObject(host); err != nil {
		host = []byte("{}\n")
	}
	return credential.SetMembers(host, []credential.Member{{Key: loginKey, Value: login}})
}
