package compose

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// summary is one line per finding: file:line service problem.
func summary(fs []Finding) string {
	var lines []string
	for _, f := range fs {
		lines = append(lines, strings.Join([]string{filepath.Base(f.File) + ":" + strconv.Itoa(f.Line), f.Service, string(f.Problem)}, " "))
	}
	return strings.Join(lines, "\n")
}

func TestCheckFlagsEachBadPattern(t *testing.T) {
	fs, err := CheckOptions{Env: map[string]string{}}.Check("testdata/bad/compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Join([]string{
		"compose.yaml:6 single-file single-file-mount",
		"compose.yaml:10 read-only read-only",
		"compose.yaml:14 read-only-long read-only",
		"compose.yaml:21 missing missing-source",
		"compose.yaml:30 secret single-file-mount",
		"compose.yaml:32 not-external volume-not-external",
		"compose.yaml:33 not-external volume-not-external",
	}, "\n")
	if got := summary(fs); got != want {
		t.Errorf("findings:\n%s\nwant:\n%s", got, want)
	}
	for _, f := range fs {
		if f.Message == "" || f.Fix == "" || f.Service == "" {
			t.Errorf("finding lacks a message, fix or service: %+v", f)
		}
	}
	// What a user reads: the short-syntax missing source is created empty.
	for _, f := range fs {
		if f.Problem == MissingSource && !strings.Contains(f.Message, "empty directory owned by root") {
			t.Errorf("missing-source message does not say compose creates it: %s", f.Message)
		}
		if f.Problem == NotExternal && f.Line == 32 && !strings.Contains(f.Message, "down -v") {
			t.Errorf("not-external message does not say what deletes it: %s", f.Message)
		}
	}
}

func TestCheckPassesGoodFile(t *testing.T) {
	// CACHE_DIR is required (${CACHE_DIR:?}) and unset; ENV_FILE names a
	// missing file: neither stops the check.
	fs, err := CheckOptions{Env: map[string]string{}}.Check("testdata/good/compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(fs) != 0 {
		t.Errorf("a good file has findings:\n%s", summary(fs))
	}
}

func TestCheckMergesFilesLikeCompose(t *testing.T) {
	o := CheckOptions{Env: map[string]string{"CLAUDE_COPY": "./no-such-copy"}}
	fs, err := o.Check("testdata/merge/compose.yaml", "testdata/merge/compose.override.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// The override makes the codex mount read-write again: no finding. The
	// single file comes from the override, and the line says so; the
	// interpolated, relative source is resolved against the project dir.
	want := "compose.yaml:6 app missing-source\ncompose.override.yaml:5 app single-file-mount"
	if got := summary(fs); got != want {
		t.Errorf("findings:\n%s\nwant:\n%s", got, want)
	}
	abs, _ := filepath.Abs("testdata/merge/no-such-copy")
	if !strings.Contains(fs[0].Message, abs) {
		t.Errorf("missing source not resolved against the project dir (%s): %s", abs, fs[0].Message)
	}
	if fs[1].File != "testdata/merge/compose.override.yaml" {
		t.Errorf("file named as %q, want as given", fs[1].File)
	}
}

func TestCheckKnowsCopyDirsAndLongSyntax(t *testing.T) {
	dir := t.TempDir()
	copyDir := filepath.Join(dir, "copies", "work")
	if err := os.MkdirAll(copyDir, 0o700); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "compose.yaml")
	writeFile(t, file, `services:
  app:
    image: x
    volumes:
      - type: bind
        source: `+copyDir+`
        target: /creds
        read_only: true
      - type: bind
        source: ./gone/.codex
        target: /root/.codex
      - type: volume
        source: logins
        target: /home/u/.claude
        read_only: true
volumes:
  logins:
    external: true
`)
	fs, err := CheckOptions{Env: map[string]string{}, CopyDirs: []string{copyDir}}.Check(file)
	if err != nil {
		t.Fatal(err)
	}
	want := "compose.yaml:5 app read-only\ncompose.yaml:9 app missing-source\ncompose.yaml:12 app read-only"
	if got := summary(fs); got != want {
		t.Errorf("findings:\n%s\nwant:\n%s", got, want)
	}
	if len(fs) == 3 && !strings.Contains(fs[1].Message, "`up` stops with an error") {
		t.Errorf("long-syntax missing source: %s", fs[1].Message)
	}
}

