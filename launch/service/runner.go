package service

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
)

// Runner runs a service-manager command (systemctl, launchctl). Production
// code uses ExecRunner; tests use a fake that records the commands and
// answers as the real service manager would.
type Runner interface {
	// Run runs argv and returns its combined output. A command that ran and
	// exited non-zero returns its output and a *CommandError.
	Run(ctx context.Context, argv ...string) ([]byte, error)
}

// ExecRunner runs commands as child processes.
type ExecRunner struct{}

// Run implements Runner.
func (ExecRunner) Run(ctx context.Context, argv ...string) ([]byte, error) {
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err == nil {
		return out.Bytes(), nil
	}
	cerr := &CommandError{Argv: argv, ExitCode: -1, Output: strings.TrimSpace(out.String()), Err: err}
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		cerr.ExitCode = exit.ExitCode()
		cerr.Err = nil
	}
	return out.Bytes(), cerr
}

// CommandError is a service-manager command that failed: it exited
// non-zero (ExitCode), or could not be started at all (ExitCode -1, Err).
type CommandError struct {
	Argv     []string
	ExitCode int
	Output   string // what it printed, trimmed
	Err      error  // why it could not start; nil when it ran
}

func (e *CommandError) Error() string {
	cmd := strings.Join(e.Argv, " ")
	switch {
	case e.Err != nil:
		return fmt.Sprintf("%s: %v", cmd, e.Err)
	case e.Output != "":
		return fmt.Sprintf("%s: exit status %d: %s", cmd, e.ExitCode, e.Output)
	}
	return fmt.Sprintf("%s: exit status %d", cmd, e.ExitCode)
}

func (e *CommandError) Unwrap() error { return e.Err }

// exitCode is the exit code of a command's error: 0 for nil, -1 when the
// command did not run.
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var cerr *CommandError
	if errors.As(err, &cerr) {
		return cerr.ExitCode
	}
	return -1
}
