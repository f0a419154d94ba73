package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/mc-broker/mc-broker/broker/kinds/claude"
	"github.com/mc-broker/mc-broker/broker/watch"
	"github.com/mc-broker/mc-broker/sinks/volume"
	"github.com/mc-broker/mc-broker/sinks/volume/volumetest"
)

// standInClaude puts a `claude` on PATH (first) that does what the real
// one's `auth login` and `auth logout` do to the login file, in
// $CLAUDE_CONFIG_DIR or ~/.claude: login writes the file named by
// $STANDIN_LOGIN (temp file and rename, as Claude Code does), logout removes
// it. Each call is logged to $STANDIN_LOG with its config directory.
func standInClaude(t *testing.T, w *world) (log string) {
	t.Helper()
	bin := filepath.Join(w.root, "bin")
	log = filepath.Join(w.root, "standin.log")
	writeFile(t, filepath.Join(bin, "claude"), []byte(`#!/bin/sh
dir=${CLAUDE_CONFIG_DIR:-$HOME/.claude}
echo "$* dir=${CLAUDE_CONFIG_DIR:-unset}" >> "$STANDIN_LOG"
case "$*" in
"auth login")
	mkdir -p "$dir" && cp "$STANDIN_LOGIN" "$dir/.standin.tmp" && mv "$dir/.standin.tmp" "$dir/.credentials.json" || exit 1
	echo "Login successful." ;;
"auth logout")
	rm -f "$dir/.credentials.json"
	echo "Successfully logged out from your Anthropic account." ;;
*)
	echo "unexpected: $*" >&2; exit 9 ;;
esac
`))
	if err := os.Chmod(filepath.Join(bin, "claude"), 0o755); err != nil {
		t.Fatal(err)
	}
	w.env = append(w.env, "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"), "STANDIN_LOG="+log)
	return log
}

// twoAccounts makes w a machine with two Claude accounts: claude in
// ~/.claude and work-claude in ~/.claude-work, each with a copy directory.
func twoAccounts(t *testing.T, w *world, extraSinks string) (work, workCopy string) {
	t.Helper()
	work = filepath.Join(w.home, ".claude-work", ".credentials.json")
	writeFile(t, work, bytes.ReplaceAll(w.login(1), []byte("TOKEN-G"), []byte("TOKEN-WORK-G")))
	workCopy = filepath.Join(w.root, "copies", "work-claude", claude.FileName)
	writeFile(t, w.config, []byte(fmt.Sprintf(`sources:
  claude:
    path: %s
  work-claude:
    kind: claude
    path: %s
sinks:
  - {source: claude, dir: %s}
  - {source: work-claude, dir: %s}
%s`, w.source, work, filepath.Dir(w.copies[0]), filepath.Dir(workCopy), extraSinks)))
	return work, workCopy
}