func TestCheckRefusesUnreadableAndInvalidFiles(t *testing.T) {
	dir := t.TempDir()
	invalid := filepath.Join(dir, "invalid.yaml")
	writeFile(t, invalid, "services:\n  app:\n    volumes: 12\n")
	notYAML := filepath.Join(dir, "not.yaml")
	writeFile(t, notYAML, "services: [\n")
	for _, files := range [][]string{{filepath.Join(dir, "absent.yaml")}, {dir}, {invalid}, {notYAML}, {}} {
		_, err := CheckOptions{Env: map[string]string{}}.Check(files...)
		var le *LoadError
		if !errors.As(err, &le) {
			t.Errorf("Check(%v) = %v, want a *LoadError", files, err)
		}
	}
}

func writeFile(t *testing.T, name, content string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestCheckInterpolatesLikeComposeWithoutFailing(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "auth", "claude"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, mount, want string
	}{
		// compose makes this /codex, and would create it: say so.
		{"unset becomes empty", "${UNSET_BASE}/codex:/root/.codex", "compose.yaml:5 app missing-source"},
		{"default applies", "${UNSET_BASE:-./auth}/claude:/root/.claude:ro", "compose.yaml:5 app read-only"},
		{"set variable", "${SET_BASE}/claude:/root/.claude:ro", "compose.yaml:5 app read-only"},
		// Compose would stop on these; the check goes on and cannot tell
		// whether the source exists.
		{"unset required", "${UNSET_BASE:?set it}/claude:/root/.claude", ""},
		{"unset whole source", "${UNSET_DIR}:/root/.claude:ro", "compose.yaml:5 app read-only"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			file := filepath.Join(dir, "compose.yaml")
			writeFile(t, file, "services:\n  app:\n    image: x\n    volumes:\n      - "+tt.mount+"\n")
			fs, err := CheckOptions{Env: map[string]string{"SET_BASE": "./auth"}}.Check(file)
			if err != nil {
				t.Fatal(err)
			}
			if got := summary(fs); got != tt.want {
				t.Errorf("findings %q, want %q", got, tt.want)
			}
		})
	}
}

// TestCheckFlagsVariablesThatBeatAMountedLogin: a service that mounts a
// login and sets a variable its CLI prefers is reported, by name, at the
// line that sets it; a value never appears. Variables of CLIs it does not
// mount, and services that mount no login, are left alone.
func TestCheckFlagsVariablesThatBeatAMountedLogin(t *testing.T) {
	overrides := map[string]string{"ANTHROPIC_API_KEY": "claude", "CLAUDE_CODE_OAUTH_TOKEN": "claude", "OPENAI_API_KEY": "codex", "CODEX_API_KEY": "codex"}
	fs, err := CheckOptions{Env: map[string]string{"OPENAI_API_KEY": "sk-FAKE-FROM-THE-SHELL"}, Overrides: overrides}.Check("testdata/override/compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Join([]string{
		"compose.yaml:8 app login-override",
		"compose.yaml:16 codex login-override",
		"compose.yaml:17 codex login-override",
	}, "\n")
	if got := summary(fs); got != want {
		t.Errorf("findings:\n%s\nwant:\n%s", got, want)
	}
	for _, f := range fs {
		if strings.Contains(f.Message+f.Fix, "FAKE") || !strings.Contains(f.Message, "value not shown") {
			t.Errorf("a finding shows a value, or does not say it is hidden: %s", f.Message)
		}
	}
}
