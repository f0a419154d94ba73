package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/mc-broker/mc-broker/broker"
	"github.com/mc-broker/mc-broker/broker/config"
	"github.com/mc-broker/mc-broker/launch/service"
)

// LaunchOptions are the inputs of `mc-broker launch install|uninstall|status`.
type LaunchOptions struct {
	f          *Factory
	Action     string // "install", "uninstall" or "status"
	ConfigFile string
	DryRun     bool
	JSON       bool

	// The platform and the service manager; tests replace them.
	GOOS       string
	UID        int
	Executable func() (string, error)
	LookPath   func(string) (string, error)
	Runner     service.Runner
	TempDirs   []string // where a binary does not last: service.TempDirs()
}

// NewCmdLaunch builds `mc-broker launch`; runF replaces launchRun in tests.
func NewCmdLaunch(f *Factory, runF func(*LaunchOptions) error) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "launch",
		Short: "Run mc-broker watch in the background, under launchd or systemd",
		Long: `Install, remove or inspect a background service that runs
"mc-broker watch" for you: on Linux a systemd user unit
(~/.config/systemd/user/mc-broker.service), on macOS a LaunchAgent
(~/Library/LaunchAgents/` + service.Label + `.plist). It starts at login
and restarts when it fails.

The service runs this mc-broker binary by its absolute path, with --config
when you give one (or MC_BROKER_CONFIG is set); otherwise watch finds its
config file, or uses the built-in defaults, as in a shell. The service
manager does not see your shell's environment, so install copies the
variables that matter (CLAUDE_CONFIG_DIR, CODEX_HOME, GEMINI_CLI_HOME,
CLAUDE_SECURESTORAGE_CONFIG_DIR, GEMINI_FORCE_ENCRYPTED_FILE_STORAGE,
XDG_*_HOME, DOCKER_HOST, DOCKER_CONTEXT and the other DOCKER_* settings)
into the service file. Run install again after changing them, after an
upgrade, or to switch configs: it updates the file in place and restarts
the service.

See docs/SERVICE.md for logs, reloading and what runs.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError("unknown command %q for mc-broker launch: use install, uninstall or status", args[0])
			}
			return cmd.Help()
		},
	}
	cmd.AddCommand(
		newCmdLaunchAction(f, runF, "install", "Install and start the background service, or update it", `Write the service file and (re)start the service, so that "mc-broker watch"
runs now and at every login. Running it again updates the file in place
and restarts the service with this binary.

  Linux:  systemctl --user daemon-reload, enable and restart mc-broker.service
  macOS:  launchctl bootout (when loaded), enable and bootstrap gui/<uid>

The config is checked first: a config with mistakes is refused (exit 2)
rather than installed into a service that could not start. Without a
systemd user instance (in a container, for example) nothing is written.

A build inside mc-broker's source tree (bin/mc-broker from make build) or a
binary in a temporary directory is installed with a warning: a rebuild,
make clean or a cleaned /tmp later leaves the service without it. make
install puts mc-broker where it stays.

Exit codes: 0 installed and started; 1 the service manager failed or could
not be reached; 2 bad usage or config.`),
		newCmdLaunchAction(f, runF, "uninstall", "Stop the background service and remove it", `Stop the service and remove its file. The logs are kept. Nothing to remove
is not an error.

Exit codes: 0 removed or not installed; 1 the service manager failed or
could not be reached; 2 bad usage.`),
		newCmdLaunchAction(f, runF, "status", "Say whether the background service is installed and running, and where it logs", `Say whether the service file is there and which binary and config it runs,
whether the service is running, and where its logs are. Warns when the
service runs a binary that is gone or is not this mc-broker, and when the
file is not what install would write now. Nothing is changed.

