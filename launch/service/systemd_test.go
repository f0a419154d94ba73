package service

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var ctx = context.Background()

func wantUnit(bin, execArgs string, env ...string) string {
	s := `# Written by mc-broker launch install: run it again to update this file
# (edits are overwritten), mc-broker launch uninstall to remove it.
[Unit]
Description=mc-broker watch: keep container copies of CLI logins in step
Documentation=https://github.com/mc-broker/mc-broker/blob/main/docs/SERVICE.md

[Service]
Type=exec
ExecStart=` + bin + " watch" + execArgs + `
ExecReload=/bin/kill -HUP $MAINPID
Restart=on-failure
RestartSec=5
# Exit status 2 is a bad config or usage: restarting cannot fix it.
RestartPreventExitStatus=2
`
	for _, e := range env {
		s += "Environment=" + e + "\n"
	}
	return s + `
[Install]
WantedBy=default.target
`
}

func TestSystemdInstallWritesUnitAndStartsIt(t *testing.T) {
	w := newWorld(t)
	res, err := w.service(t, "linux", "").Install(ctx)
	if err != nil {
		t.Fatal(err)
	}
	unit := filepath.Join(w.home, ".config/systemd/user/mc-broker.service")
	if res.File != unit || res.Change != "create" {
		t.Errorf("result file %s change %s", res.File, res.Change)
	}
	if got := readFile(t, unit); got != wantUnit(w.bin, "") {
		t.Errorf("unit file:\n%s\nwant:\n%s", got, wantUnit(w.bin, ""))
	}
	w.fake.assertRan(t,
		"systemctl --user is-active mc-broker.service",
		"systemctl --user daemon-reload",
		"systemctl --user enable mc-broker.service",
		"systemctl --user restart mc-broker.service")
	if !w.fake.active || !w.fake.enabled {
		t.Errorf("service active %v enabled %v after install", w.fake.active, w.fake.enabled)
	}
	if info, err := os.Stat(unit); err != nil || info.Mode().Perm() != 0o644 {
		t.Errorf("unit file mode %v (%v), want 0644", info.Mode(), err)
	}
}