// TestLoginReseedsEveryCopy: `mc-broker login work-claude` runs the CLI's
// own login for that account only (CLAUDE_CONFIG_DIR set to its
// directory), then gives the new login to every copy of that account at
// once, the --dir layout written earlier included, even after a revoke.
// The other account is not touched.
func TestLoginReseedsEveryCopy(t *testing.T) {
	w := newWorld(t, "claude", 1)
	log := standInClaude(t, w)
	work, workCopy := twoAccounts(t, w, "")
	layout := filepath.Join(w.root, "project", ".auth")
	for _, args := range [][]string{{"sync", "--config", w.config}, {"sync", "--config", w.config, "--dir", layout}} {
		if out, errs, code := w.run(args...); code != 0 {
			t.Fatalf("%v: exit %d\n%s%s", args, code, out, errs)
		}
	}
	if out, errs, code := w.run("revoke", "work-claude", "--config", w.config); code != 0 {
		t.Fatalf("revoke: exit %d\n%s%s", code, out, errs)
	}
	claudeCopy := read(w.copies[0])

	fresh := bytes.ReplaceAll(w.login(7), []byte("TOKEN-G"), []byte("TOKEN-WORK-G"))
	writeFile(t, filepath.Join(w.root, "fresh.json"), fresh)
	w.env = append(w.env, "STANDIN_LOGIN="+filepath.Join(w.root, "fresh.json"))
	out, errs, code := w.run("login", "work-claude", "--config", w.config)
	if code != 0 {
		t.Fatalf("login: exit %d\n%s%s", code, out, errs)
	}
	if got := string(read(log)); !strings.Contains(got, "auth login dir="+filepath.Dir(work)+"\n") {
		t.Errorf("the CLI's login ran as %q, want `auth login` for %s", got, filepath.Dir(work))
	}
	if !strings.Contains(errs, "running CLAUDE_CONFIG_DIR="+filepath.Dir(work)+" claude auth login") {
		t.Errorf("login does not say what it runs:\n%s", errs)
	}
	if !bytes.Equal(read(work), fresh) {
		t.Fatal("the stand-in's login is not at the account's file")
	}
	want := w.forCopy(fresh)
	for _, c := range []string{workCopy, filepath.Join(layout, "work-claude", claude.FileName)} {
		if !bytes.Equal(read(c), want) {
			t.Errorf("%s does not hold the new login", c)
		}
	}
	if !bytes.Equal(read(w.copies[0]), claudeCopy) || !bytes.Equal(read(filepath.Join(layout, "claude", claude.FileName)), w.forCopy(w.login(1))) {
		t.Error("the other account's copies changed")
	}
	for _, s := range []string{"logged in: sha256:", "copies had been revoked: this sync gives them the login again", "created"} {
		if !strings.Contains(out, s) {
			t.Errorf("login's report does not say %q:\n%s", s, out)
		}
	}

	// A CLI whose login fails: nothing is synced, exit 1.
	w.env = append(w.env, "STANDIN_LOGIN="+filepath.Join(w.root, "no-such-file"))
	if out, errs, code := w.run("login", "claude", "--config", w.config); code != 1 || !strings.Contains(errs, "nothing was changed by mc-broker") {
		t.Errorf("a failed login: exit %d\n%s%s", code, out, errs)
	}
}

