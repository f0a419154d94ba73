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
	"syscall"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

// binDir holds the real mc-broker binary, built once: end-to-end tests run
// it as a user would, in its own process.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "mc-broker-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	build := exec.Command("go", "build", "-o", filepath.Join(dir, "mc-broker"), ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building mc-broker:", err)
		os.Exit(1)
	}
	// A fake security for store: keychain on any OS (see
	// sources/keychain/internal/fakesecurity).
	build = exec.Command("go", "build", "-o", filepath.Join(dir, "fakesecurity", "security"), "../../sources/keychain/internal/fakesecurity")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the fake security:", err)
		os.Exit(1)
	}
	// Readable by others: permission tests run the binary as uid 65534.
	if err := os.Chmod(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func fixturesDir(t testing.TB) string {
	abs, err := filepath.Abs(filepath.Join("..", "..", "testdata", "fixtures"))
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// TestScripts runs the acceptance scripts in testdata/script: each one is a
// user session against the built binary with HOME in a temporary directory.
func TestScripts(t *testing.T) {
	fixtures := fixturesDir(t)
	testscript.Run(t, testscript.Params{
		Dir: filepath.Join("testdata", "script"),
		Setup: func(env *testscript.Env) error {
			env.Setenv("PATH", binDir+string(os.PathListSeparator)+env.Getenv("PATH"))
			env.Setenv("HOME", filepath.Join(env.WorkDir, "home"))
			env.Setenv("FIXTURES", fixtures)
			// The binary itself, for scripts that copy it elsewhere.
			env.Setenv("TEST_MC_BROKER_BIN", filepath.Join(binDir, "mc-broker"))
			env.Setenv("MC_BROKER_SECURITY_BIN", filepath.Join(binDir, "fakesecurity", "security"))
			env.Setenv("FAKE_SECURITY_STORE", filepath.Join(env.WorkDir, "keychain.json"))
			env.Setenv("FAKE_SECURITY_LOG", filepath.Join(env.WorkDir, "security-argv.log"))
			// No Docker engine: the built-in defaults must not write this
			// machine's mc-*-auth volumes. Scripts that want the engine
			// set DOCKER_HOST themselves (see volume_*.txt).
			env.Setenv("DOCKER_HOST", "unix://"+filepath.Join(env.WorkDir, "no-docker.sock"))
			return os.MkdirAll(filepath.Join(env.WorkDir, "home"), 0o755)
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"keychain":  cmdKeychain,
			"fixture":   cmdFixture,
			"perm":      cmdPerm,
			"stamp":     cmdStamp,
			"unstamped": cmdUnstamped,
			"waitfile":  cmdWaitFile,
		},
		Condition: func(cond string) (bool, error) {
			if cond == "root" {
				return os.Geteuid() == 0, nil
			}
			return false, fmt.Errorf("unknown condition %q", cond)
		},
	})
}

// fixture NAME DEST [DURATION [REFRESH-DURATION]] copies a credential
// fixture to DEST (mode 0600), creating DEST's directory. With DURATION, a
// Claude or Gemini login's expiry (2100 in the fixtures) is set to that
// long from now: a copy's login is taken back only when it expires within
// what the CLI ever issues. REFRESH-DURATION sets a Claude login's
// refreshTokenExpiresAt likewise.
func cmdFixture(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 || len(args) > 4 {
		ts.Fatalf("usage: fixture NAME DEST [EXPIRES-IN [REFRESH-ENDS-IN]]")
	}
	data, err := os.ReadFile(filepath.Join(ts.Getenv("FIXTURES"), args[0]))
	ts.Check(err)
	if len(args) == 4 {
		d, err := time.ParseDuration(args[3])
		ts.Check(err)
		if !bytes.Contains(data, []byte("4103999999000")) {
			ts.Fatalf("fixture %s has no refresh token end to set", args[0])
		}
		data = bytes.Replace(data, []byte("4103999999000"), []byte(strconv.FormatInt(time.Now().Add(d).UnixMilli(), 10)), 1)
	}
	if len(args) >= 3 {
		d, err := time.ParseDuration(args[2])
		ts.Check(err)
		at := strconv.FormatInt(time.Now().Add(d).UnixMilli(), 10)
		if !bytes.Contains(data, []byte("4102444800000")) {
			ts.Fatalf("fixture %s has no expiry to set", args[0])
		}
		data = bytes.Replace(data, []byte("4102444800000"), []byte(at), 1)
		// Another login: its own tokens.
		data = bytes.ReplaceAll(data, []byte("TOKEN-0001"), []byte("TOKEN-"+args[2]))
	}
	dest := ts.MkAbs(args[1])
	ts.Check(os.MkdirAll(filepath.Dir(dest), 0o700))
	ts.Check(os.WriteFile(dest, data, 0o600))
}

// keychain put SERVICE ACCOUNT FIXTURE stores a fixture as an item in the
// fake Keychain; keychain simulate MODE makes every security call fail
// (locked, denied, hang) or succeed again (none).
func cmdKeychain(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: keychain put SERVICE ACCOUNT FIXTURE | keychain simulate MODE")
	}
	type item struct {
		Service string `json:"service"`
		Account string `json:"account"`
		Label   string `json:"label"`
		Secret  string `json:"secret"`
		Mdat    string `json:"mdat"`
	}
	var st struct {
		Simulate string `json:"simulate,omitempty"`
		Items    []item `json:"items"`
	}
	path := ts.Getenv("FAKE_SECURITY_STORE")
	if data, err := os.ReadFile(path); err == nil {
		ts.Check(json.Unmarshal(data, &st))
	}
	switch {
	case args[0] == "put" && len(args) == 4:
		data, err := os.ReadFile(filepath.Join(ts.Getenv("FIXTURES"), args[3]))
		ts.Check(err)
		st.Items = append(st.Items, item{Service: args[1], Account: args[2], Label: args[1], Secret: string(data), Mdat: "20261129080000Z"})
	case args[0] == "simulate" && len(args) == 2:
		st.Simulate = strings.TrimPrefix(args[1], "none")
	default:
		ts.Fatalf("usage: keychain put SERVICE ACCOUNT FIXTURE | keychain simulate MODE")
	}
	data, err := json.Marshal(st)
	ts.Check(err)
	ts.Check(os.WriteFile(path, data, 0o600))
}

// perm MODE PATH asserts PATH's permission bits (octal).
func cmdPerm(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: perm MODE PATH")
	}
	want, err := strconv.ParseUint(args[0], 8, 32)
	ts.Check(err)
	st, err := os.Stat(ts.MkAbs(args[1]))
	ts.Check(err)
	if got := uint64(st.Mode().Perm()); (got == want) == neg {
		ts.Fatalf("%s has mode %o, want %s%o", args[1], got, map[bool]string{true: "not "}[neg], want)
	}
}

