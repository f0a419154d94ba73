package cli

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/mc-broker/mc-broker/broker/config"
	"github.com/mc-broker/mc-broker/launch/service"
)

// recorder answers service-manager commands as a working systemd or
// launchd with nothing installed would, or as an unreachable one.
type recorder struct {
	ran         []string
	unreachable bool
}

func (r *recorder) Run(_ context.Context, argv ...string) ([]byte, error) {
	cmd := strings.Join(argv, " ")
	r.ran = append(r.ran, cmd)
	fail := func(code int, out string) ([]byte, error) {
		return []byte(out), &service.CommandError{Argv: argv, ExitCode: code, Output: out}
	}
	switch {
	case r.unreachable:
		return fail(1, "Failed to connect to bus: No medium found")
	case strings.Contains(cmd, " is-active "):
		return fail(3, "inactive")
	case strings.HasPrefix(cmd, "launchctl print"):
		return fail(113, "Could not find service")
	}
	return nil, nil
}

type launchWorld struct {
	f        *Factory
	out, err *strings.Builder
	home     string
	bin      string
	vars     map[string]string
	rec      *recorder
}

func newLaunchWorld(t *testing.T) *launchWorld {
	t.Helper()
	w := &launchWorld{vars: map[string]string{}, rec: &recorder{}, out: &strings.Builder{}, err: &strings.Builder{}}
	w.home = t.TempDir()
	w.bin = filepath.Join(t.TempDir(), "mc-broker")
	if err := os.WriteFile(w.bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	getenv := func(k string) string { return w.vars[k] }
	w.f = &Factory{
		Stdout: w.out, Stderr: w.err, Getenv: getenv,
		Env: func() (config.Env, error) { return config.Env{Home: w.home, Getenv: getenv}, nil },
	}
	return w
}

func (w *launchWorld) run(goos, action string, set func(*LaunchOptions)) int {
	opts := &LaunchOptions{
		f: w.f, Action: action, GOOS: goos, UID: 501, Runner: w.rec,
		Executable: func() (string, error) { return w.bin, nil },
		LookPath:   func(string) (string, error) { return "", errors.New("not on PATH") },
	}
	if set != nil {
		set(opts)
	}
	return exitCode(launchRun(context.Background(), opts), w.err)
}

func TestLaunchInstallOnLinux(t *testing.T) {
	w := newLaunchWorld(t)
	if code := w.run("linux", "install", nil); code != 0 {
		t.Fatalf("exit %d: %s", code, w.err)
	}
	unit := filepath.Join(w.home, ".config/systemd/user/mc-broker.service")
	for _, want := range []string{
		"created: " + unit,
		"ran: systemctl --user restart mc-broker.service",
		"runs in the background as the systemd user unit mc-broker.service: " + w.bin + " watch\n",
		"logs: journalctl --user -u mc-broker.service",
	} {
		if !strings.Contains(w.out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, w.out)
		}
	}
	if data, err := os.ReadFile(unit); err != nil || !strings.Contains(string(data), "ExecStart="+w.bin+" watch\n") {
		t.Errorf("unit file: %v\n%s", err, data)
	}
}

// Installing a binary from a temporary directory (or a build tree) works,
// with a warning on stderr and in --json: the service fails once it is gone.
func TestLaunchInstallWarnsAboutATemporaryBinary(t *testing.T) {
	w := newLaunchWorld(t)
	tmp := filepath.Dir(w.bin)
	if code := w.run("linux", "install", func(o *LaunchOptions) { o.TempDirs = []string{tmp} }); code != 0 {
		t.Fatalf("exit %d: %s", code, w.err)
	}
	want := "mc-broker: warning: the service will run " + w.bin + ", which is in the temporary directory " + tmp + ": "
	if !strings.HasPrefix(w.err.String(), want) || !strings.Contains(w.err.String(), "make install") {
		t.Errorf("stderr %q, want %q...make install", w.err, want)
	}

	w.err.Reset()
	w.out.Reset()
	if code := w.run("linux", "install", func(o *LaunchOptions) { o.TempDirs = []string{tmp}; o.JSON = true; o.DryRun = true }); code != 0 {
		t.Fatalf("exit %d: %s", code, w.err)
	}
	var doc struct{ Warnings []string }
	if err := json.Unmarshal([]byte(w.out.String()), &doc); err != nil || len(doc.Warnings) != 1 || !strings.Contains(doc.Warnings[0], "temporary directory") {
		t.Errorf("--json warnings %q (%v)", doc.Warnings, err)
	}

	// status (and so doctor) says it too, later.
	w.out.Reset()
	w.run("linux", "status", func(o *LaunchOptions) { o.TempDirs = []string{tmp} })
	if !strings.Contains(w.out.String(), "warning: the service runs "+w.bin+", which is in the temporary directory") {
		t.Errorf("status:\n%s", w.out)
	}
}

