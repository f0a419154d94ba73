package service

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"howett.net/plist"
)

func parsePlist(t *testing.T, data string) map[string]any {
	t.Helper()
	var m map[string]any
	format, err := plist.Unmarshal([]byte(data), &m)
	if err != nil {
		t.Fatalf("plist does not parse: %v\n%s", err, data)
	}
	if format != plist.XMLFormat {
		t.Errorf("plist format %d, want XML (readable, and what plutil -lint expects)", format)
	}
	return m
}

func TestLaunchdInstallWritesAgentAndBootstrapsIt(t *testing.T) {
	w := newWorld(t)
	w.env["DOCKER_HOST"] = "unix:///Users/me/.colima/default/docker.sock"
	cfg := filepath.Join(w.home, "mc-broker.yaml")
	res, err := w.service(t, "darwin", cfg).Install(ctx)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(w.home, "Library/LaunchAgents/io.github.mc-broker.watch.plist")
	if res.File != file || res.Change != "create" {
		t.Errorf("result file %s change %s", res.File, res.Change)
	}
	w.fake.assertRan(t,
		"launchctl print gui/501/io.github.mc-broker.watch",
		"launchctl enable gui/501/io.github.mc-broker.watch",
		"launchctl bootstrap gui/501 "+file)

	m := parsePlist(t, readFile(t, file))
	log := filepath.Join(w.home, "Library/Logs/mc-broker/watch.log")
	want := map[string]any{
		"Label":             "io.github.mc-broker.watch",
		"ProgramArguments":  []any{w.bin, "watch", "--config", cfg},
		"RunAtLoad":         true,
		"KeepAlive":         true,
		"ProcessType":       "Background",
		"StandardOutPath":   log,
		"StandardErrorPath": log,
		"EnvironmentVariables": map[string]any{
			"HOME":        w.home,
			"DOCKER_HOST": "unix:///Users/me/.colima/default/docker.sock",
		},
	}
	if !reflect.DeepEqual(m, want) {
		t.Errorf("plist keys:\n%#v\nwant:\n%#v", m, want)
	}
	if info, err := os.Stat(filepath.Dir(log)); err != nil || !info.IsDir() {
		t.Errorf("log directory not created: %v", err)
	}
	if w.fake.plist != readFile(t, file) {
		t.Error("launchctl bootstrap did not see the written plist")
	}
}

func TestLaunchdReinstallBootsOutTheOldAgentFirst(t *testing.T) {
	w := newWorld(t)
	if _, err := w.service(t, "darwin", "").Install(ctx); err != nil {
		t.Fatal(err)
	}
	w.fake.ran = nil
	file := filepath.Join(w.home, "Library/LaunchAgents/io.github.mc-broker.watch.plist")

	w.bin = filepath.Join(w.home, "new", "mc-broker") // an upgrade to another path
	writeExecutable(t, w.bin)
	res, err := w.service(t, "darwin", "").Install(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// launchd keeps the plist an agent was loaded with: without bootout
	// first, bootstrap fails and the old binary keeps running.
	w.fake.assertRan(t,
		"launchctl print gui/501/io.github.mc-broker.watch",
		"launchctl bootout gui/501/io.github.mc-broker.watch",
		"launchctl print gui/501/io.github.mc-broker.watch",
		"launchctl enable gui/501/io.github.mc-broker.watch",
		"launchctl bootstrap gui/501 "+file)
	if res.Change != "update" {
		t.Errorf("change %q, want update", res.Change)
	}
	args := parsePlist(t, w.fake.plist)["ProgramArguments"].([]any)
	if args[0] != w.bin {
		t.Errorf("launchd runs %v, want the new binary %s", args[0], w.bin)
	}
}

func TestLaunchdUninstallKeepsLogs(t *testing.T) {
	w := newWorld(t)
	s := w.service(t, "darwin", "")
	if _, err := s.Install(ctx); err != nil {
		t.Fatal(err)
	}
	log := s.Logs().Files[0]
	if err := os.WriteFile(log, []byte("a log line\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	w.fake.ran = nil
	if _, err := s.Uninstall(ctx); err != nil {
		t.Fatal(err)
	}
	w.fake.assertRan(t,
		"launchctl print gui/501/io.github.mc-broker.watch",
		"launchctl bootout gui/501/io.github.mc-broker.watch",
		"launchctl print gui/501/io.github.mc-broker.watch")
	if _, err := os.Stat(s.File()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("plist still there: %v", err)
	}
	if _, err := os.Stat(log); err != nil {
		t.Errorf("uninstall removed the log: %v", err)
	}
}

func TestLaunchdNotLoadedUninstallOnlyRemovesFile(t *testing.T) {
	w := newWorld(t)
	s := w.service(t, "darwin", "")
	if _, err := s.Install(ctx); err != nil {
		t.Fatal(err)
	}
	w.fake.active = false // the user booted it out by hand
	w.fake.ran = nil
	if _, err := s.Uninstall(ctx); err != nil {
		t.Fatal(err)
	}
	w.fake.assertRan(t, "launchctl print gui/501/io.github.mc-broker.watch")
}

func TestLaunchdUnreachableDomain(t *testing.T) {
	w := newWorld(t)
	w.fake.reachable = false
	_, err := w.service(t, "darwin", "").Install(ctx)
	var unavailable *ManagerUnavailableError
	if !errors.As(err, &unavailable) || unavailable.Manager != Launchd {
		t.Fatalf("error %v, want *ManagerUnavailableError", err)
	}
	if _, err := os.Stat(filepath.Join(w.home, "Library")); !errors.Is(err, os.ErrNotExist) {
		t.Error("install wrote files although launchd could not be reached")
	}
}

func TestLaunchctlPrintParsing(t *testing.T) {
	p := parseLaunchctlPrint([]byte(launchctlPrintRunning))
	if !p.loaded || !p.running || p.pid != 4242 || p.detail != "running" {
		t.Errorf("parsed %+v", p)
	}
	stopped := strings.Replace(launchctlPrintRunning, "state = running", "state = not running", 1)
	if p := parseLaunchctlPrint([]byte(stopped)); p.running || p.detail != "not running" {
		t.Errorf("a stopped agent parsed as %+v", p)
	}
}

// The variables that decide which Keychain item, or whether the Keychain
// at all, holds a login must reach the agent: without them watch under
// launchd reads another store than sync in the shell, and reports the
// user logged out.
func TestLaunchdCarriesTheKeychainSelectingVariables(t *testing.T) {
	w := newWorld(t)
	w.env["GEMINI_FORCE_ENCRYPTED_FILE_STORAGE"] = "true"
	w.env["CLAUDE_SECURESTORAGE_CONFIG_DIR"] = "/Users/me/.claude-work"
	content, err := w.service(t, "darwin", "").Content()
	if err != nil {
		t.Fatal(err)
	}
	env := parsePlist(t, string(content))["EnvironmentVariables"].(map[string]any)
	for name, want := range map[string]string{
		"GEMINI_FORCE_ENCRYPTED_FILE_STORAGE": "true",
		"CLAUDE_SECURESTORAGE_CONFIG_DIR":     "/Users/me/.claude-work",
	} {
		if env[name] != want {
			t.Errorf("the agent's %s is %v, want %q", name, env[name], want)
		}
	}
}
