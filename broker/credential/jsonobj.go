package credential

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
)

// object is one decoded JSON object whose members stay raw, so that checks
// can name a field without ever printing its value.
type object struct {
	path    string // e.g. "claudeAiOauth", for messages
	members map[string]json.RawMessage
}

// parseTop decodes data as one JSON object.
func parseTop(data []byte) (object, error) {
	if err := checkCommon(data); err != nil {
		return object{}, err
	}
	if !json.Valid(data) {
		var se *json.SyntaxError
		err := json.Unmarshal(data, new(any))
		if errors.As(err, &se) && se.Offset >= int64(len(bytes.TrimRight(data, " \t\r\n"))) {
			return object{}, partial("not valid JSON: ends early at byte %d (truncated, or caught mid-write)", se.Offset)
		}
		if errors.As(err, &se) {
			return object{}, partial("not valid JSON (syntax error at byte %d)", se.Offset)
		}
		return object{}, partial("not valid JSON")
	}
	return asObject("", data, "the file")
}

func partial(format string, args ...any) error {
	return &BrokenError{Reason: fmt.Sprintf(format, args...), Partial: true}
}

func asObject(path string, raw json.RawMessage, what string) (object, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return object{}, broken("%s is not a JSON object", what)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return object{}, broken("%s is not a JSON object", what)
	}
	return object{path: path, members: m}, nil
}

func (o object) name(key string) string {
	if o.path == "" {
		return key
	}
	return o.path + "." + key
}

func isNull(raw json.RawMessage) bool {
	return raw == nil || bytes.Equal(bytes.TrimSpace(raw), []byte("null"))
}

// child returns the member key as an object; ok is false when it is absent
// or null.
func (o object) child(key string) (object, bool, error) {
	raw, found := o.members[key]
	if !found || isNull(raw) {
		return object{}, false, nil
	}
	c, err := asObject(o.name(key), raw, o.name(key))
	return c, err == nil, err
}

// str returns a string member; absent and null read as "".
func (o object) str(key string) (string, error) {
	raw, found := o.members[key]
	if !found || isNull(raw) {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", broken("%s is not a string", o.name(key))
	}
	return s, nil
}

// num returns an integral number member; present is false when absent or
// null.
func (o object) num(key string) (n int64, present bool, err error) {
	raw, found := o.members[key]
	if !found || isNull(raw) {
		return 0, false, nil
	}
	var f float64
	if err := json.Unmarshal(raw, &f); err != nil || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
		return 0, false, broken("%s is not a whole number", o.name(key))
	}
	return int64(f), true, nil
}