Exit codes: 0 installed and running, with no warnings; 1 otherwise.`),
	)
	return cmd
}

func newCmdLaunchAction(f *Factory, runF func(*LaunchOptions) error, action, short, long string) *cobra.Command {
	opts := &LaunchOptions{
		f: f, Action: action,
		GOOS: runtime.GOOS, UID: os.Getuid(),
		Executable: os.Executable, LookPath: exec.LookPath, Runner: service.ExecRunner{},
		TempDirs: service.TempDirs(),
	}
	cmd := &cobra.Command{
		Use:   action,
		Short: short,
		Long:  long,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if runF != nil {
				return runF(opts)
			}
			return launchRun(cmd.Context(), opts)
		},
	}
	if action != "uninstall" {
		cmd.Flags().StringVar(&opts.ConfigFile, "config", "", "config `FILE` the service passes to watch (default $MC_BROKER_CONFIG; else none, and watch finds $XDG_CONFIG_HOME/mc-broker/config.yaml or uses built-in defaults)")
	}
	if action != "status" {
		cmd.Flags().BoolVar(&opts.DryRun, "dry-run", false, "print the service file and the commands, change nothing")
	}
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print the outcome as JSON")
	return cmd
}

func launchRun(ctx context.Context, opts *LaunchOptions) error {
	if ctx == nil {
		ctx = context.Background()
	}
	svc, err := opts.service()
	if err != nil {
		return reportError(opts.f, opts.JSON, launchError(err))
	}
	switch opts.Action {
	case "status":
		return launchStatus(ctx, opts, svc)
	case "install", "uninstall":
	default:
		return usageError("unknown launch action %q", opts.Action)
	}
	plan, apply := svc.InstallPlan, svc.Install
	var warnings []string
	if opts.Action == "uninstall" {
		plan, apply = svc.UninstallPlan, svc.Uninstall
	} else if why := service.TransientBinary(svc.Args()[0], opts.TempDirs); why != "" {
		// Installed all the same: it works today, and the user may mean it.
		warnings = append(warnings, "the service will run "+svc.Args()[0]+", "+why)
		fmt.Fprintf(opts.f.Stderr, "mc-broker: warning: %s\n", warnings[0])
	}
	var res *service.Result
	if opts.DryRun {
		var p *service.Plan
		if p, err = plan(); err == nil {
			res = &service.Result{Plan: *p, Ran: [][]string{}, Logs: svc.Logs()}
		}
	} else {
		res, err = apply(ctx)
	}
	if err != nil {
		if !opts.JSON && res != nil {
			printRan(opts.f.Stdout, res)
		}
		return reportError(opts.f, opts.JSON, launchError(err))
	}
	if opts.JSON {
		return writeJSON(opts.f.Stdout, struct {
			Action string `json:"action"`
			DryRun bool   `json:"dry_run"`
			*service.Result
			Warnings []string `json:"warnings,omitempty"`
		}{opts.Action, opts.DryRun, res, warnings})
	}
	printLaunchResult(opts.f.Stdout, opts, svc, res)
	return nil
}

// service works out the binary, the config and the platform.
func (opts *LaunchOptions) service() (*service.Service, error) {
	env, err := opts.f.Env()
	if err != nil {
		return nil, &ExitError{Code: broker.ExitUsage, Err: err}
	}
	exe, err := opts.Executable()
	if err != nil {
		return nil, fmt.Errorf("cannot find this mc-broker's binary: %w", err)
	}
	bin, err := service.ResolveBinary(exe, opts.LookPath)
	var tmp *service.TemporaryBinaryError
	switch {
	case errors.As(err, &tmp) && opts.Action != "install":
		bin = tmp.Path // only install needs a binary that stays
	case err != nil:
		return nil, err
	}
	cfg, err := opts.configFile(env)
	if err != nil {
		return nil, err
	}
	return service.New(service.Options{
		GOOS: opts.GOOS, Home: env.Home, Getenv: opts.f.Getenv, UID: opts.UID,
		Binary: bin, ConfigFile: cfg, Runner: opts.Runner, TempDirs: opts.TempDirs,
	})
}

// configFile is the absolute --config for watch, or "" to let watch find
// its config as it does in a shell. install checks the config it will run
// with, so that a mistake shows now and not as a service that keeps failing.
func (opts *LaunchOptions) configFile(env config.Env) (string, error) {
	path, namedBy := namedConfig(opts.ConfigFile, opts.f.Getenv)
	if path != "" {
		abs, err := filepath.Abs(path)
		if err != nil {
			return "", usageError("--config: %v", err)
		}
		path = abs
	}
	if opts.Action != "install" {
		return path, nil
	}
	if path != "" {
		if _, err := loadNamed(path, namedBy, env); err != nil {
			return "", err
		}
		return path, nil
	}
	if _, err := os.Stat(env.ConfigFile()); errors.Is(err, fs.ErrNotExist) {
		return "", nil // built-in defaults
	}
	if _, err := config.Load(env.ConfigFile(), env); err != nil {
		return "", err
	}
	return "", nil
}

// launchError adds what to do to the service package's errors.
func launchError(err error) error {
	var (
		unavailable *service.ManagerUnavailableError
		managerErr  *service.ManagerError
		unsupported *service.UnsupportedError
		tmp         *service.TemporaryBinaryError
	)
	switch {
	case errors.As(err, &unavailable) && unavailable.Manager == service.Launchd:
		return &ExitError{Code: broker.ExitCopyFailed, Err: err, Hint: "launchctl needs your GUI login session: run this in Terminal on the Mac you are logged in to, or run mc-broker watch under your own supervisor"}
	case errors.As(err, &unavailable):
		return &ExitError{Code: broker.ExitCopyFailed, Err: err, Hint: "there is no systemd user instance here (a container, or a login without one): run mc-broker watch under your own supervisor, or enable lingering (sudo loginctl enable-linger $USER) and log in again"}
	case errors.As(err, &managerErr) && managerErr.Manager == service.Launchd:
		return &ExitError{Code: broker.ExitCopyFailed, Err: err, Hint: "see launchctl print gui/<uid>/" + service.Label + " and the log in ~/Library/Logs/mc-broker/"}
	case errors.As(err, &managerErr):
		return &ExitError{Code: broker.ExitCopyFailed, Err: err, Hint: "see systemctl --user status " + service.Unit + " and journalctl --user -u " + service.Unit}
	case errors.As(err, &unsupported):
		return &ExitError{Code: broker.ExitUsage, Err: err, Hint: "run mc-broker watch under your own supervisor"}
	case errors.As(err, &tmp):
		return &ExitError{Code: broker.ExitUsage, Err: err, Hint: "install mc-broker first (make install, or go install ./cmd/mc-broker) and run launch install with that binary"}
	case errors.As(err, new(*ExitError)), errors.As(err, new(*config.Error)):
		return err
	}
	// Anything else failed on this host (writing the service file, finding
	// the binary): not a usage mistake.
	return &ExitError{Code: broker.ExitCopyFailed, Err: err, Hint: "check the path in the message and its permissions, then run the command again"}
}

func managerName(m string) string {
	if m == service.Launchd {
		return "launchd agent " + service.Label
	}
	return "systemd user unit " + service.Unit
}

// planChange says what a dry run's write does to the file.
var planChange = map[string]string{
	"create":    "a new file",
	"update":    "replacing the one there",
	"unchanged": "the same as the one there",
}

func printRan(w io.Writer, res *service.Result) {
	for _, argv := range res.Ran {
		fmt.Fprintf(w, "ran: %s\n", service.Step{Argv: argv})
	}
}

func printLaunchResult(w io.Writer, opts *LaunchOptions, svc *service.Service, res *service.Result) {
	if opts.DryRun {
		fmt.Fprintf(w, "dry run, nothing is changed: %s of the %s would\n", opts.Action, managerName(res.Manager))
		if res.Change == "absent" {
			fmt.Fprintf(w, "do nothing: %s is not there\n", res.File)
		}
		for _, st := range res.Steps {
			switch {
			case st.Write != "":
				fmt.Fprintf(w, "write %s (%s):\n%s\n", st.Write, planChange[res.Change], res.Content)
			case st.Remove != "":
				fmt.Fprintln(w, st)
			default:
				fmt.Fprintf(w, "run %s\n", st)
			}
		}
		return
	}
	if res.Change == "absent" {
		fmt.Fprintf(w, "not installed: %s is not there; nothing to do\n", res.File)
		return
	}
	verb := map[string]string{"create": "created", "update": "updated", "unchanged": "unchanged", "remove": "removed"}[res.Change]
	if opts.Action == "install" {
		fmt.Fprintf(w, "%s: %s\n", verb, res.File)
		printRan(w, res)
		fmt.Fprintf(w, "mc-broker watch runs in the background as the %s: %s\n", managerName(res.Manager), service.Step{Argv: svc.Args()})
		fmt.Fprintf(w, "logs: %s\n", res.Logs)
		return
	}
	printRan(w, res)
	fmt.Fprintf(w, "%s: %s\n", verb, res.File)
	if len(res.Logs.Files) > 0 {
		fmt.Fprintf(w, "kept the logs: %s\n", res.Logs)
	}
}

func launchStatus(ctx context.Context, opts *LaunchOptions, svc *service.Service) error {
	st := svc.Status(ctx)
	var err error
	if !st.Installed || st.State != service.StateRunning || len(st.Warnings) > 0 {
		err = &ExitError{Code: broker.ExitCopyFailed}
	}
	if opts.JSON {
		if werr := writeJSON(opts.f.Stdout, st); werr != nil {
			return werr
		}
		return err
	}
	w := opts.f.Stdout
	fmt.Fprintf(w, "service: %s\n", managerName(st.Manager))
	if st.Installed {
		fmt.Fprintf(w, "file: %s\n", st.File)
		if st.Binary != "" {
			runs := []string{st.Binary, "watch"}
			if st.Config != "" {
				runs = append(runs, "--config", st.Config)
			}
			fmt.Fprintf(w, "runs: %s\n", service.Step{Argv: runs})
		}
	} else {
		fmt.Fprintf(w, "file: %s (not installed: run mc-broker launch install)\n", st.File)
	}
	state := st.State
	if st.Detail != "" && st.Detail != st.State {
		state += " (" + st.Detail + ")"
	}
	if st.PID != 0 {
		state += fmt.Sprintf(", pid %d", st.PID)
	}
	fmt.Fprintf(w, "state: %s\n", state)
	fmt.Fprintf(w, "logs: %s\n", st.Logs)
	for _, warning := range st.Warnings {
		fmt.Fprintf(w, "warning: %s\n", warning)
	}
	if st.ManagerErr != nil {
		if exit, ok := launchError(st.ManagerErr).(*ExitError); ok && exit.Hint != "" {
			fmt.Fprintf(w, "hint: %s\n", exit.Hint)
		}
	}
	return err
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
