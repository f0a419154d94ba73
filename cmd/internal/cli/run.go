package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/mc-broker/mc-broker/broker"
	"github.com/mc-broker/mc-broker/broker/watch"
)

// RunOptions are the inputs of `mc-broker run`.
type RunOptions struct {
	f            *Factory
	ConfigFile   string
	Dir          string
	MinTTL       time.Duration
	Quiet        time.Duration
	PollInterval time.Duration
	LogLevel     string
	LogFormat    string
	Command      []string
}

// NewCmdRun builds `mc-broker run`; runF replaces the run in tests.
func NewCmdRun(f *Factory, runF func(*RunOptions) error) *cobra.Command {
	opts := &RunOptions{f: f}
	cmd := &cobra.Command{
		Use:   "run [flags] -- COMMAND [ARGS...]",
		Short: "Sync, then run a command while keeping every copy current",
		Long: `Sync once, then run COMMAND while watching (as 'mc-broker watch' does), and
exit with COMMAND's exit status. Typical use, in a compose project whose
services mount ./.auth/<cli> as each CLI's config directory:

  mc-broker run --dir .auth -- docker compose up

With --dir PATH, run writes and keeps the pre-run layout PATH/claude,
PATH/codex, PATH/gemini (as 'sync --dir' does, with a .gitignore at PATH)
instead of the configured copies: a refresh on the host reaches PATH, and a
container's refresh written there reaches the host and the other copies.
Without --dir it keeps the configured copies.

Before COMMAND starts, run stops with exit 3 if a login is broken or expires
sooner than --min-ttl, so that containers never start with a login about to
lapse. A copy that cannot be written is reported and retried while COMMAND
runs.

If a background watcher ('mc-broker watch', 'mc-broker launch install') is
already running over the same copies, run leaves the watching to it; a
--dir layout gets a watcher of its own beside it.

Signals: SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 sent to mc-broker are
passed on to COMMAND; so is SIGINT, except when run in a terminal, where
Ctrl-C already reaches COMMAND directly (passing it on again would make
tools like docker compose force-stop). A COMMAND killed by a signal gives
exit status 128 + the signal number. A SIGINT, SIGTERM, SIGHUP or SIGQUIT
that arrives during the first sync stops run before COMMAND starts (exit
128 + the signal number).

The watcher logs only warnings and errors by default (--log-level) to
stderr, so COMMAND's output stays readable.`,
		Example: `  mc-broker run --dir .auth -- docker compose up
  mc-broker run -- docker compose up
  mc-broker run --min-ttl 2h -- docker compose run --rm agent claude`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageError("run needs a command: mc-broker run -- COMMAND [ARGS...]")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Command = args
			if runF != nil {
				return runF(opts)
			}
			return runRun(context.Background(), opts)
		},
	}
	cmd.Flags().SetInterspersed(false)
	addWatchFlags(cmd, &opts.ConfigFile, &opts.Dir, &opts.Quiet, &opts.PollInterval, &opts.LogLevel, &opts.LogFormat)
	cmd.Flags().Lookup("log-level").DefValue = "warn"
	opts.LogLevel = "warn"
	cmd.Flags().DurationVar(&opts.MinTTL, "min-ttl", 0, "exit 3 before running COMMAND if a login expires sooner than this (e.g. 30m, 2h)")
	return cmd
}

// forwarded are the signals run passes on to its command.
var forwarded = []os.Signal{os.Interrupt, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2}

