// Package codex is what mc-broker knows about the Codex CLI: auth.json's
// shape, where the CLI keeps it, the locks it takes, and what identifies
// the ChatGPT account.
package codex

import (
	"bufio"
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"time"

	"github.com/mc-broker/mc-broker/broker/credential"
)

// Names of Codex's files in CODEX_HOME (checked against codex 0.169).
const (
	FileName = "auth.json"
	// Codex flocks these, in order, around writing auth.json.
	LockFile      = "auth.lock"
	WriteLockFile = "auth.json.lock"
)

// Kind is the Codex CLI's auth.json, in ChatGPT or API-key mode.
var Kind credential.Kind = kind{}

type kind struct{}

func (kind) Name() string     { return "codex" }
func (kind) FileName() string { return FileName }

// DefaultPath is where Codex keeps auth.json: in $CODEX_HOME, else ~/.codex.
func DefaultPath(home string, getenv func(string) string) string {
	if d := getenv("CODEX_HOME"); d != "" {
		return filepath.Join(d, FileName)
	}
	return filepath.Join(home, ".codex", FileName)
}

// ChatGPT access tokens live days; a month leaves a wide margin.
const maxLifetime = 30 * 24 * time.Hour

func (kind) Facts() credential.Facts {
	return credential.Facts{
		LockFiles:   []string{LockFile, WriteLockFile},
		MaxLifetime: maxLifetime,
		LoginHint:   "run codex login",
		// Checked against codex 0.171.0: `codex login` opens a browser (add
		// --device-auth on a host without one), `codex logout` removes
		// auth.json or the keyring entry. auth.json says nothing of when
		// its refresh token ends.
		Login:             []string{"codex", "login"},
		Logout:            []string{"codex", "logout"},
		ConfigDirVariable: "CODEX_HOME",
		Overrides:         []string{"OPENAI_API_KEY", "CODEX_API_KEY"},
	}
}

var members = []string{"auth_mode", "OPENAI_API_KEY", "tokens", "last_refresh"}

func (kind) Inspect(data []byte) (credential.Info, error) {
	top, err := credential.ParseObject(data)
	if err != nil {
		return credential.Info{}, err
	}
	if top.Len() > 0 && !top.HasAny(members...) {
		return credential.Info{}, credential.Foreign("no auth_mode, tokens or OPENAI_API_KEY member: not a Codex auth.json")
	}
	mode, err := top.Str("auth_mode")
	if err != nil {
		return credential.Info{}, err
	}
	apiKey, err := top.Str("OPENAI_API_KEY")
	if err != nil {
		return credential.Info{}, err
	}
	tokens, hasTokens, err := top.Child("tokens")
	if err != nil {
		return credential.Info{}, err
	}
	var access, refresh, id, account string
	if hasTokens {
		if access, err = tokens.Str("access_token"); err != nil {
			return credential.Info{}, err
		}
		if refresh, err = tokens.Str("refresh_token"); err != nil {
			return credential.Info{}, err
		}
		if id, err = tokens.Str("id_token"); err != nil {
			return credential.Info{}, err
		}
		if account, err = tokens.Str("account_id"); err != nil {
			return credential.Info{}, err
		}
	}
	if access == "" && refresh == "" && apiKey == "" {
		return credential.Info{}, credential.Broken("no tokens and no OPENAI_API_KEY")
	}
	info := credential.Info{Fingerprint: credential.Fingerprint([]byte(access), []byte(refresh), []byte(id), []byte(apiKey))}
	if access == "" && refresh == "" {
		// API-key login: nothing rotates, no freshness; the source wins.
		if mode == "" {
			mode = "apikey"
		}
		info.Identity = credential.Identity("codex", mode, "key", credential.Fingerprint([]byte(apiKey)))
		return info, nil
	}
	if mode == "" {
		mode = "chatgpt"
	}
	claims := chatGPTClaims(id)
	if account == "" {
		account = claims.Account
	}
	info.Identity = credential.Identity("codex", mode, account, claims.User, claims.Email)
	exp, hasExp := jwtExp(access)
	if hasExp {
		info.Expiry = time.Unix(exp, 0).UTC()
	}
	var lastRefresh int64
	if s, err := top.Str("last_refresh"); err == nil && s != "" {
		if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
			lastRefresh = t.UnixNano()
			info.Issued = t.UTC()
		}
	}
	if hasExp || lastRefresh != 0 {
		info.Freshness = credential.Freshness{Known: true, Primary: exp, Secondary: lastRefresh}
	}
	return info, nil
}

