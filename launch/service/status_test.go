package service

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestStatusNotInstalled(t *testing.T) {
	w := newWorld(t)
	st := w.service(t, "linux", "").Status(ctx)
	if st.Installed || st.State != StateStopped || st.Binary != "" || len(st.Warnings) != 0 {
		t.Errorf("status %+v", st)
	}
	if got := st.Logs.String(); got != "journalctl --user -u mc-broker.service" {
		t.Errorf("logs %q", got)
	}
}

func TestStatusInstalledAndRunning(t *testing.T) {
	for _, goos := range []string{"linux", "darwin"} {
		t.Run(goos, func(t *testing.T) {
			w := newWorld(t)
			cfg := filepath.Join(w.home, "c.yaml")
			s := w.service(t, goos, cfg)
			if _, err := s.Install(ctx); err != nil {
				t.Fatal(err)
			}
			st := s.Status(ctx)
			if !st.Installed || !st.UpToDate || st.State != StateRunning || st.Binary != w.bin || st.Config != cfg || len(st.Warnings) != 0 {
				t.Errorf("status %+v", st)
			}
			if goos == "darwin" && (st.PID != 4242 || st.Logs.Files[0] != filepath.Join(w.home, "Library/Logs/mc-broker/watch.log")) {
				t.Errorf("launchd status pid %d logs %v", st.PID, st.Logs)
			}
		})
	}
}

func TestStatusWarnsAboutAStaleBinary(t *testing.T) {
	w := newWorld(t)
	if _, err := w.service(t, "linux", "").Install(ctx); err != nil {
		t.Fatal(err)
	}
	installed := w.bin

	// Another mc-broker asks: the service does not run it.
	w.bin = filepath.Join(w.home, "other", "mc-broker")
	writeExecutable(t, w.bin)
	st := w.service(t, "linux", "").Status(ctx)
	if len(st.Warnings) != 1 || !strings.Contains(st.Warnings[0], "not this mc-broker") || st.Binary != installed {
		t.Errorf("warnings %q binary %s", st.Warnings, st.Binary)
	}

	// The installed binary is gone (uninstalled by a package manager).
	if err := os.Remove(installed); err != nil {
		t.Fatal(err)
	}
	st = w.service(t, "linux", "").Status(ctx)
	if len(st.Warnings) != 1 || !strings.Contains(st.Warnings[0], "not there any more") || !strings.Contains(st.Warnings[0], "mc-broker launch install") {
		t.Errorf("warnings %q", st.Warnings)
	}
}

// A service that runs a build in the source tree, or one in a temporary
// directory, works until the next rebuild or clean-up: status says so
// (doctor shows status's warnings).
func TestStatusWarnsAboutABinaryThatWillNotLast(t *testing.T) {
	w := newWorld(t)
	writeFile(t, filepath.Join(w.home, "go.mod"), "module github.com/mc-broker/mc-broker\n")
	if _, err := w.service(t, "linux", "").Install(ctx); err != nil {
		t.Fatal(err)
	}
	st := w.service(t, "linux", "").Status(ctx)
	if len(st.Warnings) != 1 || !strings.HasPrefix(st.Warnings[0], "the service runs "+w.bin+", which is a build inside the source tree "+w.home+":") {
		t.Errorf("warnings %q", st.Warnings)
	}

	w = newWorld(t)
	w.tempDirs = []string{w.home}
	if _, err := w.service(t, "linux", "").Install(ctx); err != nil {
		t.Fatal(err)
	}
	st = w.service(t, "linux", "").Status(ctx)
	if len(st.Warnings) != 1 || !strings.HasPrefix(st.Warnings[0], "the service runs "+w.bin+", which is in the temporary directory "+w.home+":") {
		t.Errorf("warnings %q", st.Warnings)
	}
}