func runRun(ctx context.Context, opts *RunOptions) error {
	f := opts.f
	// Catch signals from the start: one arriving during the first sync
	// must not kill mc-broker and leave the command unstarted but half-set.
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, forwarded...)
	defer signal.Stop(sigs)

	log, err := newLogger(f.Stderr, opts.LogLevel, opts.LogFormat)
	if err != nil {
		return err
	}
	sel := &selection{ConfigFile: opts.ConfigFile, Dir: opts.Dir, writes: true}
	b, _, _, err := sel.load(ctx, f)
	if err != nil {
		return err
	}
	report := b.Sync(ctx, broker.Options{MinTTL: opts.MinTTL})
	if code := report.ExitCode(); code != broker.ExitOK {
		// Say what is wrong where the user looks: stderr, in the sync
		// report's words.
		toStderr := *f
		toStderr.Stdout = f.Stderr
		if err := printReport(&toStderr, report, false, false); err != nil {
			return err
		}
		if code == broker.ExitCredential || code == broker.ExitUsage {
			return &ExitError{Code: code, Err: errors.New("not running the command: fix the login above first")}
		}
	}

	if err := stoppedBeforeStart(sigs, opts.Command[0]); err != nil {
		return err
	}

	// The first sync said what there was to say about the config (the
	// "no Docker engine" note): the watcher's own load stays quiet.
	quiet := *f
	quiet.Stderr = io.Discard
	problems := newProblemRunner(log, "", false)
	wo, err := watchOptions(&quiet, opts.ConfigFile, opts.Dir, log, problems)
	if err != nil {
		return err
	}
	wo.Quiet, wo.PollInterval = opts.Quiet, opts.PollInterval
	watchCtx, stopWatch := context.WithCancel(ctx)
	go problems.run(watchCtx)
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		// Said when it happens, not when COMMAND ends: the user must know
		// now that the copies are no longer kept current.
		err := watch.Run(watchCtx, wo)
		var running *watch.AlreadyRunningError
		if err != nil && !errors.As(err, &running) {
			log.Warn("the watcher stopped early; copies are not kept current while the command runs", "error", err)
		}
	}()

	code, err := runCommand(f, opts.Command, sigs)
	stopWatch()
	<-watchDone
	if err != nil {
		return err
	}
	if code != 0 {
		return &ExitError{Code: code}
	}
	return nil
}

// stoppedBeforeStart returns an *ExitError (128 + the signal) when a
// signal that asks to stop (Ctrl-C, SIGTERM, SIGHUP, SIGQUIT) came while
// run was syncing: the user wants out, and in a terminal the command would
// otherwise start and never see that Ctrl-C. Other signals stay queued for
// the command.
func stoppedBeforeStart(sigs chan os.Signal, command string) error {
	var keep []os.Signal
	defer func() {
		for _, s := range keep {
			select {
			case sigs <- s:
			default:
			}
		}
	}()
	for {
		select {
		case s := <-sigs:
			switch s {
			case os.Interrupt, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT:
				code := 1
				if n, ok := s.(syscall.Signal); ok {
					code = 128 + int(n)
				}
				return &ExitError{Code: code, Err: fmt.Errorf("%v while syncing: %s was not started", s, command)}
			}
			keep = append(keep, s)
		default:
			return nil
		}
	}
}

// runCommand runs argv with the process's standard streams, passes sigs on,
// and returns its exit status.
func runCommand(f *Factory, argv []string, sigs <-chan os.Signal) (int, error) {
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return 0, &ExitError{Code: 127, Err: fmt.Errorf("cannot run %s: %v", argv[0], errors.Unwrap(err)), Hint: "check the command name and PATH"}
	}
	cmd := exec.Command(path, argv[1:]...)
	cmd.Args[0] = argv[0]
	cmd.Stdin, cmd.Stdout, cmd.Stderr = f.Stdin, f.Stdout, f.Stderr
	interactive := isTerminal(asWriter(f.Stdin))
	if !interactive {
		// Its own process group: signals reach it once, from us.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	}
	if err := cmd.Start(); err != nil {
		return 0, &ExitError{Code: 126, Err: fmt.Errorf("cannot run %s: %v", argv[0], err)}
	}
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case s := <-sigs:
				if interactive && (s == os.Interrupt || s == syscall.SIGQUIT) {
					continue // the terminal sent it to the command already
				}
				_ = cmd.Process.Signal(s)
			}
		}
	}()
	err = cmd.Wait()
	close(done)
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal()), nil
		}
		return ee.ExitCode(), nil
	}
	if err != nil {
		return 0, &ExitError{Code: broker.ExitCopyFailed, Err: fmt.Errorf("waiting for %s: %v", argv[0], err)}
	}
	return 0, nil
}

func asWriter(r io.Reader) io.Writer {
	if f, ok := r.(*os.File); ok {
		return f
	}
	return nil
}