func TestSystemdReinstallUpdatesInPlaceAndRestarts(t *testing.T) {
	w := newWorld(t)
	if _, err := w.service(t, "linux", "").Install(ctx); err != nil {
		t.Fatal(err)
	}
	w.fake.ran = nil
	unit := filepath.Join(w.home, ".config/systemd/user/mc-broker.service")

	// The same binary again (an upgrade in place): the unit is unchanged,
	// and the service is restarted so the new binary runs.
	res, err := w.service(t, "linux", "").Install(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Change != "unchanged" {
		t.Errorf("change %q, want unchanged", res.Change)
	}
	w.fake.assertRan(t,
		"systemctl --user is-active mc-broker.service",
		"systemctl --user daemon-reload",
		"systemctl --user enable mc-broker.service",
		"systemctl --user restart mc-broker.service")

	// A config file now: the same unit file gains --config.
	cfg := filepath.Join(w.home, "my config.yaml")
	res, err = w.service(t, "linux", cfg).Install(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Change != "update" || res.File != unit {
		t.Errorf("change %q file %s, want update of %s", res.Change, res.File, unit)
	}
	if got, want := readFile(t, unit), wantUnit(w.bin, ` --config "`+cfg+`"`); got != want {
		t.Errorf("unit file:\n%s\nwant:\n%s", got, want)
	}
	entries, _ := os.ReadDir(filepath.Dir(unit))
	if len(entries) != 1 {
		t.Errorf("unit directory holds %d entries, want only the unit", len(entries))
	}
}

func TestSystemdUnitDirFollowsXDGConfigHome(t *testing.T) {
	w := newWorld(t)
	w.env["XDG_CONFIG_HOME"] = filepath.Join(w.home, "xdg")
	s := w.service(t, "linux", "")
	if want := filepath.Join(w.home, "xdg/systemd/user/mc-broker.service"); s.File() != want {
		t.Errorf("unit at %s, want %s", s.File(), want)
	}
	w.env["XDG_CONFIG_HOME"] = "relative/ignored"
	if want := filepath.Join(w.home, ".config/systemd/user/mc-broker.service"); w.service(t, "linux", "").File() != want {
		t.Errorf("a relative XDG_CONFIG_HOME was not ignored")
	}
}

func TestSystemdUninstall(t *testing.T) {
	w := newWorld(t)
	s := w.service(t, "linux", "")
	if _, err := s.Install(ctx); err != nil {
		t.Fatal(err)
	}
	w.fake.ran = nil
	res, err := s.Uninstall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	w.fake.assertRan(t,
		"systemctl --user is-active mc-broker.service",
		"systemctl --user disable --now mc-broker.service",
		"systemctl --user daemon-reload")
	if _, err := os.Stat(s.File()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("unit file still there after uninstall: %v", err)
	}
	if res.Change != "remove" || w.fake.active {
		t.Errorf("change %q, active %v", res.Change, w.fake.active)
	}
	// Again: nothing installed, nothing run.
	res, err = s.Uninstall(ctx)
	if err != nil || res.Change != "absent" {
		t.Fatalf("second uninstall: %v, change %q", err, res.Change)
	}
	w.fake.assertRan(t)
}

func TestSystemdWithoutUserInstanceWritesNothing(t *testing.T) {
	w := newWorld(t)
	w.fake.reachable = false
	before := tree(t, w.home)
	_, err := w.service(t, "linux", "").Install(ctx)
	var unavailable *ManagerUnavailableError
	if !errors.As(err, &unavailable) || unavailable.Manager != Systemd {
		t.Fatalf("error %v (%T), want *ManagerUnavailableError", err, err)
	}
	if !strings.Contains(err.Error(), "Failed to connect to bus") || !strings.Contains(err.Error(), "systemctl --user") {
		t.Errorf("error does not say what failed: %v", err)
	}
	if after := tree(t, w.home); !reflect.DeepEqual(before, after) {
		t.Errorf("install wrote files although systemd could not be reached: %v", after)
	}
	w.fake.assertRan(t, "systemctl --user is-active mc-broker.service")
}

func TestSystemdFailingCommandIsManagerError(t *testing.T) {
	w := newWorld(t)
	w.fake.failOn = "systemctl --user restart mc-broker.service"
	res, err := w.service(t, "linux", "").Install(ctx)
	var merr *ManagerError
	var cerr *CommandError
	if !errors.As(err, &merr) || !errors.As(err, &cerr) || cerr.ExitCode != 5 {
		t.Fatalf("error %v, want a ManagerError wrapping the command's exit status 5", err)
	}
	if len(res.Ran) != 3 {
		t.Errorf("ran %v: the failed command should be the last", res.Ran)
	}
}

func TestDryRunTouchesNothing(t *testing.T) {
	for _, goos := range []string{"linux", "darwin"} {
		t.Run(goos, func(t *testing.T) {
			w := newWorld(t)
			before := tree(t, w.home)
			s := w.service(t, goos, "")
			plan, err := s.InstallPlan()
			if err != nil {
				t.Fatal(err)
			}
			if plan.Change != "create" || plan.Content == "" || len(plan.Steps) < 3 || plan.Steps[0].Write != s.File() {
				t.Errorf("install plan %+v", plan)
			}
			uplan, err := s.UninstallPlan()
			if err != nil || uplan.Change != "absent" || len(uplan.Steps) != 0 {
				t.Errorf("uninstall plan with nothing installed: %+v %v", uplan, err)
			}
			if after := tree(t, w.home); !reflect.DeepEqual(before, after) {
				t.Errorf("dry run created %v", after)
			}
			w.fake.assertRan(t)
		})
	}
}

func TestUnitQuotingRoundTrips(t *testing.T) {
	args := []string{"/opt/my tools/100% $HOME/mc-broker", "watch", "--config", `/c/a "b" \ c $x %h.yaml`}
	line, err := unitCommandLine(args)
	if err != nil {
		t.Fatal(err)
	}
	d := &systemd{}
	got, err := d.program([]byte("[Service]\nExecStart=" + line + "\n"))
	if err != nil || !reflect.DeepEqual(got, args) {
		t.Errorf("ExecStart=%s\nreads back as %q (%v), want %q", line, got, err, args)
	}
	if _, err := unitQuote("a\nb", true); err == nil {
		t.Error("a newline was accepted into a unit file")
	}
	// systemd-analyze verify: "String is not UTF-8 clean, ignoring
	// assignment", and the unit fails to load.
	if _, err := unitCommandLine([]string{"/opt/b\x9fn/mc-broker", "watch"}); err == nil || !strings.Contains(err.Error(), "UTF-8") {
		t.Errorf("a path that is not UTF-8 was put into a unit file (%v)", err)
	}
}

// TestUnitPassesSystemdAnalyzeVerify has systemd itself check the unit,
// with a binary path and config that need quoting and escaping: verify
// fails when the executable it reads from ExecStart= does not exist, and
// any warning (an unknown key, a bad escape) counts as a failure too.
func TestUnitPassesSystemdAnalyzeVerify(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("systemd-analyze is not installed (scripts/test-env.sh installs Debian's systemd package)")
		}
		t.Skip("systemd-analyze not installed")
	}
	w := newWorld(t)
	w.bin = filepath.Join(w.home, "odd dir $x 50%", "mc-broker")
	writeExecutable(t, w.bin)
	w.env["DOCKER_HOST"] = "unix:///run/user/1000/docker sock%"
	w.env["CLAUDE_CONFIG_DIR"] = `/home/me/claude "$dir"`
	s := w.service(t, "linux", filepath.Join(w.home, "conf $y.yaml"))
	content, err := s.Content()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	unit := filepath.Join(dir, Unit)
	if err := os.WriteFile(unit, content, 0o644); err != nil {
		t.Fatal(err)
	}
	runtime := filepath.Join(dir, "runtime")
	if err := os.Mkdir(runtime, 0o700); err != nil {
		t.Fatal(err)
	}
	// --user checks it as a user unit; the user manager it simulates needs
	// a runtime directory, which a container has no session to provide.
	cmd := exec.Command(analyze, "verify", "--user", "--man=no", unit)
	cmd.Env = append(os.Environ(), "XDG_RUNTIME_DIR="+runtime, "HOME="+w.home)
	out, err := cmd.CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s\nunit:\n%s", err, out, content)
	}

	// The check has teeth: a unit naming a missing binary fails.
	w.bin = filepath.Join(w.home, "gone", "mc-broker")
	bad, _ := w.service(t, "linux", "").Content()
	if err := os.WriteFile(unit, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd = exec.Command(analyze, "verify", "--user", "--man=no", unit)
	cmd.Env = append(os.Environ(), "XDG_RUNTIME_DIR="+runtime, "HOME="+w.home)
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Errorf("systemd-analyze accepted a unit whose binary does not exist:\n%s", out)
	}
}
