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
	MinTTL time.Duration
	DryRun bool
	JSON   bool
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

For each copy it reports one of:
  created     there was no copy
  updated     the copy held an older login
  repaired    the copy was broken (blanked, truncated, not JSON)
  unchanged   already identical: nothing was written, not even the mtime
  kept-newer  the copy holds a newer login than the host (a container
              refreshed it): left alone
  skipped     the host has no usable login: the copy was left as it is
  failed      the copy could not be written (the others still are)

A CLI that is not logged in on this host is reported and skipped, unless it
is named with --only. A broken login on the host (blanked by a failed
refresh, truncated) is never copied anywhere.

Exit codes: 0 all good; 1 a copy or source could not be read or written;
2 bad usage or config; 3 a login is broken, missing when named with --only,
or expires sooner than --min-ttl.`,
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
	cmd.Flags().BoolVar(&opts.DryRun, "dry-run", false, "say what would be written, write nothing")
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print the report as JSON (fingerprints and expiry times, never tokens)")
	return cmd
}

func syncRun(ctx context.Context, opts *SyncOptions) error {
	if ctx == nil {
		ctx = context.Background()
	}
	b, _, err := opts.load(ctx, opts.f)
	if err != nil {
		return reportError(opts.f, opts.JSON, err)
	}
	report := b.Sync(ctx, broker.Options{Only: opts.Only, MinTTL: opts.MinTTL, DryRun: opts.DryRun})
	if err := printReport(opts.f, report, opts.JSON, false); err != nil {
		return err
	}
	if code := report.ExitCode(); code != broker.ExitOK {
		return &ExitError{Code: code}
	}
	return nil
}