func TestLaunchInstallPassesAndChecksTheConfig(t *testing.T) {
	w := newLaunchWorld(t)
	good := filepath.Join(w.home, "good.yaml")
	if err := os.WriteFile(good, []byte("sources:\n  claude: {kind: claude}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	w.vars["MC_BROKER_CONFIG"] = good
	if code := w.run("darwin", "install", nil); code != 0 {
		t.Fatalf("exit %d: %s", code, w.err)
	}
	plist, _ := os.ReadFile(filepath.Join(w.home, "Library/LaunchAgents", service.Label+".plist"))
	if !strings.Contains(string(plist), "<string>--config</string>\n\t\t\t<string>"+good+"</string>") {
		t.Errorf("MC_BROKER_CONFIG did not reach the plist:\n%s", plist)
	}

	// A config with a mistake is refused before anything is written or run.
	w = newLaunchWorld(t)
	bad := filepath.Join(w.home, "bad.yaml")
	if err := os.WriteFile(bad, []byte("sources:\n  claude: {kind: nope}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code := w.run("linux", "install", func(o *LaunchOptions) { o.ConfigFile = bad })
	if code != 2 || !strings.Contains(w.err.String(), "bad.yaml:2: sources.claude.kind") {
		t.Errorf("exit %d, stderr %s", code, w.err)
	}
	if len(w.rec.ran) != 0 {
		t.Errorf("ran %v for a bad config", w.rec.ran)
	}
	if _, err := os.Stat(filepath.Join(w.home, ".config/systemd")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("wrote the unit for a bad config")
	}

	// The default config file is checked too, but not passed: watch finds it.
	w = newLaunchWorld(t)
	env, _ := w.f.Env()
	if err := os.MkdirAll(filepath.Dir(env.ConfigFile()), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(env.ConfigFile(), []byte("bogus: [\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code := w.run("linux", "install", nil); code != 2 {
		t.Errorf("a broken default config file: exit %d, want 2", code)
	}
}

func TestLaunchDryRunChangesNothing(t *testing.T) {
	w := newLaunchWorld(t)
	if code := w.run("darwin", "install", func(o *LaunchOptions) { o.DryRun = true }); code != 0 {
		t.Fatalf("exit %d: %s", code, w.err)
	}
	for _, want := range []string{
		"dry run, nothing is changed: install of the launchd agent io.github.mc-broker.watch would\n",
		"write " + filepath.Join(w.home, "Library/LaunchAgents/io.github.mc-broker.watch.plist") + " (a new file):\n<?xml",
		"<key>ProgramArguments</key>",
		"run launchctl bootout gui/501/io.github.mc-broker.watch   (if loaded)\n",
		"run launchctl bootstrap gui/501 " + w.home,
	} {
		if !strings.Contains(w.out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, w.out)
		}
	}
	entries, _ := os.ReadDir(w.home)
	if len(entries) != 0 || len(w.rec.ran) != 0 {
		t.Errorf("dry run created %v and ran %v", entries, w.rec.ran)
	}
}

func TestLaunchJSON(t *testing.T) {
	w := newLaunchWorld(t)
	if code := w.run("linux", "install", func(o *LaunchOptions) { o.JSON = true }); code != 0 {
		t.Fatalf("exit %d: %s", code, w.err)
	}
	var got struct {
		Action string
		DryRun bool `json:"dry_run"`
		File   string
		Change string
		Ran    [][]string
	}
	if err := json.Unmarshal([]byte(w.out.String()), &got); err != nil {
		t.Fatalf("%v\n%s", err, w.out)
	}
	want := [][]string{{"systemctl", "--user", "daemon-reload"}, {"systemctl", "--user", "enable", "mc-broker.service"}, {"systemctl", "--user", "restart", "mc-broker.service"}}
	if got.Action != "install" || got.DryRun || got.Change != "create" || !reflect.DeepEqual(got.Ran, want) {
		t.Errorf("json %+v", got)
	}
}

func TestLaunchWithoutSystemdUserInstance(t *testing.T) {
	w := newLaunchWorld(t)
	w.rec.unreachable = true
	code := w.run("linux", "install", nil)
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	for _, want := range []string{"Failed to connect to bus", "hint: there is no systemd user instance here", "run mc-broker watch under your own supervisor", "loginctl enable-linger"} {
		if !strings.Contains(w.err.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, w.err)
		}
	}
	// status still answers, with the same hint.
	w.out.Reset()
	if code := w.run("linux", "status", nil); code != 1 {
		t.Errorf("status exit %d, want 1", code)
	}
	if !strings.Contains(w.out.String(), "state: unknown") || !strings.Contains(w.out.String(), "hint: there is no systemd user instance") {
		t.Errorf("status output:\n%s", w.out)
	}
}

func TestLaunchStatusAndUninstall(t *testing.T) {
	w := newLaunchWorld(t)
	if code := w.run("linux", "status", nil); code != 1 || !strings.Contains(w.out.String(), "not installed: run mc-broker launch install") {
		t.Errorf("status before install: exit %d\n%s", code, w.out)
	}
	if code := w.run("linux", "install", nil); code != 0 {
		t.Fatal(w.err)
	}
	w.out.Reset()
	// The recorder says inactive: installed, not running, exit 1.
	if code := w.run("linux", "status", nil); code != 1 || !strings.Contains(w.out.String(), "runs: "+w.bin+" watch\nstate: stopped (inactive)\n") {
		t.Errorf("status after install: exit %d\n%s", code, w.out)
	}
	w.out.Reset()
	w.rec.ran = nil
	if code := w.run("linux", "uninstall", nil); code != 0 {
		t.Fatal(w.err)
	}
	if !strings.Contains(w.out.String(), "ran: systemctl --user disable --now mc-broker.service\n") || !strings.Contains(w.out.String(), "removed: ") {
		t.Errorf("uninstall output:\n%s", w.out)
	}
	w.out.Reset()
	if code := w.run("linux", "uninstall", nil); code != 0 || !strings.Contains(w.out.String(), "not installed") {
		t.Errorf("second uninstall: exit %d\n%s", code, w.out)
	}
}

func TestLaunchRefusesAGoRunBinary(t *testing.T) {
	w := newLaunchWorld(t)
	w.bin = filepath.Join(t.TempDir(), "go-build42", "exe", "mc-broker")
	if err := os.MkdirAll(filepath.Dir(w.bin), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(w.bin, nil, 0o755); err != nil {
		t.Fatal(err)
	}
	if code := w.run("linux", "install", nil); code != 2 || !strings.Contains(w.err.String(), "hint: install mc-broker first") {
		t.Errorf("exit %d\n%s", code, w.err)
	}
	if code := w.run("linux", "status", nil); code != 1 || !strings.Contains(w.out.String(), "not installed") {
		t.Errorf("status from go run: exit %d\n%s", code, w.out)
	}
}

func TestLaunchFlagsReachOptions(t *testing.T) {
	f, _, _ := testFactory(t, nil)
	var got []*LaunchOptions
	cmd := NewCmdLaunch(f, func(o *LaunchOptions) error { got = append(got, o); return nil })
	for _, args := range [][]string{
		{"install", "--dry-run", "--config", "c.yaml", "--json"},
		{"uninstall", "--dry-run"},
		{"status", "--json", "--config", "d.yaml"},
	} {
		cmd.SetArgs(args)
		if err := cmd.Execute(); err != nil {
			t.Fatal(err)
		}
	}
	if len(got) != 3 ||
		got[0].Action != "install" || !got[0].DryRun || got[0].ConfigFile != "c.yaml" || !got[0].JSON ||
		got[1].Action != "uninstall" || !got[1].DryRun ||
		got[2].Action != "status" || !got[2].JSON || got[2].ConfigFile != "d.yaml" {
		t.Errorf("options %+v %+v %+v", got[0], got[1], got[2])
	}
}

func TestCompletionIsListedAndPrintsScripts(t *testing.T) {
	f, out, _ := testFactory(t, nil)
	if code := Main([]string{"--help"}, f); code != 0 || !strings.Contains(out.String(), "completion  Print the shell completion script") {
		t.Errorf("--help does not list completion:\n%s", out)
	}
	for shell, want := range map[string]string{"bash": "# bash completion V2 for mc-broker", "zsh": "#compdef mc-broker", "fish": "complete -c mc-broker"} {
		out.Reset()
		if code := Main([]string{"completion", shell}, f); code != 0 || !strings.Contains(out.String(), want) {
			t.Errorf("completion %s: exit %d, output lacks %q", shell, code, want)
		}
	}
}

// A service file that cannot be written is not a usage mistake: exit 1,
// as documented, and no "see mc-broker --help".
func TestLaunchInstallThatCannotWriteTheFileExitsOne(t *testing.T) {
	w := newLaunchWorld(t)
	// ~/.config/systemd/user is a file, so the unit cannot be written.
	if err := os.MkdirAll(filepath.Join(w.home, ".config", "systemd"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(w.home, ".config", "systemd", "user"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if code := w.run("linux", "install", nil); code != 1 {
		t.Errorf("exit %d, want 1; stderr:\n%s", code, w.err)
	}
	if strings.Contains(w.err.String(), "--help") {
		t.Errorf("a failed write points at --help:\n%s", w.err)
	}
}
