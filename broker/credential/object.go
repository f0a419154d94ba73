package credential

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
)

// Object is one decoded JSON object whose members stay raw, so that checks
// can name a field without ever printing its value.
type Object struct {
	path    string // e.g. "claudeAiOauth", for messages
	members map[string]json.RawMessage
}

// ParseObject decodes data as one JSON object. Content that starts like a
// JSON object but does not parse is Partial (a write caught halfway);
// content that is not a JSON object at all is Foreign.
func ParseObject(data []byte) (Object, error) {
	if err := CheckCommon(data); err != nil {
		return Object{}, err
	}
	trimmed := bytes.TrimSpace(data)
	if !json.Valid(data) {
		if trimmed[0] != '{' {
			return Object{}, Foreign("not JSON: not a login file")
		}
		var se *json.SyntaxError
		err := json.Unmarshal(data, new(any))
		if errors.As(err, &se) && se.Offset >= int64(len(bytes.TrimRight(data, " \t\r\n"))) {
			return Object{}, partial("not valid JSON: ends early at byte %d (truncated, or caught mid-write)", se.Offset)
		}
		if errors.As(err, &se) {
			return Object{}, partial("not valid JSON (syntax error at byte %d)", se.Offset)
		}
		return Object{}, partial("not valid JSON")
	}
	if trimmed[0] != '{' {
		return Object{}, Foreign("the file is JSON but not a JSON object: not a login file")
	}
	return asObject("", data, "the file")
}

func partial(format string, args ...any) error {
	return &BrokenError{Reason: fmt.Sprintf(format, args...), Partial: true}
}

func asObject(path string, raw json.RawMessage, what string) (Object, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return Object{}, Broken("%s is not a JSON object", what)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return Object{}, Broken("%s is not a JSON object", what)
	}
	return Object{path: path, members: m}, nil
}

func (o Object) name(key string) string {
	if o.path == "" {
		return key
	}
	return o.path + "." + key
}

// Len is the number of members.
func (o Object) Len() int { return len(o.members) }

// HasAny reports whether any of keys is a member (null counts).
func (o Object) HasAny(keys ...string) bool {
	for _, k := range keys {
		if _, ok := o.members[k]; ok {
			return true
		}
	}
	return false
}

// Raw returns a member's raw JSON; nil when absent.
func (o Object) Raw(key string) json.RawMessage { return o.members[key] }

func isNull(raw json.RawMessage) bool {
	return raw == nil || bytes.Equal(bytes.TrimSpace(raw), []byte("null"))
}

// Child returns the member key as an object; ok is false when it is absent
// or null.
func (o Object) Child(key string) (Object, bool, error) {
	raw, found := o.members[key]
	if !found || isNull(raw) {
		return Object{}, false, nil
	}
	c, err := asObject(o.name(key), raw, o.name(key))
	return c, err == nil, err
}

// Str returns a string member; absent and null read as "".
func (o Object) Str(key string) (string, error) {
	raw, found := o.members[key]
	if !found || isNull(raw) {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", Broken("%s is not a string", o.name(key))
	}
	return s, nil
}

// Strs returns a member that is a list of strings, or a string of
// space-separated words; absent and null read as nil.
func (o Object) Strs(key string) ([]string, error) {
	raw, found := o.members[key]
	if !found || isNull(raw) {
		return nil, nil
	}
	var list []string
	if err := json.Unmarshal(raw, &list); err == nil {
		return list, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, Broken("%s is not a list of strings", o.name(key))
	}
	return bytes2words(s), nil
}

func bytes2words(s string) []string {
	var out []string
	for _, f := range bytes.Fields([]byte(s)) {
		out = append(out, string(f))
	}
	return out
}

// Num returns an integral number member; present is false when absent or
// null.
func (o Object) Num(key string) (n int64, present bool, err error) {
	raw, found := o.members[key]
	if !found || isNull(raw) {
		return 0, false, nil
	}
	var f float64
	if err := json.Unmarshal(raw, &f); err != nil || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
		return 0, false, Broken("%s is not a whole number", o.name(key))
	}
	return int64(f), true, nil
}

// JWTClaims decodes the payload of a JWT without verifying it: only what
// it says (expiry, account) is needed, never its authenticity. ok is false
// for anything that is not a JWT with a JSON object payload.
func JWTClaims(token string) (map[string]json.RawMessage, bool) {
	first := bytes.IndexByte([]byte(token), '.')
	if first < 0 {
		return nil, false
	}
	rest := token[first+1:]
	second := bytes.IndexByte([]byte(rest), '.')
	if second < 0 || bytes.IndexByte([]byte(rest[second+1:]), '.') >= 0 {
		return nil, false
	}
	payload, err := decodeSegment(rest[:second])
	if err != nil {
		return nil, false
	}
	var claims map[string]json.RawMessage
	if json.Unmarshal(payload, &claims) != nil {
		return nil, false
	}
	return claims, true
}
