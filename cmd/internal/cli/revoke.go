package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/mc-broker/mc-broker/broker"
	"github.com/mc-broker/mc-broker/broker/config"
	"github.com/mc-broker/mc-broker/broker/kinds"
	"github.com/mc-broker/mc-broker/cmd/wire"
	"github.com/mc-broker/mc-broker/sinks/volume"
	"github.com/mc-broker/mc-broker/sinks/volume/engine"
)

// RevokeOptions are the inputs of `mc-broker revoke`.
type RevokeOptions struct {
	f          *Factory
	ConfigFile string
	Sources    []string
	All        bool
	Host       bool
	JSON       bool
}

// NewCmdRevoke builds `mc-broker revoke`; runF replaces revokeRun in tests.
func NewCmdRevoke(f *Factory, runF func(*RevokeOptions) error) *cobra.Command {
	opts := &RevokeOptions{f: f}
	cmd := &cobra.Command{
		Use:   "revoke SOURCE... | --all",
		Short: "Take a login out of every place it was copied to",
		Long: `Erase every copy of the named logins: the configured directory copies,
the --dir layouts mc-broker wrote before (it remembers them), and the
Docker volume and Kubernetes Secret copies, and report each. A directory
copy's login file is removed; a Secret copy's key is removed (the Secret
and its other keys are kept); a volume copy's file is left holding {} (not
logged in), because the engine cannot delete a file without running a
container; the volume itself is kept. A file that is not a login of that
CLI is left alone.

The revocation is recorded first ($XDG_STATE_HOME/mc-broker/revoked/), so
that no watcher gives the copies the login again, however the two
interleave: until 'mc-broker sync' (or 'mc-broker login SOURCE') says so;
'watch' and 'run' never do. status shows revoked copies as "revoked".

The host's own login is left alone, unless --host is given: then the CLI's
own logout runs on this host (claude auth logout, codex logout; Gemini CLI
has none outside its session: run gemini and /logout). Whether a provider
also ends the tokens on its side is the provider's: a copy taken out of a
container that was already read by someone else may still work until its
tokens expire; log in again (mc-broker login) to replace them.

Exit codes: 0 every copy is erased (or had none); 1 a copy could not be
erased, holds something that is not a login, or the host's logout failed;
2 bad usage.`,
		Example: `  mc-broker revoke claude
  mc-broker revoke work-claude codex --host
  mc-broker revoke --all --json`,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Sources = args
			switch {
			case opts.All && len(args) > 0:
				return usageError("give SOURCE names or --all, not both")
			case !opts.All && len(args) == 0:
				return usageError("name the logins to revoke (mc-broker revoke claude), or --all")
			}
			if runF != nil {
				return runF(opts)
			}
			return revokeRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVar(&opts.ConfigFile, "config", "", configFlagUsage)
	cmd.Flags().BoolVar(&opts.All, "all", false, "revoke every configured login")
	cmd.Flags().BoolVar(&opts.Host, "host", false, "also log the CLI out on this host, with its own logout")
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print the report as JSON (locations and fingerprints, never tokens)")
	return cmd
}

func revokeRun(ctx context.Context, opts *RevokeOptions) error {
	if ctx == nil {
		ctx = context.Background()
	}
	f := opts.f
	sel := &selection{ConfigFile: opts.ConfigFile, Only: opts.Sources}
	b, cfg, env, err := sel.load(ctx, f)
	if err != nil {
		return reportError(f, opts.JSON, err)
	}
	names := opts.Sources
	if opts.All {
		for _, s := range cfg.Sources {
			names = append(names, s.Name)
		}
	}
	docker := volume.NewShared(engine.NewLazy(env.Getenv, env.Home))
	defer docker.Close()
	var reports []*broker.RevokeReport
	code := broker.ExitOK
	for _, name := range names {
		rep, err := revokeOne(ctx, opts, b, cfg, env, docker, name)
		if err != nil {
			return reportError(f, opts.JSON, &ExitError{Code: broker.ExitCopyFailed, Err: fmt.Errorf("%s: %w", name, err)})
		}
		if rep.Failed() {
			code = broker.ExitCopyFailed
		}
		reports = append(reports, rep)
	}
	if opts.JSON {
		enc := json.NewEncoder(f.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(struct {
			Sources  []*broker.RevokeReport `json:"sources"`
			ExitCode int                    `json:"exit_code"`
		}{reports, code}); err != nil {
			return err
		}
	} else {
		for _, r := range reports {
			printRevoke(f.Stdout, r)
		}
	}
	if code != broker.ExitOK {
		return &ExitError{Code: code}
	}
	return nil
}

// revokeOne erases one login's copies (those configured, and those of
// earlier layouts the memory knows) and, with --host, logs the host out.
func revokeOne(ctx context.Context, opts *RevokeOptions, b *broker.Broker, cfg *config.Config, env config.Env, docker *volume.Shared, name string) (*broker.RevokeReport, error) {
	var src broker.Source
	for _, s := range b.Sources {
		if s.Name() == name {
			src = s
		}
	}
	scfg, _ := cfg.Source(name)
	extra, bad := knownCopies(b, cfg, env, docker, name)
	var unreachable []broker.ErasedCopy
	for loc, err := range bad {
		unreachable = append(unreachable, broker.ErasedCopy{Location: loc, Outcome: broker.EraseFailed, Problem: "not erased: " + err.Error()})
	}
	sort.Slice(unreachable, func(i, j int) bool { return unreachable[i].Location < unreachable[j].Location })
	rep, err := b.Revoke(ctx, src, extra)
	if err != nil {
		return nil, err
	}
	rep.Copies = append(rep.Copies, unreachable...)
	rep.Host = &broker.HostRevocation{Location: src.Location()}
	if opts.Host {
		rep.Host.LoggedOut, rep.Host.Problem = logout(ctx, opts.f, env, scfg)
	}
	return rep, nil
}

// knownCopies are the copies of source name that the memory knows and the
// config does not name: those of --dir layouts written before. bad holds
// the locations that are no place for a copy (any more).
func knownCopies(b *broker.Broker, cfg *config.Config, env config.Env, docker *volume.Shared, name string) (sinks []broker.Sink, bad map[string]error) {
	scfg, _ := cfg.Source(name)
	configured := map[string]bool{}
	for _, c := range b.CopiesOf(name) {
		configured[c.Sink.Location()] = true
	}
	var keys []string
	for key := range b.Memories().Load(name).Stores {
		if key != broker.HostKey && !configured[key] {
			keys = append(keys, key)
		}
	}
	sort.Strings(keys)
	bad = map[string]error{}
	for _, key := range keys {
		sink, err := wire.CopyAt(cfg, scfg, key, env, docker)
		if err != nil {
			bad[key] = err
			continue
		}
		sinks = append(sinks, sink)
	}
	return sinks, bad
}

// logout runs the CLI's own logout for source s.
func logout(ctx context.Context, f *Factory, env config.Env, s config.Source) (bool, string) {
	kind, _ := kinds.ByName(s.Kind)
	facts := kind.Facts()
	if len(facts.Logout) == 0 {
		hint := facts.LogoutHint
		if hint == "" {
			hint = "a " + s.Kind + " source has no CLI to log out with"
		}
		return false, "not logged out: " + hint
	}
	cmd, err := cliCommand(ctx, env, s, facts.Logout, nil)
	if err != nil {
		return false, err.Error()
	}
	// The CLI's own words go to stderr: stdout is the report's.
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, f.Stderr, f.Stderr
	fmt.Fprintf(f.Stderr, "mc-broker: running %s\n", cliCommandLine(cmd, facts.ConfigDirVariable))
	if err := runCLI(cmd); err != nil {
		return false, err.Error()
	}
	return true, ""
}

func printRevoke(w io.Writer, r *broker.RevokeReport) {
	fmt.Fprintf(w, "%s: revoked at %s; no copy is given this login again until mc-broker sync or mc-broker login %s\n",
		r.Source, r.RevokedAt.UTC().Format("2006-01-02 15:04:05 MST"), r.Source)
	if len(r.Copies) == 0 {
		fmt.Fprintln(w, "  no copies known")
	}
	for _, c := range r.Copies {
		var details []string
		for _, d := range []string{c.Fingerprint, c.Note, c.Problem} {
			if d != "" {
				details = append(details, d)
			}
		}
		line := fmt.Sprintf("  %-8s %s", c.Outcome, c.Location)
		if len(details) > 0 {
			line += " (" + strings.Join(details, "; ") + ")"
		}
		fmt.Fprintln(w, line)
	}
	switch h := r.Host; {
	case h == nil:
	case h.LoggedOut:
		fmt.Fprintf(w, "  host     logged out with the CLI's own logout (%s)\n", h.Location)
	case h.Problem != "":
		fmt.Fprintf(w, "  host     %s (%s)\n", h.Problem, h.Location)
	default:
		fmt.Fprintf(w, "  host     login kept at %s (revoke --host logs it out)\n", h.Location)
	}
}
