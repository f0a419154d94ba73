package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/mc-broker/mc-broker/broker"
	"github.com/mc-broker/mc-broker/broker/config"
	"github.com/mc-broker/mc-broker/broker/kinds"
	"github.com/mc-broker/mc-broker/sinks/volume"
	"github.com/mc-broker/mc-broker/sinks/volume/engine"
)

// LoginOptions are the inputs of `mc-broker login`.
type LoginOptions struct {
	f          *Factory
	ConfigFile string
	Source     string
	// Args go to the CLI's own login command (after --).
	Args []string
	JSON bool
}

// NewCmdLogin builds `mc-broker login`; runF replaces loginRun in tests.
func NewCmdLogin(f *Factory, runF func(*LoginOptions) error) *cobra.Command {
	opts := &LoginOptions{f: f}
	cmd := &cobra.Command{
		Use:   "login SOURCE [-- ARGS...]",
		Short: "Log a CLI in again on this host, then give every copy the new login",
		Long: `Run the CLI's own login on this host, for the account SOURCE names, then
sync every copy of that login at once (as 'mc-broker sync --only SOURCE'
does) and report. mc-broker never calls a token endpoint itself: the CLI
logs in with its own browser or paste-code flow, and mc-broker moves files.

  claude   claude auth login   (CLAUDE_CONFIG_DIR set to the source's
                                directory when it is not ~/.claude)
  codex    codex login         (CODEX_HOME likewise; on a host without a
                                browser: mc-broker login codex -- --device-auth)
  gemini   gemini              Gemini CLI has no login command: in the
                               session it opens, type /auth, choose Login
                               with Google, then /quit

ARGS after -- go to the CLI's command. The login's copies are given the new
login even if 'mc-broker revoke' had taken them out: logging in again is
saying so. Use it when a login died (its refresh token ended, or was spent
twice), or to move an account's copies to another account.

Exit codes: 0 logged in and every copy written; 1 the CLI's login failed
(nothing is synced) or a copy could not be written; 2 bad usage; 3 the CLI
ended without leaving a valid login.`,
		Example: `  mc-broker login claude
  mc-broker login work-claude
  mc-broker login codex -- --device-auth`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if n := cmd.ArgsLenAtDash(); n > 1 || n == -1 && len(args) > 1 {
				return usageError("login takes one SOURCE; the CLI's own arguments go after --")
			}
			opts.Source, opts.Args = args[0], args[1:]
			if runF != nil {
				return runF(opts)
			}
			return loginRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVar(&opts.ConfigFile, "config", "", configFlagUsage)
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print the sync's report as JSON (the CLI's own output goes to stderr)")
	return cmd
}

func loginRun(ctx context.Context, opts *LoginOptions) error {
	if ctx == nil {
		ctx = context.Background()
	}
	f := opts.f
	sel := &selection{ConfigFile: opts.ConfigFile, Only: []string{opts.Source}}
	b, cfg, env, err := sel.load(ctx, f)
	if err != nil {
		return reportError(f, opts.JSON, err)
	}
	src, _ := cfg.Source(opts.Source)
	kind, _ := kinds.ByName(src.Kind)
	facts := kind.Facts()
	if len(facts.Login) == 0 {
		return usageError("%s is a %s source: there is no CLI to log in with", src.Name, src.Kind)
	}
	before := loginFingerprint(b.Status(ctx, broker.Options{Only: []string{src.Name}}))

	out := f.Stdout
	if opts.JSON {
		out = f.Stderr // stdout is the report's
	}
	cmd, err := cliCommand(ctx, env, src, facts.Login, opts.Args)
	if err != nil {
		return err
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = f.Stdin, out, f.Stderr
	if facts.LoginNote != "" {
		fmt.Fprintf(f.Stderr, "mc-broker: %s\n", facts.LoginNote)
	}
	fmt.Fprintf(f.Stderr, "mc-broker: running %s\n", cliCommandLine(cmd, facts.ConfigDirVariable))
	if err := runCLI(cmd); err != nil {
		return err
	}

	// Copies of --dir layouts written before get the new login too, where
	// they still are: a container started from one would otherwise go on
	// with the dead login until its next pre-run sync.
	docker := volume.NewShared(engine.NewLazy(env.Getenv, env.Home))
	defer docker.Close()
	known, _ := knownCopies(b, cfg, env, docker, src.Name)
	for _, s := range known {
		if loc := s.Location(); filepath.IsAbs(loc) && exists(filepath.Dir(loc)) {
			b.Copies = append(b.Copies, broker.Copy{Source: src.Name, Sink: s, Companions: facts.Companions})
		}
	}
	report := b.Sync(ctx, broker.Options{Only: []string{src.Name}, LiftRevocation: true})
	if !opts.JSON {
		after := loginFingerprint(report)
		switch {
		case after == "":
			fmt.Fprintf(f.Stdout, "%s ended, but %s holds no valid login\n", facts.Login[0], src.Path)
		case after == before:
			fmt.Fprintf(f.Stdout, "the login did not change (%s); its copies are checked anyway\n", after)
		default:
			fmt.Fprintf(f.Stdout, "logged in: %s\n", after)
		}
	}
	if err := printReport(f, report, opts.JSON, false); err != nil {
		return err
	}
	if code := report.ExitCode(); code != broker.ExitOK {
		return &ExitError{Code: code}
	}
	return nil
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

func loginFingerprint(r *broker.Report) string {
	if len(r.Sources) == 1 && r.Sources[0].State == broker.SourceValid {
		return r.Sources[0].Fingerprint
	}
	return ""
}

// cliCommand is argv (a CLI's own login or logout) with args, for the
// account source s names: run with the CLI's config-directory variable
// set to s's directory, or removed when s is where the CLI keeps its
// login without it.
func cliCommand(ctx context.Context, env config.Env, s config.Source, argv, args []string) (*exec.Cmd, error) {
	kind, _ := kinds.ByName(s.Kind)
	variable := kind.Facts().ConfigDirVariable
	value, ok := kinds.ConfigDirValue(s.Kind, env.Home, s.Path)
	if !ok {
		return nil, &ExitError{Code: broker.ExitUsage,
			Err:  fmt.Errorf("%s cannot be told to keep its login at %s (source %s)", argv[0], s.Path, s.Name),
			Hint: "point the source at the CLI's own login file in a config directory of its own (" + variable + ")"}
	}
	cmd := exec.CommandContext(ctx, argv[0], append(append([]string(nil), argv[1:]...), args...)...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, variable+"=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	if value != "" {
		cmd.Env = append(cmd.Env, variable+"="+value)
	}
	return cmd, nil
}

// cliCommandLine shows a command as a shell would take it, with the
// config-directory variable when it is set.
func cliCommandLine(cmd *exec.Cmd, variable string) string {
	line := strings.Join(cmd.Args, " ")
	for _, kv := range cmd.Env {
		if strings.HasPrefix(kv, variable+"=") {
			return kv + " " + line
		}
	}
	return line
}

// runCLI runs a CLI's own command and maps its failure to an exit code.
func runCLI(cmd *exec.Cmd) error {
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, exec.ErrNotFound):
		return &ExitError{Code: broker.ExitUsage, Err: fmt.Errorf("%s is not installed here (not on PATH)", cmd.Args[0]),
			Hint: "install it on this host, or put it on PATH"}
	case errors.As(err, &exit):
		return &ExitError{Code: broker.ExitCopyFailed, Err: fmt.Errorf("%s ended with %v; nothing was changed by mc-broker", strings.Join(cmd.Args, " "), exit.ProcessState)}
	}
	return &ExitError{Code: broker.ExitCopyFailed, Err: err}
}
