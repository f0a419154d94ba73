package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// run runs the built binary with HOME=home and a clean environment. Unless
// env names DOCKER_HOST, it points at no engine: the built-in defaults must
// not write this machine's mc-*-auth volumes.
func run(t *testing.T, home string, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "mc-broker"), args...)
	cmd.Env = []string{"HOME=" + home, "PATH=" + os.Getenv("PATH"), "DOCKER_HOST=unix://" + filepath.Join(home, "no-docker.sock")}
	cmd.Env = append(cmd.Env, env...) // later entries win
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

func putFixture(t *testing.T, name, dest string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(fixturesDir(t), name))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dest, data)
}

// fixtureExpiringIn is a Claude or Gemini fixture whose login expires ttl
// from now (2100 in the fixture) and whose tokens carry tag: a copy's login
// is taken back only when it expires within what the CLI ever issues.
func fixtureExpiringIn(t *testing.T, name string, ttl time.Duration, tag string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(fixturesDir(t), name))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data, []byte("4102444800000")) {
		t.Fatalf("fixture %s has no expiry to set", name)
	}
	data = bytes.Replace(data, []byte("4102444800000"), []byte(strconv.FormatInt(time.Now().Add(ttl).UnixMilli(), 10)), 1)
	return bytes.ReplaceAll(data, []byte("TOKEN-0001"), []byte("TOKEN-"+tag))
}

