package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

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
			return os.MkdirAll(filepath.Join(env.WorkDir, "home"), 0o755)
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"fixture":   cmdFixture,
			"perm":      cmdPerm,
			"stamp":     cmdStamp,
			"unstamped": cmdUnstamped,
		},
		Condition: func(cond string) (bool, error) {
			if cond == "root" {
				return os.Geteuid() == 0, nil
			}
			return false, fmt.Errorf("unknown condition %q", cond)
		},
	})
}

// fixture NAME DEST copies a credential fixture to DEST (mode 0600),
// creating DEST's directory.
func cmdFixture(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: fixture NAME DEST")
	}
	data, err := os.ReadFile(filepath.Join(ts.Getenv("FIXTURES"), args[0]))
	ts.Check(err)
	dest := ts.MkAbs(args[1])
	ts.Check(os.MkdirAll(filepath.Dir(dest), 0o700))
	ts.Check(os.WriteFile(dest, data, 0o600))
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