func identity(ts *testscript.TestScript, path string) string {
	st, err := os.Stat(ts.MkAbs(path))
	ts.Check(err)
	sys := st.Sys().(*syscall.Stat_t)
	return fmt.Sprintf("%d/%d", sys.Ino, st.ModTime().UnixNano())
}

// stamp PATH... records each file's inode and mtime; unstamped PATH...
// asserts they did not change (no rewrite, no inotify event in a container).
func cmdStamp(ts *testscript.TestScript, neg bool, args []string) {
	for _, p := range args {
		ts.Setenv(stampVar(p), identity(ts, p))
	}
}

func cmdUnstamped(ts *testscript.TestScript, neg bool, args []string) {
	for _, p := range args {
		same := ts.Getenv(stampVar(p)) == identity(ts, p)
		if same == neg {
			ts.Fatalf("%s: rewritten=%v, want rewritten=%v", p, !same, neg)
		}
	}
}

func stampVar(path string) string {
	return "STAMP_" + strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, path)
}

// waitfile PATH waits (up to 10 s) until PATH exists: a background command
// (`exec mc-broker watch &w&`) is ready once it wrote its state file.
func cmdWaitFile(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: waitfile PATH")
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(ts.MkAbs(args[0])); err == nil {
			return
		}
		if time.Now().After(deadline) {
			ts.Fatalf("%s did not appear within 10s", args[0])
		}
		time.Sleep(10 * time.Millisecond)
	}
}
