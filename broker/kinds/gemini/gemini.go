// Package gemini is what mc-broker knows about Gemini CLI: the
// oauth_creds.json shape, where the CLI keeps it, what a container needs
// beside it, and what identifies the Google account.
package gemini

import (
	"encoding/json"
	"path/filepath"
	"time"

	"github.com/mc-broker/mc-broker/broker/credential"
)

// Names of Gemini CLI's files in ~/.gemini.
const (
	FileName = "oauth_creds.json"
	// SettingsFile is the companion that selects the Google login.
	SettingsFile = "settings.json"
)

// Kind is Gemini CLI's oauth_creds.json.
var Kind credential.Kind = kind{}

type kind struct{}

func (kind) Name() string     { return "gemini" }
func (kind) FileName() string { return FileName }

// DefaultPath is where Gemini CLI keeps its login file: in
// $GEMINI_CLI_HOME/.gemini, else ~/.gemini.
func DefaultPath(home string, getenv func(string) string) string {
	if d := getenv("GEMINI_CLI_HOME"); d != "" {
		return filepath.Join(d, ".gemini", FileName)
	}
	return filepath.Join(home, ".gemini", FileName)
}

// Google access tokens live one hour; half a day leaves a wide margin.
const maxLifetime = 12 * time.Hour

var settings = []byte("{\n  \"security\": {\n    \"auth\": {\n      \"selectedType\": \"oauth-personal\"\n    }\n  }\n}\n")

func (kind) Facts() credential.Facts {
	return credential.Facts{
		Companions:  map[string][]byte{SettingsFile: settings},
		MaxLifetime: maxLifetime,
		LoginHint:   "run gemini and choose Login with Google",
		// Gemini CLI has no login or logout command: both are slash commands
		// of its interactive session (/auth, /logout). Google refresh tokens
		// are not rotated and oauth_creds.json names no end for them.
		Login:             []string{"gemini"},
		LoginNote:         "Gemini CLI has no login command: in the session that starts now, type /auth, choose Login with Google and finish it, then /quit",
		LogoutHint:        "Gemini CLI has no logout command: run gemini and type /logout",
		ConfigDirVariable: "GEMINI_CLI_HOME",
		Overrides:         []string{"GEMINI_API_KEY"},
	}
}

// loginMembers are the file's members that make up the login.
var loginMembers = []string{"access_token", "refresh_token", "scope", "token_type", "id_token", "expiry_date"}

func (kind) Inspect(data []byte) (credential.Info, error) {
	top, err := credential.ParseObject(data)
	if err != nil {
		return credential.Info{}, err
	}
	if top.Len() > 0 && !top.HasAny(loginMembers...) {
		return credential.Info{}, credential.Foreign("no access_token, refresh_token or expiry_date member: not a Gemini CLI oauth_creds.json")
	}
	access, err := top.Str("access_token")
	if err != nil {
		return credential.Info{}, err
	}
	refresh, err := top.Str("refresh_token")
	if err != nil {
		return credential.Info{}, err
	}
	expiry, hasExpiry, err := top.Num("expiry_date")
	if err != nil {
		return credential.Info{}, err
	}
	id, err := top.Str("id_token")
	if err != nil {
		return credential.Info{}, err
	}
	if access == "" && refresh == "" {
		return credential.Info{}, credential.Broken("no access_token or refresh_token")
	}
	info := credential.Info{
		Fingerprint: credential.Fingerprint([]byte(access), []byte(refresh)),
		Identity:    identity(id, refresh),
	}
	if hasExpiry {
		info.Freshness = credential.Freshness{Known: true, Primary: expiry}
		info.Expiry = time.UnixMilli(expiry).UTC()
	}
	return info, nil
}

// identity is the Google account the id_token names (sub, else e-mail).
// Without an id_token, the refresh token stands for the account: Google
// does not rotate it on refresh, so a genuine refresh keeps it.
func identity(idToken, refresh string) string {
	if claims, ok := credential.JWTClaims(idToken); ok {
		var sub, email string
		_ = json.Unmarshal(claims["sub"], &sub)
		_ = json.Unmarshal(claims["email"], &email)
		if sub != "" || email != "" {
			if sub != "" {
				email = ""
			}
			return credential.Identity("gemini", "account", sub, email)
		}
	}
	return credential.Identity("gemini", "refresh-token", credential.Fingerprint([]byte(refresh)))
}

func (kind) ForCopy(data []byte, _ credential.CopyOptions) ([]byte, error) { return data, nil }

// TakeBack takes the login's members; the host keeps anything else.
func (kind) TakeBack(host, fromCopy []byte) ([]byte, error) {
	top, err := credential.ParseObject(fromCopy)
	if err != nil {
		return nil, err
	}
	if _, err := credential.ParseObject(host); err != nil {
		host = []byte("{}\n")
	}
	var set []credential.Member
	for _, k := range loginMembers {
		set = append(set, credential.Member{Key: k, Value: top.Raw(k)})
	}
	return credential.SetMembers(host, set)
}
