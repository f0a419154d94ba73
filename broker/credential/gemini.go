package credential

import "time"

// Gemini is Gemini CLI's oauth_creds.json.
var Gemini Kind = gemini{}

type gemini struct{}

func (gemini) Name() string     { return "gemini" }
func (gemini) FileName() string { return "oauth_creds.json" }

func (gemini) Inspect(data []byte) (Info, error) {
	top, err := parseTop(data)
	if err != nil {
		return Info{}, err
	}
	access, err := top.str("access_token")
	if err != nil {
		return Info{}, err
	}
	refresh, err := top.str("refresh_token")
	if err != nil {
		return Info{}, err
	}
	expiry, hasExpiry, err := top.num("expiry_date")
	if err != nil {
		return Info{}, err
	}
	if access == "" && refresh == "" {
		return Info{}, broken("no access_token or refresh_token")
	}
	info := Info{Fingerprint: Fingerprint([]byte(access), []byte(refresh))}
	if hasExpiry {
		info.Freshness = Freshness{Known: true, Primary: expiry}
		info.Expiry = time.UnixMilli(expiry).UTC()
	}
	return info, nil
}
