package credential

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"time"
)

// Codex is the Codex CLI's auth.json, in ChatGPT or API-key mode.
var Codex Kind = codex{}

type codex struct{}

func (codex) Name() string     { return "codex" }
func (codex) FileName() string { return "auth.json" }

func (codex) Inspect(data []byte) (Info, error) {
	top, err := parseTop(data)
	if err != nil {
		return Info{}, err
	}
	apiKey, err := top.str("OPENAI_API_KEY")
	if err != nil {
		return Info{}, err
	}
	tokens, hasTokens, err := top.child("tokens")
	if err != nil {
		return Info{}, err
	}
	var access, refresh, id string
	if hasTokens {
		if access, err = tokens.str("access_token"); err != nil {
			return Info{}, err
		}
		if refresh, err = tokens.str("refresh_token"); err != nil {
			return Info{}, err
		}
		if id, err = tokens.str("id_token"); err != nil {
			return Info{}, err
		}
	}
	if access == "" && refresh == "" && apiKey == "" {
		return Info{}, broken("no tokens and no OPENAI_API_KEY")
	}
	info := Info{Fingerprint: Fingerprint([]byte(access), []byte(refresh), []byte(id), []byte(apiKey))}
	if access == "" && refresh == "" {
		// API-key login: nothing rotates, no freshness; the source wins.
		return info, nil
	}
	exp, hasExp := jwtExp(access)
	if hasExp {
		info.Expiry = time.Unix(exp, 0).UTC()
	}
	var lastRefresh int64
	if s, err := top.str("last_refresh"); err == nil && s != "" {
		if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
			lastRefresh = t.UnixNano()
		}
	}
	if hasExp || lastRefresh != 0 {
		info.Freshness = Freshness{Known: true, Primary: exp, Secondary: lastRefresh}
	}
	return info, nil
}

// jwtExp reads the exp claim of a JWT without verifying it: only the order of
// two logins is needed, never their authenticity.
func jwtExp(token string) (int64, bool) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return 0, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return 0, false
	}
	var claims struct {
		Exp *float64 `json:"exp"`
	}
	if json.Unmarshal(payload, &claims) != nil || claims.Exp == nil {
		return 0, false
	}
	return int64(*claims.Exp), true
}