func writeFile(t *testing.T, dest string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(dest), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dest, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// secrets are substrings of every token, refresh token and API key in the
// fixtures (all contain FAKE), and the start of every JWT.
var secrets = []string{"FAKE", "eyJ", "sk-ant-", "ya29.", "rt_"}

func assertNoSecret(t *testing.T, what, out string) {
	t.Helper()
	for _, s := range secrets {
		if strings.Contains(out, s) {
			t.Errorf("%s shows a secret: it contains %q at byte %d (output not repeated here)", what, s, strings.Index(out, s))
		}
	}
}

// TestNoSecretInAnyOutput runs every command, in text and JSON, over valid,
// broken, newer and failing copies, and searches everything printed.
func TestNoSecretInAnyOutput(t *testing.T) {
	home := t.TempDir()
	putFixture(t, "claude/credentials.valid.json", filepath.Join(home, ".claude/.credentials.json"))
	putFixture(t, "codex/auth.chatgpt.json", filepath.Join(home, ".codex/auth.json"))
	putFixture(t, "gemini/oauth_creds.json", filepath.Join(home, ".gemini/oauth_creds.json"))
	auth := filepath.Join(home, "auth")
	// A newer copy, a broken copy and a truncated source in the mix.
	putFixture(t, "claude/credentials.truncated.json", filepath.Join(auth, "claude/.credentials.json"))
	putFixture(t, "codex/auth.apikey.json", filepath.Join(auth, "codex/auth.json"))
	badConfig := filepath.Join(home, "bad.yaml")
	writeFile(t, badConfig, []byte("sources:\n  claude: {kind: sk-ant-oat01-FAKE-IN-CONFIG}\n"))

	// A compose file that mounts the logins badly: check names the files,
	// never what is in them.
	composeFile := filepath.Join(home, "compose.yaml")
	writeFile(t, composeFile, []byte("services:\n  app:\n    image: x\n    volumes:\n      - ./.claude/.credentials.json:/root/.claude/.credentials.json:ro\n      - ./auth/codex:/root/.codex:ro\n"))

	commands := [][]string{
		{"sync"}, {"sync", "--json"}, {"sync", "--dry-run"}, {"sync", "--dir", auth},
		{"sync", "--dir", auth, "--json", "--min-ttl", "1000000h"},
		{"status"}, {"status", "--json"}, {"status", "--dir", auth}, {"status", "--dir", auth, "--json"},
		{"sync", "--config", badConfig}, {"sync", "--config", filepath.Join(home, ".claude/.credentials.json")},
		{"sync", "--only", "claude,gemini"}, {"sync", "--dry-run", "--json"}, {"sync", "--dir", auth, "--dry-run"},
		{"status", "--only", "claude", "--json"}, {"status", "--only", "codex"},
		{"version"}, {"--help"},
		{"launch", "install", "--dry-run"}, {"launch", "install", "--dry-run", "--json"},
		{"launch", "status"}, {"launch", "status", "--json"},
		{"compose", "--dir", auth, "--service", "app=claude,codex,gemini"}, {"compose", "--config", badConfig, "--service", "app=claude"},
		{"compose", "check", composeFile}, {"compose", "check", "--json", composeFile},
		{"run", "--", "true"}, {"run", "--log-level", "debug", "--log-format", "json", "--", "true"},
		{"run", "--log-level", "debug", "--log-format", "text", "--min-ttl", "1000000h", "--", "true"},
		{"run", "--config", badConfig, "--", "true"}, {"watch", "--config", badConfig},
		{"watch", "--help"}, {"run", "--help"}, {"login", "--help"}, {"revoke", "--help"},
		{"sync", "--min-refresh-ttl", "1000000h", "--json"}, {"doctor"}, {"doctor", "--json"},
		// Last: revoke takes the copies out (the next round's sync lifts
		// it). login and revoke --host run the CLIs' own commands: with
		// stand-ins in lifecycle_e2e_test.go, never the real ones here.
		{"revoke", "--all"}, {"status", "--json"}, {"revoke", "claude", "--json"},
	}
	check := func(label string) {
		for _, args := range commands {
			out, errOut, _ := run(t, home, nil, args...)
			assertNoSecret(t, label+" "+strings.Join(args, " ")+" stdout", out)
			assertNoSecret(t, label+" "+strings.Join(args, " ")+" stderr", errOut)
		}
	}
	check("valid sources:")
	putFixture(t, "claude/credentials.truncated.json", filepath.Join(home, ".claude/.credentials.json"))
	putFixture(t, "claude/credentials.blanked.json", filepath.Join(home, "auth/claude/.credentials.json"))
	writeFile(t, filepath.Join(home, ".gemini/oauth_creds.json"), []byte(`{"access_token": "ya29.FAKE`))
	check("broken sources:")

	// A watcher at debug level, in text and JSON, through an adoption, a
	// blanked copy and a half-written source; status while it runs. The
	// harness checks every line the watcher and status print.
	for _, format := range []string{"text", "json"} {
		w := newWorld(t, "claude", 2)
		p := w.start("watch", "--config", w.config, "--log-level", "debug", "--log-format", format)
		p.waitReady(w.state)
		w.replace(w.copies[0], w.forCopy(w.login(2)))
		waitFor(t, 5*time.Second, "the container's login to be adopted", func() (bool, string) {
			return bytes.Contains(read(w.source), []byte("G000002")), "not yet"
		})
		putFixture(t, "claude/credentials.blanked.json", w.copies[1])
		want := w.forCopy(w.login(2))
		waitFor(t, 5*time.Second, "the blanked copy to be repaired", func() (bool, string) {
			return copiesHold(w.copies, want)
		})
		putFixture(t, "claude/credentials.truncated.json", w.source)
		w.run("status", "--config", w.config)
		w.run("status", "--config", w.config, "--json")
		w.run("run", "--config", w.config, "--log-level", "debug", "--", "true")
		p.signal(syscall.SIGTERM)
		p.wait(2 * time.Second)
	}
}

// TestConcurrentSyncsNeverInterleave starts five syncs at once, as five
// pre-run hooks would, each from a host with a different login age, all into
// one --dir. Every copy must end with the newest login, and each copy is
// created exactly once.
func TestConcurrentSyncsNeverInterleave(t *testing.T) {
	root := t.TempDir()
	valid, err := os.ReadFile(filepath.Join(fixturesDir(t), "claude/credentials.valid.json"))
	if err != nil {
		t.Fatal(err)
	}
	const runs = 5
	base := time.Now().Add(4 * time.Hour).UnixMilli()
	homes := make([]string, runs)
	for i := range homes {
		homes[i] = filepath.Join(root, fmt.Sprintf("home%d", i))
		// expiresAt grows with i: home4 holds the newest login.
		login := bytes.Replace(valid, []byte("4102444800000"), []byte(strconv.FormatInt(base+int64(i), 10)), 1)
		writeFile(t, filepath.Join(homes[i], ".claude/.credentials.json"), login)
		putFixture(t, "codex/auth.chatgpt.json", filepath.Join(homes[i], ".codex/auth.json"))
	}
	dir := filepath.Join(root, "auth")
	state := "XDG_STATE_HOME=" + filepath.Join(root, "state") // one lock dir, as for one user
	var wg sync.WaitGroup
	outs := make([]string, runs)
	codes := make([]int, runs)
	for i := range homes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var errOut string
			outs[i], errOut, codes[i] = run(t, homes[i], []string{state}, "sync", "--dir", dir, "--json")
			assertNoSecret(t, "concurrent sync", errOut)
		}()
	}
	wg.Wait()
	codexCreated := 0
	for i, out := range outs {
		if codes[i] != 0 {
			t.Fatalf("run %d exited %d:\n%s", i, codes[i], out)
		}
		var r struct {
			Sources []struct {
				Name   string
				Copies []struct{ Outcome string }
			}
		}
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("run %d: %v\n%s", i, err, out)
		}
		for _, s := range r.Sources {
			for _, c := range s.Copies {
				if s.Name == "codex" && c.Outcome == "created" {
					codexCreated++
				}
			}
		}
	}
	if codexCreated != 1 {
		t.Errorf("the codex copy was created %d times, want exactly once", codexCreated)
	}
	got, err := os.ReadFile(filepath.Join(dir, "claude/.credentials.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(got, []byte(`"expiresAt": `+strconv.FormatInt(base+4, 10))) {
		t.Errorf("the claude copy does not hold the newest login (%d bytes)", len(got))
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "claude"))
	for _, e := range entries {
		// .claude.json is the companion the --dir layout adds, once.
		if e.Name() != ".credentials.json" && e.Name() != ".claude.json" {
			t.Errorf("left behind in the copy directory: %s", e.Name())
		}
	}
}

