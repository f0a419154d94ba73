package kinds_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	. "github.com/mc-broker/mc-broker/broker/credential"
)

// The fuzz tests below feed each kind what a container can write into its
// copy. `go test` runs the seeds (every fixture); `go test -fuzz
// FuzzInspect ./broker/kinds/` looks further.

var allKinds = []Kind{Claude, Codex, Gemini, Opaque}

// seedFixtures adds every credential fixture to f's corpus.
func seedFixtures(f *testing.F, add func(data []byte)) {
	f.Helper()
	paths, err := filepath.Glob(filepath.Join("..", "..", "testdata", "fixtures", "*", "*.json"))
	if err != nil || len(paths) == 0 {
		f.Fatalf("no fixtures: %v", err)
	}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		add(data)
	}
	for _, s := range []string{"", " ", "{}", "null", "[]", `{"claudeAiOauth":null}`, `{"tokens":{}}`, "\x00\xff{", `{"a":1,"a":2}`} {
		add([]byte(s))
	}
}

// secretValues are the JSON string values in data (keys left out) that
// could be a token: 8 bytes or more, not only letters and punctuation
// (which an error message may hold by chance: a member's name).
func secretValues(data []byte) []string {
	var out []string
	for i := 0; i < len(data); i++ {
		if data[i] != '"' {
			continue
		}
		j := i + 1
		for ; j < len(data) && data[j] != '"'; j++ {
			if data[j] == '\\' {
				j++
			}
		}
		if j >= len(data) {
			break
		}
		v := string(data[i+1 : j])
		k := j + 1
		for k < len(data) && strings.ContainsRune(" \t\r\n", rune(data[k])) {
			k++
		}
		isKey := k < len(data) && data[k] == ':'
		if !isKey && len(v) >= 8 && !wordsOnly.MatchString(v) {
			out = append(out, v)
		}
		i = j
	}
	return out
}

var (
	wordsOnly   = regexp.MustCompile(`^[A-Za-z .,:;()'-]*$`)
	fingerprint = regexp.MustCompile(`^(sha256:[0-9a-f]{12})?$`)
)

// class names what Inspect made of content.
func class(err error) string {
	var b *BrokenError
	switch {
	case err == nil:
		return "valid"
	case errors.Is(err, ErrNotLoggedIn):
		return "not-logged-in"
	case errors.As(err, &b) && b.Partial && b.Foreign:
		return "partial+foreign"
	case errors.As(err, &b) && b.Partial:
		return "partial"
	case errors.As(err, &b) && b.Foreign:
		return "foreign"
	case errors.As(err, &b):
		return "broken"
	}
	return "other: " + fmt.Sprintf("%T", err)
}

// FuzzInspect: whatever a container writes, Inspect never panics, never
// puts a token into its error or Info, and classifies the content the same
// however it is padded with whitespace. Every prefix of a valid login (a
// write caught halfway) is partial: waited for, never refused as foreign
// or repaired at once.
func FuzzInspect(f *testing.F) {
	seedFixtures(f, func(data []byte) { f.Add(data) })
	f.Fuzz(func(t *testing.T, data []byte) {
		secrets := secretValues(data)
		for _, k := range allKinds {
			info, err := k.Inspect(data)
			c := class(err)
			if c == "partial+foreign" || strings.HasPrefix(c, "other") {
				t.Fatalf("%s: Inspect returned %s: %v", k.Name(), c, err)
			}
			shown := fmt.Sprintf("%+v", info)
			if err != nil {
				shown += " " + err.Error()
			}
			for _, s := range secrets {
				if strings.Contains(shown, s) {
					t.Fatalf("%s: Inspect shows a value of the content (%d bytes) in its error or Info", k.Name(), len(s))
				}
			}
			if !fingerprint.MatchString(info.Fingerprint) || !fingerprint.MatchString(info.Identity) {
				t.Fatalf("%s: fingerprint %q or identity %q is not sha256:+12 hex", k.Name(), info.Fingerprint, info.Identity)
			}
			if err != nil && (info != Info{}) {
				t.Fatalf("%s: Inspect returned an Info with an error", k.Name())
			}
			if _, again := k.Inspect(data); class(again) != c {
				t.Fatalf("%s: Inspect is not deterministic: %s, then %s", k.Name(), c, class(again))
			}
			if len(data) < MaxSize-8 {
				padded := append(append([]byte(" \n\t"), data...), "\r\n "...)
				if _, perr := k.Inspect(padded); class(perr) != c {
					t.Fatalf("%s: %s, but %s with whitespace around it", k.Name(), c, class(perr))
				}
			}
			if c != "valid" || k == Opaque {
				continue
			}
			end := len(bytes.TrimRight(data, " \t\r\n"))
			for _, n := range []int{0, 1, end / 3, end / 2, end - 1} {
				if n < 0 || n >= end {
					continue
				}
				if _, perr := k.Inspect(data[:n]); class(perr) != "partial" {
					t.Fatalf("%s: a valid login cut at byte %d of %d is %s, want partial (%v)", k.Name(), n, end, class(perr), perr)
				}
			}
		}
	})
}