func TestStatusWarnsWhenTheFileIsOutdated(t *testing.T) {
	w := newWorld(t)
	if _, err := w.service(t, "linux", "").Install(ctx); err != nil {
		t.Fatal(err)
	}
	w.env["DOCKER_HOST"] = "tcp://127.0.0.1:2375" // set after install
	st := w.service(t, "linux", "").Status(ctx)
	if st.UpToDate || len(st.Warnings) != 1 || !strings.Contains(st.Warnings[0], "differs from what install would write") {
		t.Errorf("up to date %v, warnings %q", st.UpToDate, st.Warnings)
	}
}

func TestStatusWithoutServiceManagerIsUnknown(t *testing.T) {
	w := newWorld(t)
	w.fake.reachable = false
	st := w.service(t, "linux", "").Status(ctx)
	var unavailable *ManagerUnavailableError
	if st.State != StateUnknown || !errors.As(st.ManagerErr, &unavailable) || !strings.Contains(st.Detail, "Failed to connect to bus") {
		t.Errorf("status %+v", st)
	}
	data, err := json.Marshal(st)
	if err != nil || !strings.Contains(string(data), `"state":"unknown"`) {
		t.Errorf("json %s %v", data, err)
	}
}

// TestOnlyKnownVariablesReachTheService: a token in the environment that
// install runs in never ends up in a service file (which is 0644, and
// shown by --dry-run and status).
func TestOnlyKnownVariablesReachTheService(t *testing.T) {
	secret := "sk-ant-oat01-FAKE-SECRET-IN-ENV"
	for _, goos := range []string{"linux", "darwin"} {
		w := newWorld(t)
		w.env["CLAUDE_CODE_OAUTH_TOKEN"] = secret
		w.env["ANTHROPIC_API_KEY"] = secret
		w.env["OPENAI_API_KEY"] = secret
		w.env["CODEX_HOME"] = "relative/codex"
		w.env["XDG_STATE_HOME"] = "relative/state"
		content, err := w.service(t, goos, "").Content()
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(content), "FAKE") || strings.Contains(string(content), "API_KEY") {
			t.Errorf("%s: the service file carries a secret from the environment", goos)
		}
		wd, _ := os.Getwd()
		if !strings.Contains(string(content), filepath.Join(wd, "relative/codex")) {
			t.Errorf("%s: a relative CODEX_HOME was not made absolute:\n%s", goos, content)
		}
		if strings.Contains(string(content), "relative/state") {
			t.Errorf("%s: a relative XDG_STATE_HOME was carried over", goos)
		}
	}
}

func TestNewRefusesWhatCannotWork(t *testing.T) {
	_, err := New(Options{GOOS: "windows", Home: "/h", Binary: "/b"})
	var unsupported *UnsupportedError
	if !errors.As(err, &unsupported) {
		t.Errorf("windows: %v", err)
	}
	for _, o := range []Options{
		{GOOS: "linux", Home: "", Binary: "/b"},
		{GOOS: "linux", Home: "/h", Binary: "mc-broker"},
		{GOOS: "linux", Home: "/h", Binary: "/b", ConfigFile: "c.yaml"},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
}

// launch status (and doctor) asked without --config, of a service
// installed with one, compare with the config the service runs: asking
// must not need the install's flags repeated.
func TestStatusWithoutConfigKeepsTheInstalledOne(t *testing.T) {
	for _, goos := range []string{"linux", "darwin"} {
		t.Run(goos, func(t *testing.T) {
			w := newWorld(t)
			cfg := filepath.Join(w.home, "c.yaml")
			if _, err := w.service(t, goos, cfg).Install(ctx); err != nil {
				t.Fatal(err)
			}
			st := w.service(t, goos, "").Status(ctx)
			if !st.UpToDate || st.Config != cfg || len(st.Warnings) != 0 {
				t.Errorf("status without --config: up to date %v, config %q, warnings %q", st.UpToDate, st.Config, st.Warnings)
			}
			// Asked with another config, it is out of date.
			if st := w.service(t, goos, filepath.Join(w.home, "other.yaml")).Status(ctx); st.UpToDate {
				t.Error("status with another --config says up to date")
			}
		})
	}
}
