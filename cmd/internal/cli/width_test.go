package cli

import (
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/mc-broker/mc-broker/cmd/internal/doctor"
)

func TestOutputWidth(t *testing.T) {
	env := func(cols string) func(string) string {
		return func(k string) string { return map[string]string{"COLUMNS": cols}[k] }
	}
	var buf bytes.Buffer
	if got := outputWidth(&buf, env("100")); got != 100 {
		t.Errorf("COLUMNS=100: %d", got)
	}
	// Not a terminal and no COLUMNS: not wrapped, so grep sees whole checks.
	if got := outputWidth(&buf, env("")); got != 0 {
		t.Errorf("a buffer: %d, want 0", got)
	}
	if got := outputWidth(&buf, env("wide")); got != 0 {
		t.Errorf("COLUMNS=wide: %d, want 0", got)
	}
}

func TestDoctorWrapsToTheWidth(t *testing.T) {
	long := "cannot read /home/someone/.claude/.credentials.json: .credentials.json is a directory, not a file — and more words to wrap"
	fix := "Docker creates an empty directory on the host when it bind-mounts a file that does not exist: remove it (rmdir /home/someone/.claude/.credentials.json/with/a/very/long/unbreakable/path) and log in again"
	res := &doctor.Result{Checks: []doctor.Check{
		{Area: "source", Name: "claude", Status: doctor.Fail, Detail: long, Fix: fix},
		{Area: "source", Name: "codex", Status: doctor.Info, Detail: "not logged in", Fix: "run codex login"},
	}}

	var out bytes.Buffer
	printDoctor(&out, 60, res)
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	for _, l := range lines {
		if n := utf8.RuneCountInString(l); n > 60 && strings.Contains(strings.TrimSpace(l), " ") {
			t.Errorf("line of %d columns with a space to break at:\n%s", n, l)
		}
	}
	want := []string{
		"FAIL  source claude: cannot read",
		"      /home/someone/.claude/.credentials.json:",
		"      .credentials.json is a directory, not a file — and",
		"      more words to wrap",
		"      fix: Docker creates an empty directory on the host",
		"           when it bind-mounts a file that does not exist:",
		"           remove it (rmdir",
		"           /home/someone/.claude/.credentials.json/with/a/very/long/unbreakable/path)",
		"           and log in again",
		"info  source codex: not logged in",
		"      run codex login",
		"1 problem needs you; its fix is above.",
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("wrapped to 60:\n%s\nwant:\n%s", out.String(), strings.Join(want, "\n"))
	}

	// Width 0 (a pipe): one line per check, as before.
	out.Reset()
	printDoctor(&out, 0, res)
	if !strings.HasPrefix(out.String(), "FAIL  source claude: "+long+"\n      fix: "+fix+"\n") {
		t.Errorf("unwrapped:\n%s", out.String())
	}
}
