package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/mc-broker/mc-broker/broker"
	"github.com/mc-broker/mc-broker/broker/watch"
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
  in-sync        identical to what sync would write
  older          holds an older login (sync updates it)
  newer          holds a newer login than the host (sync takes it back
                 if it passes the trust rules, docs/SECURITY.md; the
                 source line says so, and "not taken back: ..." why not)
  differs        neither older nor newer, other bytes (sync rewrites it)
  missing        not written yet
  broken         blanked or truncated (sync repairs it)
  foreign        not a login of this CLI: sync leaves it alone (exit 2)
  other-account  another account's login mc-broker did not put there:
                 sync leaves it alone (exit 1)
  present        holds a login; the host has no usable one to compare with
  failed         could not be read
  revoked        'mc-broker revoke' took the login out: nothing is written
                 there until 'mc-broker sync' or 'mc-broker login'
Nothing is written. Exit codes as for sync.

It also says whether a watcher ('mc-broker watch', or the background
service) is running, since when, which copies it could not write, whose
newer login it did not take back (shown for an hour) and whether writing
back into the host fails; either of the last two also exits 1.`,
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
	b, cfg, env, err := opts.load(ctx, opts.f)
	if err != nil {
		return reportError(opts.f, opts.JSON, err)
	}
	report := b.Status(ctx, broker.Options{Only: opts.Only})
	stateDir := env.StateDir()
	if opts.Dir != "" {
		if abs, err := filepath.Abs(opts.Dir); err == nil {
			stateDir = layoutStateDir(stateDir, abs)
		}
	}
	ws := readWatcherStatus(stateDir)
	notes := lockMirrorNotes(b)
	code := max(report.ExitCode(), ws.exitCode())
	if opts.JSON {
		enc := json.NewEncoder(opts.f.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(struct {
			*broker.Report
			Watcher  *watcherStatus `json:"watcher"`
			Notes    []string       `json:"notes,omitempty"`
			ExitCode int            `json:"exit_code"`
		}{report, ws, notes, code}); err != nil {
			return err
		}
	} else {
		where := "built-in defaults (no config file)"
		if cfg.File != "" {
			where = cfg.File
		}
		fmt.Fprintln(opts.f.Stdout, "config: "+where)
		printWatcher(opts.f.Stdout, ws, opts.f.Now())
		for _, n := range notes {
			fmt.Fprintln(opts.f.Stdout, "note: "+n)
		}
		if err := printReport(opts.f, report, false, true); err != nil {
			return err
		}
	}
	if code != broker.ExitOK {
		return &ExitError{Code: code}
	}
	return nil
}

// exitCode is what a running watcher's state adds to status's exit code:
// a write-back that keeps failing, or a copy whose login was refused
// within the hour, is 1, as sync would exit for them.
func (ws *watcherStatus) exitCode() int {
	if !ws.Running || ws.State == nil {
		return broker.ExitOK
	}
	for _, s := range ws.Sources {
		if s.WriteBackSince != nil {
			return broker.ExitCopyFailed
		}
		for _, c := range s.Copies {
			if c.Refused != "" {
				return broker.ExitCopyFailed
			}
		}
	}
	return broker.ExitOK
}

// watcherStatus is what status shows of the watcher.
type watcherStatus struct {
	Running bool `json:"running"`
	*watch.State
	Problem string `json:"problem,omitempty"`
}

func readWatcherStatus(stateDir string) *watcherStatus {
	st, err := watch.ReadState(stateDir)
	ws := &watcherStatus{Running: watch.Running(stateDir), State: st}
	if err != nil {
		ws.Problem = err.Error()
	}
	return ws
}

func printWatcher(w io.Writer, ws *watcherStatus, now time.Time) {
	st := ws.State
	switch {
	case ws.Running && st != nil:
		fmt.Fprintf(w, "watcher: running since %s (pid %d, %s ago), last pass %s\n",
			st.StartedAt.UTC().Format("2006-01-02 15:04:05 MST"), st.PID, humanDuration(now.Sub(st.StartedAt)), st.UpdatedAt.UTC().Format("2006-01-02 15:04:05 MST"))
	case ws.Running:
		fmt.Fprintln(w, "watcher: running")
	case st != nil:
		fmt.Fprintf(w, "watcher: not running (last one stopped %s)\n", st.UpdatedAt.UTC().Format("2006-01-02 15:04:05 MST"))
	default:
		fmt.Fprintln(w, "watcher: not running (start one with mc-broker watch, or mc-broker launch install)")
	}
	if ws.Problem != "" {
		fmt.Fprintf(w, "  %s\n", ws.Problem)
	}
	if st == nil || !ws.Running {
		return
	}
	if st.LastAdoption != nil {
		a := st.LastAdoption
		fmt.Fprintf(w, "  took %d newer login(s) back from copies; last: %s from %s at %s\n", st.Adoptions, a.Fingerprint, a.From, a.At.UTC().Format("2006-01-02 15:04:05 MST"))
	}
	printLockMirror(w, ws)
	for _, s := range st.Sources {
		if s.WriteBackSince != nil {
			fmt.Fprintf(w, "  WRITE-BACK FAILING since %s: %s: %s (every copy has the newer login; retried with backoff)\n",
				s.WriteBackSince.UTC().Format("2006-01-02 15:04:05 MST"), s.Name, s.WriteBack)
		}
		for _, c := range s.Copies {
			if c.FailingSince != nil {
				fmt.Fprintf(w, "  failing since %s: %s: %s\n", c.FailingSince.UTC().Format("2006-01-02 15:04:05 MST"), c.Location, c.Problem)
			}
			if c.Refused != "" {
				at := ""
				if c.RefusedAt != nil {
					at = " (last at " + c.RefusedAt.UTC().Format("2006-01-02 15:04:05 MST") + ")"
				}
				fmt.Fprintf(w, "  not taken back from %s: %s%s\n", c.Location, c.Refused, at)
			}
		}
	}
}
