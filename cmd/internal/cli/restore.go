package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/mc-broker/mc-broker/broker"
	"github.com/mc-broker/mc-broker/broker/watch"
)

// RestoreOptions are the inputs of `mc-broker restore`.
type RestoreOptions struct {
	f          *Factory
	ConfigFile string
	Dir        string
	Source     string
	List       bool
	Backup     string
	JSON       bool
}

// NewCmdRestore builds `mc-broker restore`; runF replaces restoreRun in
// tests.
func NewCmdRestore(f *Factory, runF func(*RestoreOptions) error) *cobra.Command {
	opts := &RestoreOptions{f: f}
	cmd := &cobra.Command{
		Use:   "restore SOURCE",
		Short: "Put a kept login back into the host's store and every copy",
		Long: `Before mc-broker writes a login taken back from a copy into the host's
store, it keeps the host's previous login (0600) in
$XDG_STATE_HOME/mc-broker/backups/SOURCE/: on the "host" shelf when it
came from the host itself (your logins, the host CLI's refreshes), on the
"taken" shelf when mc-broker had taken it back from a copy. Each shelf
keeps 20, so no stream of take-backs can push your own logins out.

  mc-broker restore claude --list       what is kept (fingerprints, expiry)
  mc-broker restore claude              put back the newest of the host shelf
  mc-broker restore claude --backup PATH   put back that one

The login being replaced is kept first. Then every copy is given the
restored login, even those holding a newer one (that is the point of a
restore). Stop a running watcher first: it would take the newer login back
from a copy it had given it to.

A restored login may be refreshed by the CLI already (its refresh token
spent); then only logging in again helps (` + "`claude`, `/login`" + `).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Source = args[0]
			if runF != nil {
				return runF(opts)
			}
			return restoreRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVar(&opts.ConfigFile, "config", "", configFlagUsage)
	cmd.Flags().StringVar(&opts.Dir, "dir", "", "give the restored login to the pre-run hook layout at `PATH` (as sync --dir) instead of the configured copies")
	cmd.Flags().BoolVar(&opts.List, "list", false, "list the kept logins, write nothing")
	cmd.Flags().StringVar(&opts.Backup, "backup", "", "the kept login to put back (a path --list shows); default: the newest of the host shelf")
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print as JSON (fingerprints and expiry times, never tokens)")
	return cmd
}

// keptLogin is one backup as --list shows it.
type keptLogin struct {
	broker.Backup
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	Problem   string     `json:"problem,omitempty"`
}

func restoreRun(ctx context.Context, opts *RestoreOptions) error {
	if ctx == nil {
		ctx = context.Background()
	}
	sel := &selection{ConfigFile: opts.ConfigFile, Dir: opts.Dir, Only: []string{opts.Source}, writes: !opts.List}
	b, _, env, err := sel.load(ctx, opts.f)
	if err != nil {
		return reportError(opts.f, opts.JSON, err)
	}
	var src broker.Source
	for _, s := range b.Sources {
		if s.Name() == opts.Source {
			src = s
		}
	}
	backups := b.Backups()
	list, err := backups.List(opts.Source)
	if err != nil {
		return &ExitError{Code: broker.ExitCopyFailed, Err: fmt.Errorf("cannot list the kept logins: %w", err)}
	}
	kept := make([]keptLogin, len(list))
	for i, bk := range list {
		kept[i] = keptLogin{Backup: bk}
		data, err := backups.Read(opts.Source, bk)
		if err == nil {
			if in, ierr := src.Kind().Inspect(data); ierr == nil {
				if !in.Expiry.IsZero() {
					exp := in.Expiry
					kept[i].ExpiresAt = &exp
				}
			} else {
				kept[i].Problem = ierr.Error()
			}
		} else {
			kept[i].Problem = err.Error()
		}
	}
	if opts.List {
		return printKept(opts, kept)
	}

	var pick *keptLogin
	for i := len(kept) - 1; i >= 0; i-- {
		k := &kept[i]
		switch {
		case opts.Backup != "":
			if abs, _ := filepath.Abs(opts.Backup); k.Path == abs || k.Path == opts.Backup {
				pick = k
			}
		case k.Shelf == broker.ShelfHost && k.Problem == "":
			pick = k
		}
		if pick != nil {
			break
		}
	}
	if pick == nil {
		what := "no login of the host shelf is kept for " + opts.Source
		if opts.Backup != "" {
			what = opts.Backup + " is not a kept login of " + opts.Source
		}
		return &ExitError{Code: broker.ExitUsage, Err: errors.New(what), Hint: "mc-broker restore " + opts.Source + " --list shows what is kept"}
	}
	if pick.Problem != "" {
		return &ExitError{Code: broker.ExitCredential, Err: fmt.Errorf("%s holds no valid login: %s", pick.Path, pick.Problem)}
	}
	if watch.Running(env.StateDir()) {
		return &ExitError{Code: broker.ExitUsage, Err: errors.New("a watcher is running: it would take the newer login back from a copy"),
			Hint: "stop it first (mc-broker launch status shows a background one), restore, then start it again"}
	}
	data, err := backups.Read(opts.Source, pick.Backup)
	if err != nil {
		return &ExitError{Code: broker.ExitCopyFailed, Err: err}
	}
	report, err := b.Restore(ctx, src, data)
	if err != nil {
		return &ExitError{Code: broker.ExitCopyFailed, Err: fmt.Errorf("cannot write the kept login into %s: %w", src.Location(), err)}
	}
	if !opts.JSON {
		fmt.Fprintf(opts.f.Stdout, "restored %s (%s, kept %s) into %s\n", pick.Fingerprint, pick.Shelf, pick.At.UTC().Format("2006-01-02 15:04:05 MST"), src.Location())
	}
	if err := printReport(opts.f, report, opts.JSON, false); err != nil {
		return err
	}
	if code := report.ExitCode(); code != broker.ExitOK {
		return &ExitError{Code: code}
	}
	return nil
}

func printKept(opts *RestoreOptions, kept []keptLogin) error {
	if opts.JSON {
		enc := json.NewEncoder(opts.f.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Source string      `json:"source"`
			Kept   []keptLogin `json:"kept"`
		}{opts.Source, kept})
	}
	if len(kept) == 0 {
		fmt.Fprintf(opts.f.Stdout, "no logins of %s are kept yet (one is kept before each take-back)\n", opts.Source)
		return nil
	}
	for _, k := range kept {
		line := fmt.Sprintf("%-5s %s %s", k.Shelf, k.At.UTC().Format("2006-01-02 15:04:05 MST"), k.Fingerprint)
		if k.ExpiresAt != nil {
			line += ", expires " + k.ExpiresAt.UTC().Format("2006-01-02 15:04 MST")
		}
		if k.Problem != "" {
			line += ", " + k.Problem
		}
		fmt.Fprintln(opts.f.Stdout, line+"\n      "+k.Path)
	}
	return nil
}
