package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/mc-broker/mc-broker/broker"
	"github.com/mc-broker/mc-broker/broker/config"
)

// ExitError ends the program with Code after printing Err (if any) and Hint.
type ExitError struct {
	Code int
	Err  error // nil when the report already said everything
	Hint string
}

func (e *ExitError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit status %d", e.Code)
	}
	return e.Err.Error()
}

func (e *ExitError) Unwrap() error { return e.Err }

// classify maps any error to the ExitError it ends the program with.
func classify(err error) *ExitError {
	var exit *ExitError
	var cfgErr *config.Error
	switch {
	case errors.As(err, &exit):
		return exit
	case errors.As(err, &cfgErr):
		return &ExitError{Code: broker.ExitUsage, Err: err, Hint: "fix the config, or see the config reference in the README"}
	}
	return &ExitError{Code: broker.ExitUsage, Err: err, Hint: "see mc-broker --help"}
}

// reportError also prints err as JSON on stdout when the user asked for
// --json, so that a script reading stdout gets a document either way. The
// text still goes to stderr.
func reportError(f *Factory, asJSON bool, err error) error {
	if asJSON {
		exit := classify(err)
		out := struct {
			Error    string `json:"error"`
			Hint     string `json:"hint,omitempty"`
			ExitCode int    `json:"exit_code"`
		}{err.Error(), exit.Hint, exit.Code}
		enc := json.NewEncoder(f.Stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(out)
	}
	return err
}

// usageError is a bad flag or argument: exit 2 with a pointer to --help.
func usageError(format string, args ...any) error {
	return &ExitError{Code: broker.ExitUsage, Err: fmt.Errorf(format, args...), Hint: "see mc-broker --help"}
}

// exitCode prints err the way age does (error: then hint:) and maps it to
// the documented exit codes. Errors cobra returns itself (unknown command,
// bad flag) are usage errors.
func exitCode(err error, stderr io.Writer) int {
	if err == nil {
		return broker.ExitOK
	}
	exit := classify(err)
	if exit.Err != nil {
		fmt.Fprintf(stderr, "mc-broker: error: %v\n", exit.Err)
	}
	if exit.Hint != "" {
		fmt.Fprintf(stderr, "mc-broker: hint: %s\n", exit.Hint)
	}
	return exit.Code
}
