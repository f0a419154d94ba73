package credential

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"unicode/utf8"
)

// seedMembers adds the fixtures and some awkward objects to f's corpus.
func seedMembers(f *testing.F, add func(data []byte)) {
	f.Helper()
	paths, _ := filepath.Glob(filepath.Join("..", "..", "testdata", "fixtures", "*", "*.json"))
	if len(paths) == 0 {
		f.Fatal("no fixtures")
	}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		add(data)
	}
	for _, s := range []string{`{}`, ` { } `, `{"mcpOAuth":1}`, `{"a":1,"mcpOAuth":2}`, `{"mcpOAuth":1,"a":2}`,
		`{"mcpOAuth":1,"a":2,"mcpOAuth":3}`, "{\"a\" : 1 ,\n \"mcpOAuth\" :\t{\"x\":\"}\"} , \"b\":[1,{}]}", `{"mcp\u004fAuth":1,"b":2}`, `{"k\"ey":"v:\"}"}`} {
		add([]byte(s))
	}
}

// object decodes data as a JSON object, last duplicate winning (as every
// JSON parser the CLIs use reads it); ok is false when it is not one.
func object(data []byte) (map[string]json.RawMessage, bool) {
	var m map[string]json.RawMessage
	if !json.Valid(data) || json.Unmarshal(data, &m) != nil || m == nil {
		return nil, false
	}
	return m, true
}

// FuzzRemoveMember: for any JSON object, the result is valid JSON without
// the member, and every other member is byte for byte what it was.
func FuzzRemoveMember(f *testing.F) {
	seedMembers(f, func(data []byte) { f.Add(data, "mcpOAuth") })
	f.Fuzz(func(t *testing.T, data []byte, key string) {
		in, ok := object(data)
		out, err := RemoveMember(data, key)
		if !ok {
			return // not an object: any error will do, and no panic
		}
		if err != nil {
			t.Fatalf("RemoveMember(%q) of a JSON object: %v", key, err)
		}
		got, ok := object(out)
		if !ok {
			t.Fatalf("RemoveMember(%q) gave invalid JSON: %q", key, out)
		}
		if _, there := got[key]; there {
			t.Fatalf("RemoveMember(%q) left it: %q", key, out)
		}
		delete(in, key)
		if len(got) != len(in) {
			t.Fatalf("RemoveMember(%q): %d members left, want %d: %q", key, len(got), len(in), out)
		}
		for k, v := range in {
			if !bytes.Equal(got[k], v) {
				t.Fatalf("RemoveMember(%q) changed member %q: %q", key, k, out)
			}
		}
	})
}

// FuzzSetMembers: for any JSON object and valid value, the result is valid
// JSON holding the value under key (last, if data had it twice), every
// other member byte for byte what it was; a nil value removes the key.
func FuzzSetMembers(f *testing.F) {
	seedMembers(f, func(data []byte) {
		f.Add(data, "claudeAiOauth", []byte(`{"accessToken":"x"}`), false)
		f.Add(data, "tokens", []byte(` null `), false)
		f.Add(data, "last_refresh", []byte(nil), true)
	})
	f.Fuzz(func(t *testing.T, data []byte, key string, value []byte, remove bool) {
		if !utf8.ValidString(key) {
			return // keys are the kinds' constants
		}
		var set json.RawMessage
		if !remove {
			if !json.Valid(value) {
				return
			}
			set = value
		}
		in, ok := object(data)
		out, err := SetMembers(data, []Member{{Key: key, Value: set}})
		if !ok {
			return
		}
		if err != nil {
			t.Fatalf("SetMembers(%q) of a JSON object: %v", key, err)
		}
		got, ok := object(out)
		if !ok {
			t.Fatalf("SetMembers(%q) gave invalid JSON: %q", key, out)
		}
		v, there := got[key]
		switch {
		case remove && there:
			t.Fatalf("SetMembers(%q, nil) left it: %q", key, out)
		case !remove && (!there || !bytes.Equal(v, bytes.TrimSpace(value))):
			t.Fatalf("SetMembers(%q) holds %q, want %q: %q", key, v, value, out)
		}
		delete(in, key)
		delete(got, key)
		if len(got) != len(in) {
			t.Fatalf("SetMembers(%q): %d other members, want %d: %q", key, len(got), len(in), out)
		}
		for k, v := range in {
			if !bytes.Equal(got[k], v) {
				t.Fatalf("SetMembers(%q) changed member %q: %q", key, k, out)
			}
		}
	})
}
