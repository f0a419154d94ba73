package keychain

import (
	"bytes"
	"encoding/json"
	"errors"
	"time"
)

// Codec converts between what a CLI keeps in its Keychain item and the
// file it keeps in a container's config directory.
type Codec interface {
	// FromStore returns the file for the item's value.
	FromStore(stored []byte) ([]byte, error)
	// ToStore returns the item's value for file. previous is the item's
	// current value (nil when there is none), so that fields the file has
	// no place for are kept.
	ToStore(file, previous []byte) ([]byte, error)
}

// identity is the codec of Claude Code and Codex, which keep the same JSON
// in the item and in the file.
type identity struct{}

func (identity) FromStore(stored []byte) ([]byte, error) { return stored, nil }
func (identity) ToStore(file, _ []byte) ([]byte, error)  { return file, nil }

// GeminiCodec converts Gemini CLI's keychain value
//
//	{"serverName":"main-account","token":{"accessToken","refreshToken",
//	 "tokenType","scope","expiresAt"},"updatedAt":<ms>}
//
// to the oauth_creds.json a container's Gemini CLI reads
//
//	{"access_token","refresh_token","scope","token_type","expiry_date"}
//
// and back. The file gets exactly those five members (absent ones are left
// out); other members of "token" have no place in the file and are not
// copied. Writing back starts from the item's previous value, so
// serverName and any unknown members stay, replaces the five token members
// from the file and sets updatedAt to now; members of the file that the
// item has no place for (id_token) are not stored.
type GeminiCodec struct {
	// Now stamps updatedAt; time.Now when nil.
	Now func() time.Time
}

type geminiFile struct {
	AccessToken  *string          `json:"access_token,omitempty"`
	RefreshToken *string          `json:"refresh_token,omitempty"`
	Scope        *string          `json:"scope,omitempty"`
	TokenType    *string          `json:"token_type,omitempty"`
	ExpiryDate   *json.RawMessage `json:"expiry_date,omitempty"`
}

// fileToToken pairs the file's members with the token's.
var fileToToken = []struct{ file, token string }{
	{"access_token", "accessToken"},
	{"refresh_token", "refreshToken"},
	{"scope", "scope"},
	{"token_type", "tokenType"},
	{"expiry_date", "expiresAt"},
}

var errNotGemini = errors.New("not Gemini CLI's keychain value (no token object)")

// FromStore implements Codec.
func (GeminiCodec) FromStore(stored []byte) ([]byte, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(stored, &top); err != nil {
		return nil, err
	}
	var token map[string]json.RawMessage
	if err := json.Unmarshal(top["token"], &token); err != nil || token == nil {
		return nil, errNotGemini
	}
	var f geminiFile
	str := func(key string) *string {
		var s string
		if raw, ok := token[key]; ok && json.Unmarshal(raw, &s) == nil {
			return &s
		}
		return nil
	}
	f.AccessToken, f.RefreshToken = str("accessToken"), str("refreshToken")
	f.Scope, f.TokenType = str("scope"), str("tokenType")
	if raw, ok := token["expiresAt"]; ok && !bytes.Equal(raw, []byte("null")) {
		f.ExpiryDate = &raw
	}
	out, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

// ToStore implements Codec.
func (c GeminiCodec) ToStore(file, previous []byte) ([]byte, error) {
	var in map[string]json.RawMessage
	if err := json.Unmarshal(file, &in); err != nil {
		return nil, err
	}
	top := map[string]json.RawMessage{}
	token := map[string]json.RawMessage{}
	if previous != nil {
		// A previous value that does not parse is replaced whole.
		if json.Unmarshal(previous, &top) != nil || top == nil {
			top = map[string]json.RawMessage{}
		}
		if json.Unmarshal(top["token"], &token) != nil || token == nil {
			token = map[string]json.RawMessage{}
		}
	}
	for _, p := range fileToToken {
		if v, ok := in[p.file]; ok {
			token[p.token] = v
		} else {
			delete(token, p.token)
		}
	}
	tok, err := json.Marshal(token)
	if err != nil {
		return nil, err
	}
	top["token"] = tok
	if _, ok := top["serverName"]; !ok {
		top["serverName"] = json.RawMessage(`"main-account"`)
	}
	now := time.Now
	if c.Now != nil {
		now = c.Now
	}
	stamp, _ := json.Marshal(now().UnixMilli())
	top["updatedAt"] = stamp
	return json.Marshal(top)
}
