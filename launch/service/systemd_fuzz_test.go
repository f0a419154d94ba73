package service

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzUnitCommandLine: any argv (the binary's path, a config path, a
// variable's value from the user's environment) is written into the unit
// so that systemd reads back exactly those words: one line, every space
// and quote inside quotes, every % doubled (systemd's specifiers) and, past
// the executable, every $ doubled (its variables); a control character,
// which no quoting can put on one line, and bytes that are not UTF-8,
// for which systemd ignores the line, are refused.
func FuzzUnitCommandLine(f *testing.F) {
	for _, s := range []string{"/usr/bin/mc-broker\x00watch", "/opt/my tools/100% $HOME/mc-broker\x00watch\x00--config\x00/c/a \"b\" \\ c $x %h.yaml", "/x\x00", "/x\x00;\x00\"\x00'\x00\\", "/a b\x00a\nb", "/x\x00%%%\x00$$$"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, words string) {
		args := strings.Split(words, "\x00")
		if !strings.HasPrefix(args[0], "/") {
			args[0] = "/" + args[0] // the binary's absolute path
		}
		line, err := unitCommandLine(args)
		control := slices.ContainsFunc(args, unquotable)
		if err != nil {
			if !control {
				t.Fatalf("unitCommandLine(%q): %v", args, err)
			}
			return
		}
		if control || strings.ContainsAny(line, "\n\r") {
			t.Fatalf("a control character or a byte that is not UTF-8 reached the unit: %q", line)
		}
		checkUnitWords(t, line, len(args))
		for _, a := range args[1:] {
			q, _ := unitQuote(a, true)
			for _, run := range strings.FieldsFunc(q, func(r rune) bool { return r != '$' }) {
				if len(run)%2 != 0 {
					t.Fatalf("an odd run of $ in %q: systemd reads a variable", q)
				}
			}
		}
		d := &systemd{}
		got, err := d.program([]byte("[Service]\nExecStart=" + line + "\n"))
		if err != nil || !reflect.DeepEqual(got, args) {
			t.Fatalf("ExecStart=%s\nreads back as %q (%v), want %q", line, got, err, args)
		}
	})
}

// FuzzUnitEnvironment: an Environment= assignment is one word, read back
// as it was written.
func FuzzUnitEnvironment(f *testing.F) {
	for _, s := range []string{"DOCKER_HOST=unix:///run/user/1000/docker sock%", `CLAUDE_CONFIG_DIR=/home/me/claude "$dir"`, "A=", "A=\\"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, assignment string) {
		v, err := unitQuote(assignment, false)
		if err != nil {
			if !unquotable(assignment) {
				t.Fatalf("unitQuote(%q): %v", assignment, err)
			}
			return
		}
		if strings.ContainsAny(v, "\n\r") {
			t.Fatalf("a line break reached the unit: %q", v)
		}
		checkUnitWords(t, v, 1)
		words, err := splitUnitWords(v)
		if err != nil || len(words) != 1 || words[0] != assignment {
			t.Fatalf("Environment=%s reads back as %q (%v), want %q", v, words, err, assignment)
		}
	})
}

// unquotable is what no quoting puts on a unit's line: a control
// character, or bytes that are not UTF-8.
func unquotable(s string) bool {
	return !utf8.ValidString(s) || strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
}

// checkUnitWords checks what systemd sees in a line of n words: n-1
// spaces outside quotes, every run of % even (so never a specifier).
func checkUnitWords(t *testing.T, line string, n int) {
	t.Helper()
	var quote rune
	spaces := 0
	rs := []rune(line)
	for i := 0; i < len(rs); i++ {
		switch r := rs[i]; {
		case r == '\\':
			i++
		case quote != 0 && r == quote:
			quote = 0
		case quote == 0 && (r == '"' || r == '\''):
			quote = r
		case quote == 0 && (r == ' ' || r == '\t'):
			spaces++
		case r == '%':
			j := i
			for j < len(rs) && rs[j] == '%' {
				j++
			}
			if (j-i)%2 != 0 {
				t.Fatalf("an odd run of %% in %q: systemd reads a specifier", line)
			}
			i = j - 1
		}
	}
	if quote != 0 || spaces != n-1 {
		t.Fatalf("%q: %d spaces outside quotes for %d words (quote open: %v)", line, spaces, n, quote != 0)
	}
}
