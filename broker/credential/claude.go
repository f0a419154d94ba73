package credential

import "time"

// Claude is Claude Code's login: the JSON kept in the macOS Keychain item
// and in .credentials.json.
var Claude Kind = claude{}

type claude struct{}

func (claude) Name() string     { return "claude" }
func (claude) FileName() string { return ".credentials.json" }

func (claude) Inspect(data []byte) (Info, error) {
	top, err := parseTop(data)
	if err != nil {
		return Info{}, err
	}
	oauth, ok, err := top.child("claudeAiOauth")
	if err != nil {
		return Info{}, err
	}
	if !ok {
		// Claude keeps MCP server tokens in the same file for users who never
		// logged in to claude.ai: a valid file, but no login to copy.
		return Info{}, &NotLoggedInError{Reason: "the file holds no claudeAiOauth login"}
	}
	access, err := oauth.str("accessToken")
	if err != nil {
		return Info{}, err
	}
	refresh, err := oauth.str("refreshToken")
	if err != nil {
		return Info{}, err
	}
	expiresAt, hasExpiry, err := oauth.num("expiresAt")
	if err != nil {
		return Info{}, err
	}
	if access == "" && refresh == "" {
		// What a failed refresh leaves behind (expiresAt 0, empty tokens).
		return Info{}, broken("blanked login: claudeAiOauth has empty tokens (a failed refresh leaves this)")
	}
	info := Info{Fingerprint: Fingerprint([]byte(access), []byte(refresh))}
	if hasExpiry {
		info.Freshness = Freshness{Known: true, Primary: expiresAt}
		info.Expiry = time.UnixMilli(expiresAt).UTC()
	}
	return info, nil
}