// TestRealCLIsAcceptCopies points the real claude and codex CLIs (installed
// by scripts/test-env.sh) at copies mc-broker wrote, and asks them, offline,
// whether they are logged in.
func TestRealCLIsAcceptCopies(t *testing.T) {
	claude, errClaude := exec.LookPath("claude")
	codex, errCodex := exec.LookPath("codex")
	if errClaude != nil || errCodex != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("the real CLIs are not installed (run scripts/test-env.sh): %v %v", errClaude, errCodex)
		}
		t.Skip("claude or codex not on PATH; make test installs them")
	}
	home := t.TempDir()
	putFixture(t, "claude/credentials.valid.json", filepath.Join(home, ".claude/.credentials.json"))
	putFixture(t, "codex/auth.chatgpt.json", filepath.Join(home, ".codex/auth.json"))
	auth := filepath.Join(t.TempDir(), "auth")
	if out, errOut, code := run(t, home, nil, "sync", "--dir", auth); code != 0 {
		t.Fatalf("sync exited %d:\n%s%s", code, out, errOut)
	}

	// A container's view: an empty home, the CLI's config dir is the copy.
	containerHome := t.TempDir()
	cmd := exec.Command(claude, "auth", "status")
	cmd.Env = []string{"HOME=" + containerHome, "PATH=" + os.Getenv("PATH"), "CLAUDE_CONFIG_DIR=" + filepath.Join(auth, "claude"), "DISABLE_AUTOUPDATER=1"}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("claude auth status: %v\n%s", err, out)
	}
	var st struct {
		LoggedIn   bool   `json:"loggedIn"`
		AuthMethod string `json:"authMethod"`
	}
	if err := json.Unmarshal(out, &st); err != nil || !st.LoggedIn || st.AuthMethod != "claude.ai" {
		t.Errorf("claude does not find itself logged in from the copy: %v\n%s", err, out)
	}

	cmd = exec.Command(codex, "login", "status")
	cmd.Env = []string{"HOME=" + containerHome, "PATH=" + os.Getenv("PATH"), "CODEX_HOME=" + filepath.Join(auth, "codex")}
	out, err = cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Logged in using ChatGPT") {
		t.Errorf("codex does not find itself logged in from the copy: %v\n%s", err, out)
	}
}

