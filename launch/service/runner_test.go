package service

import (
	"context"
	"errors"
	"testing"
)

func TestExecRunnerReportsExitStatusAndOutput(t *testing.T) {
	out, err := ExecRunner{}.Run(ctx, "sh", "-c", "echo inactive; echo to stderr >&2; exit 3")
	var cerr *CommandError
	if !errors.As(err, &cerr) || cerr.ExitCode != 3 || cerr.Output != "inactive\nto stderr" || string(out) != "inactive\nto stderr\n" {
		t.Fatalf("output %q, error %#v", out, err)
	}
	if exitCode(err) != 3 || exitCode(nil) != 0 {
		t.Errorf("exitCode %d", exitCode(err))
	}
	_, err = ExecRunner{}.Run(ctx, "/nonexistent/systemctl", "--user")
	if !errors.As(err, &cerr) || cerr.ExitCode != -1 || cerr.Err == nil {
		t.Fatalf("a missing command: %#v", err)
	}
	// No systemctl at all is "cannot reach the manager", not a crash.
	d := &systemd{s: &Service{opts: Options{Runner: fakeArgv0{"/nonexistent/systemctl"}}}}
	var unavailable *ManagerUnavailableError
	if _, err := d.probe(ctx); !errors.As(err, &unavailable) {
		t.Errorf("probe without systemctl: %v", err)
	}
}

// fakeArgv0 runs commands with argv[0] replaced.
type fakeArgv0 struct{ path string }

func (f fakeArgv0) Run(c context.Context, argv ...string) ([]byte, error) {
	return ExecRunner{}.Run(c, append([]string{f.path}, argv[1:]...)...)
}
