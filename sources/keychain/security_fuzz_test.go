package keychain

import (
	"bytes"
	"encoding/hex"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// FuzzParseAttributes: whatever security prints, ParseAttributes never
// panics, what it finds is a date of the keychain's form, and the label it
// reads (kept on write-back) never makes the command sent to security -i
// more than one line: a label that cannot be quoted is refused.
func FuzzParseAttributes(f *testing.F) {
	real, err := os.ReadFile(filepath.Join("..", "..", "testdata", "fixtures", "security", "find-generic-password.txt"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(real)
	f.Add([]byte("    0x00000007 <blob>=0x4D7920C3A96C00  \"My \\303\\251l\\000\"\n"))
	f.Add([]byte("    0x00000007 <blob>=<NULL>\n    \"mdat\"<timedate>=0x00  \"20261129080000Z\\000\"\n"))
	f.Add([]byte("    0x00000007 <blob>=\"\n"))
	date := regexp.MustCompile(`^(\d{14}Z)?$`)
	f.Fuzz(func(t *testing.T, out []byte) {
		a := ParseAttributes(out)
		if !date.MatchString(a.Modified) {
			t.Fatalf("Modified %q is not a keychain date", a.Modified)
		}
		line, err := addCommand(ClaudeItem("", "dev"), a.Label, []byte(`{"claudeAiOauth":{}}`))
		if err == nil && (bytes.Count(line, []byte("\n")) != 1 || !bytes.HasSuffix(line, []byte("\n")) || bytes.ContainsRune(line, '\r')) {
			t.Fatalf("label %q makes the command %q", a.Label, line)
		}
	})
}

// FuzzParseBlob: a quoted blob is read as the text between the quotes; a
// hex blob as its bytes without trailing NULs.
func FuzzParseBlob(f *testing.F) {
	for _, s := range []string{`"Claude Code-credentials"`, `0x4D7920C3A96C00  "My \303\251l\000"`, "<NULL>", `"`, "0x", "0xZZ", `0x41 "A"`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		got := parseBlob(v)
		switch {
		case len(v) >= 2 && strings.HasPrefix(v, `"`) && strings.HasSuffix(v, `"`):
			if got != v[1:len(v)-1] {
				t.Fatalf("parseBlob(%q) = %q", v, got)
			}
		case strings.HasPrefix(v, "0x"):
			h, _, _ := strings.Cut(v[2:], " ")
			if b, err := hex.DecodeString(h); err == nil && got != strings.TrimRight(string(b), "\x00") {
				t.Fatalf("parseBlob(%q) = %q, want %q", v, got, strings.TrimRight(string(b), "\x00"))
			}
		}
		// And a label written as hex reads back.
		label := strings.TrimRight(v, "\x00")
		if back := parseBlob("0x" + strings.ToUpper(hex.EncodeToString([]byte(label))) + "00  \"...\""); back != label {
			t.Fatalf("the hex form of %q reads back as %q", label, back)
		}
	})
}

// FuzzDecodePassword: security -w prints a secret as it is, or as hex when
// it holds a byte that is not printable ASCII (a JSON login with newlines
// or UTF-8); both read back as the secret. A login is a JSON object, so
// one that security printed as it is never reads as hex.
func FuzzDecodePassword(f *testing.F) {
	for _, name := range []string{"claude/credentials.valid.json", "gemini/keychain-item.json", "codex/auth.chatgpt.json"} {
		data, err := os.ReadFile(filepath.Join("..", "..", "testdata", "fixtures", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
		f.Add(bytes.Join(bytes.Fields(data), nil)) // printed as it is
	}
	f.Add([]byte(""))
	f.Add([]byte("{}"))
	f.Fuzz(func(t *testing.T, secret []byte) {
		for _, enc := range []string{hex.EncodeToString(secret), strings.ToUpper(hex.EncodeToString(secret))} {
			if got := decodePassword([]byte(enc + "\n")); !bytes.Equal(got, secret) {
				t.Fatalf("the hex form of %d bytes reads back as %d other bytes", len(secret), len(got))
			}
		}
		if printable(secret) && bytes.HasPrefix(secret, []byte("{")) {
			if got := decodePassword(append(append([]byte(nil), secret...), '\n')); !bytes.Equal(got, secret) {
				t.Fatalf("a JSON secret printed as it is reads back as %d other bytes", len(got))
			}
		}
	})
}

// printable is what security prints as it is: printable ASCII only.
func printable(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}