// TestRevokeLeavesNoCopy: revoke erases the directory copies, the --dir
// layout written before, and the login in a volume copy (the volume stays),
// keeps the host's login, and a running watcher does not give the copies
// the login again, even when the host's login changes. sync lifts it;
// revoke --host also runs the CLI's own logout.
func TestRevokeLeavesNoCopy(t *testing.T) {
	_, e := volumetest.NeedEngine(t)
	w := newWorld(t, "claude", 1)
	standInClaude(t, w)
	vol := volumetest.UniqueVolume(t, e)
	w.env = append(w.env, dockerHostEnv(e))
	_, workCopy := twoAccounts(t, w, fmt.Sprintf("  - {source: claude, volume: %s}\n", vol))
	layout := filepath.Join(w.root, "project", ".auth")
	for _, args := range [][]string{{"sync", "--config", w.config}, {"sync", "--config", w.config, "--dir", layout}} {
		if out, errs, code := w.run(args...); code != 0 {
			t.Fatalf("%v: exit %d\n%s%s", args, code, out, errs)
		}
	}
	hostBefore := read(w.source)
	layoutCopy := filepath.Join(layout, "claude", claude.FileName)
	p := w.watch()

	out, errs, code := w.run("revoke", "claude", "--config", w.config, "--json")
	if code != 0 {
		t.Fatalf("revoke: exit %d\n%s%s", code, out, errs)
	}
	var rep struct {
		Sources []struct {
			Source string
			Copies []struct{ Location, Outcome, Fingerprint, Note string }
			Host   struct {
				Location  string
				LoggedOut bool `json:"logged_out"`
			}
		}
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || len(rep.Sources) != 1 {
		t.Fatalf("revoke --json: %v\n%s", err, out)
	}
	outcomes := map[string]string{}
	for _, c := range rep.Sources[0].Copies {
		outcomes[c.Location] = c.Outcome
		if c.Fingerprint == "" {
			t.Errorf("%s: no fingerprint of the login taken out", c.Location)
		}
	}
	volLoc := "volume " + vol + ":/" + claude.FileName
	if fmt.Sprint(outcomes) != fmt.Sprint(map[string]string{w.copies[0]: "erased", layoutCopy: "erased", volLoc: "erased"}) {
		t.Errorf("revoke erased %v", outcomes)
	}
	if rep.Sources[0].Host.LoggedOut || rep.Sources[0].Host.Location != w.source {
		t.Errorf("host: %+v, want kept", rep.Sources[0].Host)
	}
	for _, c := range []string{w.copies[0], layoutCopy} {
		if _, err := os.Lstat(c); !os.IsNotExist(err) {
			t.Errorf("%s is still there (%v)", c, err)
		}
	}
	if got := volumetest.Run(t, vol, "cat /d/"+claude.FileName); got != volume.ErasedContent {
		t.Errorf("the volume copy holds %d bytes, want %q", len(got), volume.ErasedContent)
	}
	if !bytes.Equal(read(w.source), hostBefore) {
		t.Error("the host's login changed")
	}
	if read(workCopy) == nil {
		t.Error("the other account's copy was erased")
	}

	// The watcher sees the copies go, and a new host login, and writes
	// neither copy.
	w.replace(w.source, w.login(2))
	fp := fingerprintOf(t, w.login(2))
	waitFor(t, 10*time.Second, "the watcher to pass over the new host login", func() (bool, string) {
		st, _ := watch.ReadState(w.state)
		for _, s := range st.Sources {
			if s.Name == "claude" && s.Fingerprint == fp {
				return true, ""
			}
		}
		return false, "not yet"
	})
	if _, err := os.Lstat(w.copies[0]); !os.IsNotExist(err) {
		t.Fatalf("the watcher wrote the revoked copy again (%v)", err)
	}
	if got := volumetest.Run(t, vol, "cat /d/"+claude.FileName); got != volume.ErasedContent {
		t.Errorf("the watcher wrote the revoked volume copy again")
	}
	out, _, _ = w.run("status", "--config", w.config, "--only", "claude")
	for _, s := range []string{"  revoked      " + w.copies[0], "copies revoked "} {
		if !strings.Contains(out, s) {
			t.Errorf("status does not show %q:\n%s", s, out)
		}
	}

	// sync lifts the revocation; the watcher then keeps the copies again.
	if out, errs, code := w.run("sync", "--config", w.config, "--only", "claude"); code != 0 || !strings.Contains(out, "copies had been revoked") {
		t.Fatalf("sync: exit %d\n%s%s", code, out, errs)
	}
	if !bytes.Equal(read(w.copies[0]), w.forCopy(w.login(2))) {
		t.Fatal("sync did not give the copy the login again")
	}
	w.replace(w.source, w.login(3))
	waitFor(t, 10*time.Second, "the watcher to update the copy again", func() (bool, string) {
		return copiesHold(w.copies[:1], w.forCopy(w.login(3)))
	})

	// --host: the CLI's own logout runs for the host's login too.
	out, errs, code = w.run("revoke", "claude", "--host", "--config", w.config)
	if code != 0 || !strings.Contains(out, "host     logged out with the CLI's own logout") {
		t.Fatalf("revoke --host: exit %d\n%s%s", code, out, errs)
	}
	if _, err := os.Lstat(w.source); !os.IsNotExist(err) {
		t.Errorf("the host's login is still there after revoke --host")
	}
	p.signal(syscall.SIGTERM)
	if code := p.wait(3 * time.Second); code != 0 {
		t.Errorf("watch exited %d", code)
	}
}

func fingerprintOf(t *testing.T, login []byte) string {
	t.Helper()
	info, err := claude.Kind.Inspect(login)
	if err != nil {
		t.Fatal(err)
	}
	return info.Fingerprint
}

// TestOverridesAreFlaggedNeverShown: doctor flags each variable that beats
// a login, apiKeyHelper in ~/.claude/settings.json and in a copy, and
// Codex's keyring store; compose check flags a service that mounts a copy
// and sets one of the variables. No value is printed anywhere.
func TestOverridesAreFlaggedNeverShown(t *testing.T) {
	home := t.TempDir()
	putFixture(t, "claude/credentials.valid.json", filepath.Join(home, ".claude/.credentials.json"))
	putFixture(t, "codex/auth.chatgpt.json", filepath.Join(home, ".codex/auth.json"))
	if _, errs, code := run(t, home, nil, "sync"); code != 0 {
		t.Fatalf("sync: exit %d\n%s", code, errs)
	}
	writeFile(t, filepath.Join(home, ".claude/settings.json"), []byte(`{"apiKeyHelper": "echo sk-ant-api03-FAKE-HELPER"}`))
	writeFile(t, filepath.Join(home, ".local/share/mc-broker/claude/settings.json"), []byte(`{"apiKeyHelper": "cat /FAKE-key"}`))
	writeFile(t, filepath.Join(home, ".codex/config.toml"), []byte("cli_auth_credentials_store = \"keyring\"\n"))
	vars := []string{"CLAUDE_CODE_OAUTH_TOKEN", "ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_PROVIDER_MANAGED_BY_HOST",
		"CLAUDE_CODE_SDK_HAS_OAUTH_REFRESH", "OPENAI_API_KEY", "CODEX_API_KEY", "GEMINI_API_KEY"}
	var env []string
	for _, v := range vars {
		env = append(env, v+"=sk-ant-oat01-FAKE-VALUE-OF-"+v)
	}
	out, errs, code := run(t, home, env, "doctor")
	assertNoSecret(t, "doctor", out+errs)
	if code != 1 {
		t.Errorf("doctor exited %d, want 1", code)
	}
	for _, v := range vars {
		if !strings.Contains(out, "WARN  override "+v+": is set in this environment (value not shown)") {
			t.Errorf("doctor does not flag %s:\n%s", v, out)
		}
	}
	for _, want := range []string{
		"override " + filepath.Join(home, ".claude/settings.json") + ": sets apiKeyHelper",
		"override " + filepath.Join(home, ".local/share/mc-broker/claude/settings.json") + ": sets apiKeyHelper (command not shown): Claude Code in every container",
		"override " + filepath.Join(home, ".codex/config.toml") + `: sets cli_auth_credentials_store = "keyring"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("doctor does not say %q:\n%s", want, out)
		}
	}
	out, _, _ = run(t, home, env, "doctor", "--json")
	assertNoSecret(t, "doctor --json", out)

	work := t.TempDir()
	compose := filepath.Join(work, "compose.yaml")
	writeFile(t, compose, []byte("services:\n  app:\n    image: x\n    volumes:\n      - "+filepath.Join(home, ".local/share/mc-broker/claude")+":/root/.claude\n    environment:\n      - ANTHROPIC_API_KEY\n      - CLAUDE_CODE_OAUTH_TOKEN=sk-ant-oat01-FAKE-IN-COMPOSE\n"))
	out, errs, code = run(t, home, env, "compose", "check", compose)
	assertNoSecret(t, "compose check", out+errs)
	if code != 4 || strings.Count(out, "value not shown") != 2 || !strings.Contains(out, "compose.yaml:7: service app: sets ANTHROPIC_API_KEY") {
		t.Errorf("compose check: exit %d\n%s%s", code, out, errs)
	}
}

// TestWatchTellsTheUser: watch runs --on-problem with each event that
// needs the user as JSON on stdin: a refresh token about to end, a copy
// whose login is refused, a broken login, a login gone; once each, and
// never with a token in it.
func TestWatchTellsTheUser(t *testing.T) {
	w := newWorld(t, "claude", 2)
	withRefreshEnd := func(data []byte, in time.Duration) []byte {
		return bytes.Replace(data, []byte(`"expiresAt": `), []byte(fmt.Sprintf(`"refreshTokenExpiresAt": %d, "expiresAt": `, time.Now().Add(in).UnixMilli())), 1)
	}
	w.replace(w.source, withRefreshEnd(w.login(1), 47*time.Hour))
	events := filepath.Join(w.root, "events.jsonl")
	w.watch("--on-problem", "cat >> "+events+"; echo >> "+events)

	got := func() []map[string]any {
		var out []map[string]any
		for _, line := range strings.Split(string(read(events)), "\n") {
			var e map[string]any
			if json.Unmarshal([]byte(line), &e) == nil {
				out = append(out, e)
			}
		}
		return out
	}
	waitEvent := func(kind string) map[string]any {
		t.Helper()
		var found map[string]any
		waitFor(t, 10*time.Second, "the "+kind+" event", func() (bool, string) {
			for _, e := range got() {
				if e["event"] == kind {
					found = e
					return true, ""
				}
			}
			return false, fmt.Sprintf("%d events so far", len(got()))
		})
		return found
	}
	e := waitEvent("refresh-token-ending")
	if e["source"] != "claude" || e["kind"] != "claude" || e["fix"] != "mc-broker login claude" || e["refresh_expires_at"] == nil || e["fingerprint"] == nil || e["at"] == nil {
		t.Errorf("refresh-token-ending event: %v", e)
	}

	// A container writes a login that claims to live ten years.
	poison := bytes.Replace(w.forCopy(w.login(5)), []byte(fmt.Sprintf(`"expiresAt": %d`, w.base+5000)), []byte(fmt.Sprintf(`"expiresAt": %d`, time.Now().Add(10*365*24*time.Hour).UnixMilli())), 1)
	w.replace(w.copies[0], poison)
	if e := waitEvent("copy-refused"); e["copy"] != w.copies[0] {
		t.Errorf("copy-refused event names %v", e["copy"])
	}

	putFixture(t, "claude/credentials.blanked.json", w.source)
	waitEvent("login-broken")
	if err := os.Remove(w.source); err != nil {
		t.Fatal(err)
	}
	waitEvent("logged-out")

	raw := string(read(events))
	assertNoSecret(t, "the events", raw)
	counts := map[any]int{}
	for _, e := range got() {
		counts[e["event"]]++
	}
	for kind, n := range counts {
		if n != 1 {
			t.Errorf("%s told %d times, want once", kind, n)
		}
	}
}

// TestTwoAccountsTwoServices is the several-accounts recipe: init finds
// the second Claude account (~/.claude-work), sync keeps a copy of each,
// `compose --service alice=claude --service bob=work-claude` mounts each
// service's own account (checked in docker-compose config), and each
// service reads its own login.
func TestTwoAccountsTwoServices(t *testing.T) {
	bin := needCompose(t)
	home := t.TempDir()
	putFixture(t, "claude/credentials.valid.json", filepath.Join(home, ".claude/.credentials.json"))
	writeFile(t, filepath.Join(home, ".claude-work/.credentials.json"), fixtureExpiringIn(t, "claude/credentials.valid.json", 8*time.Hour, "WORK"))
	out, errs, code := run(t, home, nil, "init")
	if code != 0 || !strings.Contains(out, "work-claude logged in (sha256:") || !strings.Contains(out, "--service claude=claude --service work-claude=work-claude") {
		t.Fatalf("init: exit %d\n%s%s", code, out, errs)
	}
	if out, errs, code := run(t, home, nil, "sync"); code != 0 || strings.Count(out, "created") < 2 {
		t.Fatalf("sync: exit %d\n%s%s", code, out, errs)
	}
	copies := map[string]string{
		"alice": filepath.Join(home, ".local/share/mc-broker/claude"),
		"bob":   filepath.Join(home, ".local/share/mc-broker/work-claude"),
	}
	if sha256File(t, filepath.Join(copies["alice"], claude.FileName)) == sha256File(t, filepath.Join(copies["bob"], claude.FileName)) {
		t.Fatal("the two accounts' copies hold the same login")
	}

	work := t.TempDir()
	writeFile(t, filepath.Join(work, "compose.yaml"), []byte(`services:
  alice:
    image: `+testImage+`
    network_mode: none
    command: ["sha256sum", "/root/.claude/.credentials.json"]
  bob:
    image: `+testImage+`
    network_mode: none
    command: ["sha256sum", "/root/.claude/.credentials.json"]
`))
	if out, errs, code := run(t, home, nil, "compose", "--service", "alice=claude", "--service", "bob=work-claude", "-o", filepath.Join(work, "compose.mc-broker.yaml")); code != 0 {
		t.Fatalf("compose: exit %d\n%s%s", code, out, errs)
	}
	project := projectName()
	var merged struct {
		Services map[string]struct {
			Environment map[string]string
			Volumes     []struct{ Type, Source, Target string }
		}
	}
	if err := yaml.Unmarshal([]byte(dockerCompose(t, bin, work, project, "config")), &merged); err != nil {
		t.Fatal(err)
	}
	for svc, dir := range copies {
		s := merged.Services[svc]
		if len(s.Volumes) != 1 || s.Volumes[0].Source != dir || s.Volumes[0].Target != "/root/.claude" || s.Volumes[0].Type != "bind" {
			t.Errorf("docker-compose config: %s mounts %+v, want %s at /root/.claude", svc, s.Volumes, dir)
		}
		if s.Environment["CLAUDE_CONFIG_DIR"] != "/root/.claude" {
			t.Errorf("%s: CLAUDE_CONFIG_DIR = %q", svc, s.Environment["CLAUDE_CONFIG_DIR"])
		}
	}
	t.Cleanup(func() { dockerCompose(t, bin, work, project, "down", "-v") })
	for svc, dir := range copies {
		got := dockerCompose(t, bin, work, project, "run", "--rm", svc)
		if want := sha256File(t, filepath.Join(dir, claude.FileName)); !strings.Contains(got, want) {
			t.Errorf("%s does not read its own account's copy (%s); it printed %s", svc, want, got)
		}
	}
}