// loginKeys are the members a take-back copies from a copy into the
// host's file (all members of the copy when the host's file does not
// parse, for codex: also auth_mode and OPENAI_API_KEY).
func loginKeys(k Kind, hostParses bool) []string {
	switch k {
	case Claude:
		return []string{"claudeAiOauth"}
	case Codex:
		if !hostParses {
			return []string{"tokens", "last_refresh", "auth_mode", "OPENAI_API_KEY"}
		}
		return []string{"tokens", "last_refresh"}
	case Gemini:
		return []string{"access_token", "refresh_token", "scope", "token_type", "id_token", "expiry_date"}
	}
	return nil
}

func members(t *testing.T, data []byte) map[string]json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil || m == nil {
		t.Fatalf("not a JSON object: %v", err)
	}
	return m
}

// FuzzTakeBack: what a take-back writes into the host's file parses, holds
// the copy's login members as the copy holds them, and every other member
// as the host held it: nothing else a container wrote reaches the host.
func FuzzTakeBack(f *testing.F) {
	var logins [][]byte
	seedFixtures(f, func(data []byte) { logins = append(logins, data) })
	for _, host := range logins {
		for _, c := range logins {
			f.Add(host, c)
		}
	}
	f.Fuzz(func(t *testing.T, host, fromCopy []byte) {
		for _, k := range []Kind{Claude, Codex, Gemini} {
			out, err := k.TakeBack(host, fromCopy)
			if err != nil {
				continue
			}
			if !json.Valid(out) {
				t.Fatalf("%s: TakeBack gave invalid JSON", k.Name())
			}
			_, herr := ParseObject(host)
			got, c := members(t, out), members(t, fromCopy)
			var h map[string]json.RawMessage
			if herr == nil {
				h = members(t, host)
			}
			login := map[string]bool{}
			for _, key := range loginKeys(k, herr == nil) {
				login[key] = true
				want, inCopy := c[key]
				have, inOut := got[key]
				switch {
				case inCopy != inOut:
					t.Fatalf("%s: member %q in the copy %v, in the result %v", k.Name(), key, inCopy, inOut)
				case inCopy && !bytes.Equal(want, have):
					t.Fatalf("%s: member %q differs from the copy's", k.Name(), key)
				}
			}
			for key, v := range got {
				if login[key] {
					continue
				}
				if hv, ok := h[key]; !ok || !bytes.Equal(hv, v) {
					t.Fatalf("%s: member %q of the result is not the host's", k.Name(), key)
				}
			}
			for key, v := range h {
				if !login[key] && !bytes.Equal(got[key], v) {
					t.Fatalf("%s: the host's member %q was lost or changed", k.Name(), key)
				}
			}
		}
	})
}

// FuzzForCopy: what a copy gets parses and differs from the host's login
// only as documented: Claude's without mcpOAuth (unless asked), every
// other member as it was.
func FuzzForCopy(f *testing.F) {
	seedFixtures(f, func(data []byte) { f.Add(data, false) })
	f.Add([]byte(`{"mcpOAuth":1,"claudeAiOauth":{},"mcpOAuth":2}`), false)
	f.Fuzz(func(t *testing.T, data []byte, withMCP bool) {
		if _, err := ParseObject(data); err != nil {
			return // ForCopy is only given valid logins
		}
		for _, k := range allKinds {
			out, err := k.ForCopy(data, CopyOptions{IncludeMCPOAuth: withMCP})
			if err != nil {
				t.Fatalf("%s: ForCopy of a JSON object: %v", k.Name(), err)
			}
			if k != Claude || withMCP {
				if !bytes.Equal(out, data) {
					t.Fatalf("%s: ForCopy changed the login", k.Name())
				}
				continue
			}
			if !json.Valid(out) {
				t.Fatal("claude: ForCopy gave invalid JSON")
			}
			in, got := members(t, data), members(t, out)
			if _, ok := got["mcpOAuth"]; ok {
				t.Fatal("claude: the copy holds mcpOAuth")
			}
			delete(in, "mcpOAuth")
			if len(in) != len(got) {
				t.Fatalf("claude: %d members, want %d", len(got), len(in))
			}
			for key, v := range in {
				if !bytes.Equal(got[key], v) {
					t.Fatalf("claude: member %q changed", key)
				}
			}
		}
	})
}
