package cli

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/mc-broker/mc-broker/broker"
)

// StatusOptions are the inputs of `mc-broker status`.
type StatusOptions struct {
	f *Factory
	selection
	JSON bool
}

// NewCmdStatus builds `mc-broker status`; runF replaces statusRun in tests.
func NewCmdStatus(f *Factory, runF func(*StatusOptions) error) *cobra.Command {
	opts := &StatusOptions{f: f}
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show each login on this host and how every copy compares with it",
		Long: `Show, for each source, where its login is read, whether it is there, its
fingerprint and when it expires; and for each copy whether it is:
  in-sync   identical to what sync would write
  older     holds an older login (sync updates it)
  newer     holds a newer login than the host (sync keeps it)
  differs   same login age, other bytes (sync rewrites it)
  missing   not written yet
  broken    blanked, truncated or not a login (sync repairs it)
  present   the host has no usable login to compare with
  failed    could not be read
Nothing is written. Exit codes as for sync.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if runF != nil {
				return runF(opts)
			}
			return statusRun(cmd.Context(), opts)
		},
	}
	opts.addFlags(cmd.Flags())
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print as JSON (fingerprints and expiry times, never tokens)")
	return cmd
}

func statusRun(ctx context.Context, opts *StatusOptions) error {
	if ctx == nil {
		ctx = context.Background()
	}
	b, cfg, err := opts.load(ctx, opts.f)
	if err != nil {
		return reportError(opts.f, opts.JSON, err)
	}
	report := b.Status(ctx, broker.Options{Only: opts.Only})
	if !opts.JSON {
		where := "built-in defaults (no config file)"
		if cfg.File != "" {
			where = cfg.File
		}
		opts.f.Stdout.Write([]byte("config: " + where + "\n"))
	}
	if err := printReport(opts.f, report, opts.JSON, true); err != nil {
		return err
	}
	if code := report.ExitCode(); code != broker.ExitOK {
		return &ExitError{Code: code}
	}
	return nil
}