type accountClaims struct{ Account, User, Email string }

// chatGPTClaims reads who an id_token names: the ChatGPT account and user
// (under "https://api.openai.com/auth") and the e-mail.
func chatGPTClaims(idToken string) accountClaims {
	claims, ok := credential.JWTClaims(idToken)
	if !ok {
		return accountClaims{}
	}
	var out accountClaims
	_ = json.Unmarshal(claims["email"], &out.Email)
	var auth struct {
		Account string `json:"chatgpt_account_id"`
		User    string `json:"chatgpt_user_id"`
	}
	if json.Unmarshal(claims["https://api.openai.com/auth"], &auth) == nil {
		out.Account, out.User = auth.Account, auth.User
	}
	if out.User == "" {
		_ = json.Unmarshal(claims["sub"], &out.User)
	}
	return out
}

// jwtExp reads the exp claim of a JWT without verifying it: only the order of
// two logins is needed, never their authenticity.
func jwtExp(token string) (int64, bool) {
	claims, ok := credential.JWTClaims(token)
	if !ok {
		return 0, false
	}
	var exp *float64
	if json.Unmarshal(claims["exp"], &exp) != nil || exp == nil {
		return 0, false
	}
	return int64(*exp), true
}

func (kind) ForCopy(data []byte, _ credential.CopyOptions) ([]byte, error) { return data, nil }

// TakeBack takes the tokens and their refresh time; the host keeps its
// auth_mode (identity checks make sure they agree), its API key field and
// anything else it has.
func (kind) TakeBack(host, fromCopy []byte) ([]byte, error) {
	top, err := credential.ParseObject(fromCopy)
	if err != nil {
		return nil, err
	}
	set := []credential.Member{{Key: "tokens", Value: top.Raw("tokens")}, {Key: "last_refresh", Value: top.Raw("last_refresh")}}
	if _, err := credential.ParseObject(host); err != nil {
		// Nothing usable at the host: the copy's login members alone.
		host = []byte("{}\n")
		set = append([]credential.Member{{Key: "auth_mode", Value: top.Raw("auth_mode")}, {Key: "OPENAI_API_KEY", Value: top.Raw("OPENAI_API_KEY")}}, set...)
	}
	return credential.SetMembers(host, set)
}

// StoreSetting returns the value of cli_auth_credentials_store in the text
// of a Codex config.toml ("file", "keyring", "auto"), or "" when it is not
// set. It reads top-level `key = "value"` lines only, before the first
// [table] header, which is where Codex reads that key; it needs no TOML
// library for that.
func StoreSetting(configTOML []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(configTOML))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "[") {
			break // a table: the key is top-level only
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok || strings.TrimSpace(key) != "cli_auth_credentials_store" {
			continue
		}
		value = strings.TrimSpace(value)
		if i := strings.Index(value, "#"); i >= 0 && !strings.HasPrefix(value, `"`) && !strings.HasPrefix(value, "'") {
			value = strings.TrimSpace(value[:i])
		}
		for _, q := range []string{`"`, "'"} {
			if strings.HasPrefix(value, q) {
				if end := strings.Index(value[1:], q); end >= 0 {
					value = value[1 : 1+end]
				}
			}
		}
		return value
	}
	return ""
}
