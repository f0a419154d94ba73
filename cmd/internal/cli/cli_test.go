package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mc-broker/mc-broker/broker/config"
)

func testFactory(t *testing.T, vars map[string]string) (*Factory, *bytes.Buffer, *bytes.Buffer) {
	home := t.TempDir()
	var out, errb bytes.Buffer
	// No Docker engine unless a test names one: the built-in defaults
	// would otherwise write this machine's mc-*-auth volumes.
	noEngine := "unix://" + filepath.Join(home, "no-docker.sock")
	getenv := func(k string) string {
		if v, ok := vars[k]; ok || k != "DOCKER_HOST" {
			return v
		}
		return noEngine
	}
	return &Factory{
		Stdout: &out,
		Stderr: &errb,
		Getenv: getenv,
		Env:    func() (config.Env, error) { return config.Env{Home: home, Getenv: getenv, GOOS: "linux"}, nil },
		Now:    func() time.Time { return time.Date(2026, 11, 29, 9, 0, 0, 0, time.UTC) },
	}, &out, &errb
}

// checkUsageError runs the command line args and checks that it is bad
// usage: exit 2, want on stderr, and nothing on stdout (no override or
// manifest printed anyway).
func checkUsageError(t *testing.T, args []string, want string) {
	t.Helper()
	f, out, errb := testFactory(t, nil)
	if code := Main(args, f); code != 2 {
		t.Errorf("exit %d, want 2 (stderr %q)", code, errb)
	}
	if !strings.Contains(errb.String(), want) {
		t.Errorf("stderr %q lacks %q", errb, want)
	}
	if out.Len() != 0 {
		t.Errorf("printed on stdout anyway: %q", out)
	}
}

func TestSyncFlagsReachOptions(t *testing.T) {
	f, _, _ := testFactory(t, nil)
	var got *SyncOptions
	cmd := NewCmdSync(f, func(o *SyncOptions) error { got = o; return nil })
	cmd.SetArgs([]string{"--only", "claude,codex", "--min-ttl", "30m", "--dir", "x", "--dry-run", "--json", "--config", "c.yaml"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if strings.Join(got.Only, "+") != "claude+codex" || got.MinTTL != 30*time.Minute || got.Dir != "x" ||
		!got.DryRun || !got.JSON || got.ConfigFile != "c.yaml" {
		t.Errorf("options %+v", got)
	}
}

func TestExitCodesAndMessages(t *testing.T) {
	tests := []struct {
		args    []string
		code    int
		stderr  string
		vars    map[string]string
		prepare func(home string)
	}{
		{args: []string{"sync", "--bogus"}, code: 2, stderr: "mc-broker: error: unknown flag: --bogus\nmc-broker: hint: see mc-broker --help\n"},
		{args: []string{"sync", "--only", "nope"}, code: 2, stderr: `no source called "nope"`},
		{args: []string{"sync"}, code: 2, stderr: "mc-broker: error: /nonexistent/c.yaml: no such config file (named by MC_BROKER_CONFIG)\nmc-broker: hint: fix the path, or unset MC_BROKER_CONFIG to use ", vars: map[string]string{"MC_BROKER_CONFIG": "/nonexistent/c.yaml"}},
		{args: []string{"status", "--config", "/nonexistent/c.yaml"}, code: 2, stderr: "mc-broker: error: /nonexistent/c.yaml: no such config file (named by --config)\nmc-broker: hint: fix the path, or run without --config to use ", vars: map[string]string{"MC_BROKER_CONFIG": "/elsewhere.yaml"}},
		{args: []string{"sync"}, code: 0, stderr: "mc-broker: note: no Docker engine at unix://"},
		{args: []string{"sync", "--only", "claude"}, code: 3},
		{args: []string{"status"}, code: 0},
		{args: []string{"completion", "tcsh"}, code: 2, stderr: "mc-broker: error: completion: unknown shell \"tcsh\": mc-broker completes bash, fish, powershell, zsh\nmc-broker: hint: see mc-broker completion --help\n"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			f, _, errb := testFactory(t, tt.vars)
			if code := Main(tt.args, f); code != tt.code {
				t.Errorf("exit %d, want %d (stderr %q)", code, tt.code, errb)
			}
			if !strings.Contains(errb.String(), tt.stderr) {
				t.Errorf("stderr %q does not contain %q", errb, tt.stderr)
			}
		})
	}
}

func TestSyncWithNothingLoggedInSaysSo(t *testing.T) {
	f, out, _ := testFactory(t, nil)
	if code := Main([]string{"sync"}, f); code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"claude: not logged in (no file here)", "hint: run claude and /login", "hint: run codex login", "3 skipped"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	env, _ := f.Env()
	if _, err := os.Stat(filepath.Join(env.DataDir())); !os.IsNotExist(err) {
		t.Error("sync with nothing to copy created the data directory")
	}
}

func TestJSONErrorsAreJSONToo(t *testing.T) {
	f, out, errb := testFactory(t, map[string]string{"MC_BROKER_CONFIG": "/nonexistent/c.yaml"})
	if code := Main([]string{"sync", "--json"}, f); code != 2 {
		t.Fatalf("exit %d", code)
	}
	var doc struct {
		Error    string `json:"error"`
		Hint     string `json:"hint"`
		ExitCode int    `json:"exit_code"`
	}
	if err := json.Unmarshal(out.Bytes(), &doc); err != nil || doc.ExitCode != 2 || !strings.Contains(doc.Error, "no such config file (named by MC_BROKER_CONFIG)") ||
		!strings.Contains(doc.Hint, "unset MC_BROKER_CONFIG") {
		t.Errorf("stdout %q is not the error as JSON (%v)", out, err)
	}
	if !strings.Contains(errb.String(), "mc-broker: error:") {
		t.Errorf("stderr lost the text error: %q", errb)
	}
}
