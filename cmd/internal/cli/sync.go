package cli

import (
	"context"
	"time"

	"github.com/spf13/cobra"

	"github.com/mc-broker/mc-broker/broker"
)

// SyncOptions are the inputs of one sync pass.
type SyncOptions struct {
	f *Factory
	selection
	MinTTL        time.Duration
	MinRefreshTTL time.Duration
	DryRun        bool
	Force         bool
	JSON          bool
}

// NewCmdSync builds `mc-broker sync`; runF replaces syncRun in tests.
func NewCmdSync(f *Factory, runF func(*SyncOptions) error) *cobra.Command {
	opts := &SyncOptions{f: f}
	cmd := &cobra.Command{
		Use:   "sync",
		Short: "Copy each logged-in CLI's login into its container copies, once",
		Long: `Read each CLI's login on this host, check it, and write every copy that
needs it. Run it before starting containers, e.g. as a pre-run hook:

  mc-broker sync --dir .auth && docker compose up

All copies and the host act as one store: the newest login wins. When a
container's CLI refreshed its login in a copy, sync takes that login back
into the host's store (keeping the host's previous login in
$XDG_STATE_HOME/mc-broker/backups/) and gives it to every other copy, but
only when it is the same account as the host's, plausible (it does not
claim to live longer than the CLI's logins do), small, and the copy has not
given too many logins lately: a container can write anything into its copy.

For each copy it reports one of:
  created        there was no copy
  updated        the copy held an older login
  repaired       the copy was broken (blanked, truncated), or held a newer
                 login that was not taken back (the reason is shown)
  unchanged      already identical: nothing was written, not even the mtime
  taken-back     the copy held a newer login: the host and the other
                 copies now have it
  kept-newer     the copy holds a newer login the host cannot take back
                 (its store is read-only for mc-broker): left alone
  refused        the file there is not a login of this CLI: left alone
                 (exit 2; point the copy elsewhere, or --force)
  other-account  the copy holds another account's login that mc-broker did
                 not put there: left alone (exit 1; --force replaces it)
  skipped        the host has no usable login: the copy was left as it is
  failed         the copy could not be written (the others still are)
  revoked        (status, watch) 'mc-broker revoke' took the login out:
                 nothing is written there until a sync or login; sync
                 itself lifts the revocation and writes the copy

A CLI that is not logged in on this host is reported and skipped, unless it
is named with --only. A broken login on the host (blanked by a failed
refresh, truncated) is never copied anywhere.

Exit codes: 0 all good; 1 a copy or source could not be read or written,
or a copy's login was refused; 2 bad usage or config, or a copy path holds
a file that is not a login; 3 a login is broken, missing when named with
--only, expires sooner than --min-ttl, or its refresh token ends sooner
than --min-refresh-ttl.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if runF != nil {
				return runF(opts)
			}
			return syncRun(cmd.Context(), opts)
		},
	}
	opts.addFlags(cmd.Flags())
	cmd.Flags().DurationVar(&opts.MinTTL, "min-ttl", 0, "exit 3 if a login expires sooner than this (e.g. 30m, 2h); the copies are still written")
	cmd.Flags().DurationVar(&opts.MinRefreshTTL, "min-refresh-ttl", 0, "exit 3 if a login's refresh token ends sooner than this (e.g. 72h; Claude's logins say when theirs ends): only a new login helps then")
	cmd.Flags().BoolVar(&opts.DryRun, "dry-run", false, "say what would be written, write nothing")
	cmd.Flags().BoolVar(&opts.Force, "force", false, "replace copies that are not ours: a file there that is not a login of the CLI, or another account's login")
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print the report as JSON (fingerprints and expiry times, never tokens)")
	return cmd
}

func syncRun(ctx context.Context, opts *SyncOptions) error {
	if ctx == nil {
		ctx = context.Background()
	}
	opts.writes = !opts.DryRun
	b, _, _, err := opts.load(ctx, opts.f)
	if err != nil {
		return reportError(opts.f, opts.JSON, err)
	}
	b.Rules.Force = opts.Force
	report := b.Sync(ctx, broker.Options{Only: opts.Only, MinTTL: opts.MinTTL, MinRefreshTTL: opts.MinRefreshTTL, DryRun: opts.DryRun, LiftRevocation: true})
	if err := printReport(opts.f, report, opts.JSON, false); err != nil {
		return err
	}
	if code := report.ExitCode(); code != broker.ExitOK {
		return &ExitError{Code: code}
	}
	return nil
}
