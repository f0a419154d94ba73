package testenv

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/mc-broker/mc-broker/broker/filelock"
)

// The test binary doubles as a helper process (the TestMain re-exec
// pattern): with helperEnv set it runs one mode and exits instead of running
// tests. Arguments come in HELPER_* variables.
const helperEnv = "MC_BROKER_TEST_HELPER"

// Modes are a package's own helper modes, by name.
type Modes map[string]func() error

// RunHelperIfAsked is called first in TestMain. In a helper process it runs
// the asked-for mode ("hold" is always there) and exits.
func RunHelperIfAsked(modes Modes) {
	mode := os.Getenv(helperEnv)
	if mode == "" {
		return
	}
	run := modes[mode]
	if mode == "hold" {
		run = func() error { return hold(os.Getenv("HELPER_PATH")) }
	}
	err := fmt.Errorf("unknown helper mode %q", mode)
	if run != nil {
		err = run()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// hold flocks path, says "locked", and holds the lock until it reads a line
// (or EOF) on stdin.
func hold(path string) error {
	unlock, err := filelock.Lock(context.Background(), path, 10*time.Second)
	if err != nil {
		return err
	}
	defer unlock()
	fmt.Println("locked")
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	return nil
}

// Helper is a running helper process.
type Helper struct {
	Cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout *bufio.Reader
}

// StartHelper starts the test binary as a helper in mode, with env added.
func StartHelper(t *testing.T, mode string, env ...string) *Helper {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	// GORACE: a race-enabled helper otherwise sleeps 1s at exit.
	cmd.Env = append(os.Environ(), append([]string{helperEnv + "=" + mode, "GORACE=atexit_sleep_ms=0"}, env...)...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return &Helper{Cmd: cmd, stdin: stdin, stdout: bufio.NewReader(stdout)}
}

// HoldLock starts a helper that holds a flock on path, and returns once it
// does; Release lets go.
func HoldLock(t *testing.T, path string) *Helper {
	t.Helper()
	h := StartHelper(t, "hold", "HELPER_PATH="+path)
	h.Expect(t, "locked")
	return h
}

// Release tells a HoldLock helper to unlock and waits for it to exit.
func (h *Helper) Release(t *testing.T) {
	t.Helper()
	h.Send(t, "")
	h.Wait(t)
}

// Expect reads the helper's next line and fails unless it is want.
func (h *Helper) Expect(t *testing.T, want string) {
	t.Helper()
	if line := h.ReadLine(t); line != want {
		t.Fatalf("helper said %q, want %q", line, want)
	}
}

// ReadLine returns the helper's next line, without its newline.
func (h *Helper) ReadLine(t *testing.T) string {
	t.Helper()
	line, err := h.stdout.ReadString('\n')
	if err != nil {
		t.Fatalf("helper said %q, then %v", line, err)
	}
	return strings.TrimSpace(line)
}

// CloseStdin tells a helper that reads until EOF to finish.
func (h *Helper) CloseStdin(t *testing.T) {
	t.Helper()
	if err := h.stdin.Close(); err != nil {
		t.Fatal(err)
	}
}

// Send writes one line to the helper's stdin.
func (h *Helper) Send(t *testing.T, line string) {
	t.Helper()
	if _, err := io.WriteString(h.stdin, line+"\n"); err != nil {
		t.Fatal(err)
	}
}

// Wait waits for the helper to exit and fails if it failed.
func (h *Helper) Wait(t *testing.T) {
	t.Helper()
	if err := h.Cmd.Wait(); err != nil {
		t.Fatalf("helper: %v", err)
	}
}