// TestExitCodes pins the documented exit codes of the real binary.
func TestExitCodes(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(t *testing.T, home string)
		args    []string
		code    int
	}{
		{"all good", nil, []string{"sync", "--dir", "auth"}, 0},
		{"not logged in, not asked for", nil, []string{"sync", "--dir", "auth", "--only", "claude"}, 0},
		{"bad flag", nil, []string{"sync", "--bogus"}, 2},
		{"unknown command", nil, []string{"frobnicate"}, 2},
		{"bad config", func(t *testing.T, home string) {
			writeFile(t, filepath.Join(home, ".config/mc-broker/config.yaml"), []byte("sources:\n  claude: {paht: /x}\n"))
		}, []string{"status"}, 2},
		{"asked for, not logged in", nil, []string{"sync", "--dir", "auth", "--only", "codex"}, 3},
		{"broken source", func(t *testing.T, home string) {
			putFixture(t, "claude/credentials.blanked.json", filepath.Join(home, ".claude/.credentials.json"))
		}, []string{"sync", "--dir", "auth"}, 3},
		{"expires too soon", nil, []string{"sync", "--dir", "auth", "--min-ttl", "1000000h"}, 3},
		{"copy cannot be written", func(t *testing.T, home string) {
			writeFile(t, filepath.Join(home, "auth/claude"), []byte("a file where the copy directory belongs"))
		}, []string{"sync", "--dir", "auth"}, 1},
		{"source cannot be read", func(t *testing.T, home string) {
			os.Remove(filepath.Join(home, ".claude/.credentials.json"))
			os.Mkdir(filepath.Join(home, ".claude/.credentials.json"), 0o700)
		}, []string{"sync", "--dir", "auth"}, 1},
		{"broken source and failed copy: 3 wins", func(t *testing.T, home string) {
			putFixture(t, "claude/credentials.blanked.json", filepath.Join(home, ".claude/.credentials.json"))
			putFixture(t, "gemini/oauth_creds.json", filepath.Join(home, ".gemini/oauth_creds.json"))
			writeFile(t, filepath.Join(home, "auth/gemini"), []byte("a file where the copy directory belongs"))
		}, []string{"sync", "--dir", "auth"}, 3},
		{"compose check: clean", func(t *testing.T, home string) {
			writeFile(t, filepath.Join(home, "compose.yaml"), []byte("services:\n  app:\n    image: x\n"))
		}, []string{"compose", "check", "home/compose.yaml"}, 0},
		{"compose check: a problem", func(t *testing.T, home string) {
			writeFile(t, filepath.Join(home, "compose.yaml"), []byte("services:\n  app:\n    image: x\n    volumes: [\"./c:/root/.claude:ro\"]\n"))
		}, []string{"compose", "check", "home/compose.yaml"}, 4},
		{"compose check: not compose", func(t *testing.T, home string) {
			writeFile(t, filepath.Join(home, "compose.yaml"), []byte("services: [\n"))
		}, []string{"compose", "check", "home/compose.yaml"}, 2},
		{"compose: unknown CLI", nil, []string{"compose", "--service", "app=aider"}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			home := t.TempDir()
			putFixture(t, "claude/credentials.valid.json", filepath.Join(home, ".claude/.credentials.json"))
			if tt.prepare != nil {
				tt.prepare(t, home)
			}
			args := append([]string(nil), tt.args...)
			for i, a := range args {
				if a == "auth" {
					args[i] = filepath.Join(home, "auth")
				}
				if rest, ok := strings.CutPrefix(a, "home/"); ok {
					args[i] = filepath.Join(home, rest)
				}
			}
			out, errOut, code := run(t, home, nil, args...)
			if code != tt.code {
				t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.code, out, errOut)
			}
		})
	}
}
