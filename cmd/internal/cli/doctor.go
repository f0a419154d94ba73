package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/mc-broker/mc-broker/broker"
	"github.com/mc-broker/mc-broker/broker/config"
	"github.com/mc-broker/mc-broker/broker/watch"
	"github.com/mc-broker/mc-broker/cmd/internal/doctor"
	"github.com/mc-broker/mc-broker/cmd/wire"
)

// DoctorOptions are the inputs of `mc-broker doctor`.
type DoctorOptions struct {
	f          *Factory
	ConfigFile string
	Compose    []string
	JSON       bool
	// probes replace the engine, service and compose checks in tests.
	probes *doctorProbes
}

type doctorProbes struct {
	engine  func(context.Context) doctor.Engine
	service func(context.Context) doctor.Service
	compose func([]string) ([]doctor.Finding, error)
}

// NewCmdDoctor builds `mc-broker doctor`; runF replaces the run in tests.
func NewCmdDoctor(f *Factory, runF func(*DoctorOptions) error) *cobra.Command {
	opts := &DoctorOptions{f: f}
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check the whole set-up and say how to fix what is wrong",
		Long: `Check, and explain with a fix for each problem:
  - each source: logged in, valid, when its access token expires, and when
    its refresh token ends (a new login is needed before then: WARN three
    days ahead, FAIL after);
  - each copy: reachable, in sync, mode 0600 and the configured owner, not a
    symlink;
  - what silently beats a login: variables in this environment that a CLI
    uses instead (CLAUDE_CODE_OAUTH_TOKEN, ANTHROPIC_API_KEY,
    ANTHROPIC_AUTH_TOKEN, CLAUDE_CODE_PROVIDER_MANAGED_BY_HOST,
    CLAUDE_CODE_SDK_HAS_OAUTH_REFRESH, OPENAI_API_KEY, CODEX_API_KEY,
    GEMINI_API_KEY), apiKeyHelper (or those variables) in Claude's
    settings.json on this host and in copies, and Codex's
    cli_auth_credentials_store = "keyring". Names only, never values;
  - the Docker engine and the docker context it is reached through;
  - whether the background service (mc-broker launch install) is installed
    and running, or another watcher runs;
  - with --compose, the credential mounts of compose files (as
    'mc-broker compose check' does).
Nothing is written. On a terminal, lines are wrapped to its width ($COLUMNS
when set); piped or redirected, each check stays on one line, and --json is
never wrapped.

Exit codes: 0 all is well; 1 something needs you (each problem is listed
with its fix); 2 bad usage.`,
		Example: `  mc-broker doctor
  mc-broker doctor --compose compose.yaml --compose compose.override.yaml
  mc-broker doctor --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if runF != nil {
				return runF(opts)
			}
			return doctorRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVar(&opts.ConfigFile, "config", "", "config `FILE` (default $MC_BROKER_CONFIG, else $XDG_CONFIG_HOME/mc-broker/config.yaml if it exists, else built-in defaults)")
	cmd.Flags().StringArrayVar(&opts.Compose, "compose", nil, "also check this compose `FILE` (repeat for several -f files)")
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print the checks as JSON")
	return cmd
}

func doctorRun(ctx context.Context, opts *DoctorOptions) error {
	if ctx == nil {
		ctx = context.Background()
	}
	f := opts.f
	in := doctor.Inputs{Now: f.Now(), ComposeFiles: opts.Compose, Owners: map[string]doctor.Owner{}}
	probes := opts.probes
	if probes == nil {
		probes = realDoctorProbes(f)
	}
	in.Engine, in.Service, in.Compose = probes.engine, probes.service, probes.compose
	sel := &selection{ConfigFile: opts.ConfigFile}
	b, cfg, env, err := sel.load(ctx, f)
	if err != nil {
		in.ConfigErr = err
		var exit *ExitError
		if errors.As(err, &exit) {
			in.ConfigFix = exit.Hint
		}
	} else {
		in.Status = b.Status(ctx, broker.Options{})
		for _, sk := range cfg.Sinks {
			if sk.Dir != "" {
				in.Owners[sk.Dir] = doctor.Owner{UID: sk.UID, GID: sk.GID}
			}
		}
		in.VolumeCopies = volumeCopies(cfg)
		in.Overrides = overrideSources(f, cfg, env)
	}
	if env, err := f.Env(); err == nil {
		in.WatcherRunning = watch.Running(env.StateDir())
	}
	res := doctor.Run(ctx, in)
	code := broker.ExitOK
	if res.NeedsAttention() {
		code = broker.ExitCopyFailed
	}
	if opts.JSON {
		enc := json.NewEncoder(f.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(struct {
			*doctor.Result
			NeedsAttention bool `json:"needs_attention"`
			ExitCode       int  `json:"exit_code"`
		}{res, res.NeedsAttention(), code}); err != nil {
			return err
		}
	} else {
		printDoctor(f.Stdout, outputWidth(f.Stdout, f.Getenv), res)
	}
	if code != broker.ExitOK {
		return &ExitError{Code: code}
	}
	return nil
}

// printDoctor writes one check per line, wrapped to width (0: not
// wrapped), continuation lines indented under the text they continue.
func printDoctor(w io.Writer, width int, res *doctor.Result) {
	const indent = "      "
	problems := 0
	for _, c := range res.Checks {
		label := map[doctor.Status]string{doctor.OK: "ok", doctor.Info: "info", doctor.Warn: "WARN", doctor.Fail: "FAIL"}[c.Status]
		writeWrapped(w, width, fmt.Sprintf("%-4s  ", label), indent, c.Area+" "+c.Name+": "+c.Detail)
		if c.Fix != "" && (c.Status == doctor.Warn || c.Status == doctor.Fail) {
			problems++
			writeWrapped(w, width, indent+"fix: ", indent+"     ", c.Fix)
		} else if c.Fix != "" {
			writeWrapped(w, width, indent, indent, c.Fix)
		}
	}
	switch problems {
	case 0:
		fmt.Fprintln(w, "All is well.")
	case 1:
		fmt.Fprintln(w, "1 problem needs you; its fix is above.")
	default:
		fmt.Fprintf(w, "%d problems need you; each fix is above.\n", problems)
	}
}

// overrideSources is where doctor looks for what silently beats the
// configured logins.
func overrideSources(f *Factory, cfg *config.Config, env config.Env) *doctor.OverrideSources {
	o := &doctor.OverrideSources{Getenv: f.Getenv, Variables: overrideVariables()}
	for _, s := range cfg.Sources {
		switch s.Kind {
		case "claude":
			o.ClaudeSettings = append(o.ClaudeSettings, filepath.Join(filepath.Dir(s.Path), "settings.json"))
		case "codex":
			if store, err := wire.StoreFor(s, env); err == nil && store == "file" {
				o.CodexConfigs = append(o.CodexConfigs, filepath.Join(filepath.Dir(s.Path), "config.toml"))
			}
		}
	}
	// Claude Code's managed settings, which beat the user's.
	managed := "/etc/claude-code/managed-settings.json"
	if env.OS() == "darwin" {
		managed = "/Library/Application Support/ClaudeCode/managed-settings.json"
	}
	o.ClaudeSettings = append(o.ClaudeSettings, managed)
	for _, sk := range cfg.Sinks {
		src, _ := cfg.Source(sk.Source)
		if sk.Dir == "" {
			continue
		}
		switch src.Kind {
		case "claude":
			o.CopySettings = append(o.CopySettings, filepath.Join(sk.Dir, "settings.json"))
		case "codex":
			o.CopyCodexConfigs = append(o.CopyCodexConfigs, filepath.Join(sk.Dir, "config.toml"))
		}
	}
	return o
}
