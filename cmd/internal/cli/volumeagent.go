package cli

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/mc-broker/mc-broker/sinks/volume/resident"
)

// NewCmdVolumeAgent builds the hidden `mc-broker vol-agent`: what runs
// inside the engine (named no longer than the longest listed command:
// cobra pads --help's list to every command's name, hidden ones too), in the resident agent container a watcher starts (and,
// with --once, what a sync execs in it). People never run it.
func NewCmdVolumeAgent(f *Factory) *cobra.Command {
	var (
		files   []string
		once    bool
		lockDir string
	)
	cmd := &cobra.Command{
		Use:    "vol-agent --file PATH[;flock=A,B][;dirlock=D] [--file ...] [--once]",
		Short:  "Serve volume copies from inside the engine (started by watch; not for people)",
		Hidden: true,
		Long: `Runs inside a container that mc-broker watch creates from the empty helper
image, with mc-broker's volumes mounted, no network, a read-only root, no
capabilities, as the copies' user. It speaks JSON lines on stdin and stdout:
it reads the login files named by --file, writes them by temp file and
rename under the CLI's own locks, but only when they still hold what the
host decided on, and (without --once) reports changes it sees with inotify.
It decides nothing: the host judges everything it reports.

--once answers requests until stdin ends and reports no changes (what a
sync runs with docker exec in the running agent's container).

See docs/VOLUMES.md ("The resident agent").`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			specs := make([]resident.FileSpec, 0, len(files))
			for _, v := range files {
				s, err := resident.ParseFileSpec(v)
				if err != nil {
					return usageError("%v", err)
				}
				specs = append(specs, s)
			}
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			return resident.Serve(ctx, f.Stdin, f.Stdout, specs, resident.ServeOptions{Watch: !once, LockDir: lockDir})
		},
	}
	fl := cmd.Flags()
	fl.StringArrayVar(&files, "file", nil, "a login file: `PATH[;flock=A,B][;dirlock=D]` (repeat for more)")
	fl.BoolVar(&once, "once", false, "answer requests until stdin ends; report no changes")
	fl.StringVar(&lockDir, "lock-dir", resident.DefaultLockDir, "where the agent keeps its own lock files")
	return cmd
}
