package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/mc-broker/mc-broker/broker"
	"github.com/mc-broker/mc-broker/broker/config"
	"github.com/mc-broker/mc-broker/broker/watch"
	"github.com/mc-broker/mc-broker/broker/watch/lockmirror"
	"github.com/mc-broker/mc-broker/sinks/volume/engine"
)

// WatchOptions are the inputs of `mc-broker watch`.
type WatchOptions struct {
	f            *Factory
	ConfigFile   string
	Dir          string
	Quiet        time.Duration
	PollInterval time.Duration
	LogLevel     string
	LogFormat    string
	// MirrorLock and LockMirrorBound: Claude refresh-lock mirroring.
	MirrorLock      bool
	LockMirrorBound time.Duration
	// OnProblem is a command run (sh -c) with each event that needs the
	// user as JSON on stdin; Notify shows them with the desktop's
	// notifier. The config's on_problem and notify apply when not given.
	OnProblem string
	Notify    bool
	// Ready is closed once the first sync is done (tests).
	Ready chan<- struct{}
}

// NewCmdWatch builds `mc-broker watch`; runF replaces the run in tests.
func NewCmdWatch(f *Factory, runF func(*WatchOptions) error) *cobra.Command {
	opts := &WatchOptions{f: f}
	cmd := &cobra.Command{
		Use:   "watch",
		Short: "Keep every copy and the host's login in step until stopped",
		Long: `Sync once, then keep syncing on every change until SIGINT or SIGTERM, so
that the host and every copy act as one store:

- a login refreshed on the host reaches every copy within milliseconds;
- a newer login written into a copy (a container's CLI refreshed it) is
  taken back into the host's store, after keeping the host's previous
  login as a backup (0600, $XDG_STATE_HOME/mc-broker/backups/), and reaches
  every other copy at once, whether or not the host's store can be written;
- only a login of the same account that is plausible, small, and from a
  copy that has not given too many lately is taken back (docs/SECURITY.md):
  a container can write anything into its copy;
- an older, blanked or broken login in a copy is never taken back; the copy
  is repaired.

Every login and every store has its own worker: a hung Docker engine, a
slow Keychain or a container holding a lock in its copy delays only that
store.

Files are watched with inotify/kqueue, not polled. Stores that cannot be
watched as files on this host (Docker volumes, Keychain items) are checked
every --poll-interval. A copy that cannot be written (read-only directory,
engine down) is retried with backoff; the others go on.

Signals: SIGHUP reloads the config (an invalid one is reported and the
running one kept); SIGINT or SIGTERM finish in-flight writes and exit 0.

Claude Code's refresh lock (.oauth_refresh.lock) taken in any Claude
directory is mirrored into every other directory sharing the login until
the new login has reached them all, so that no two refresh at once
(docs/LOCKMIRROR.md; --mirror-refresh-lock=false turns it off).

When a login needs you, watch says so once (a log line "needs you: ..."),
runs --on-problem CMD (or the config's on_problem:) with the event as JSON
on stdin, and with --notify (notify: true) shows it with notify-send or
osascript. Events: refresh-token-ending (3 days ahead), refresh-token-ended,
logged-out, login-broken, source-unreadable, copy-refused, copy-failing,
write-back-failing. The JSON holds names, locations, fingerprints and
times, never a token: {"event", "source", "kind", "at", "message", "fix",
"location", "copy", "fingerprint", "expires_at", "refresh_expires_at"}.
The command also gets MC_BROKER_EVENT and MC_BROKER_SOURCE; it runs one at
a time, at most 30 s, and never stalls the watcher.

Logs go to stderr: text on a terminal, JSON lines otherwise (a service
manager's journal). They never contain a token. 'mc-broker status' shows
whether a watcher runs and its last results.`,
		Example: `  mc-broker watch
  mc-broker watch --config ~/.config/mc-broker/config.yaml --log-level debug`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if runF != nil {
				return runF(opts)
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			reload := make(chan os.Signal, 1)
			signal.Notify(reload, syscall.SIGHUP)
			defer signal.Stop(reload)
			return watchRun(ctx, opts, hupChannel(ctx, reload))
		},
	}
	addWatchFlags(cmd, &opts.ConfigFile, &opts.Dir, &opts.Quiet, &opts.PollInterval, &opts.LogLevel, &opts.LogFormat)
	cmd.Flags().BoolVar(&opts.MirrorLock, "mirror-refresh-lock", true, "mirror Claude Code's refresh lock from the directory that took it into every other directory sharing the login (docs/LOCKMIRROR.md)")
	cmd.Flags().DurationVar(&opts.LockMirrorBound, "lock-mirror-bound", lockmirror.DefaultBound, "longest a mirrored refresh lock is held, even if the original is not released (keep it under 7s, when a waiting Claude Code gives up)")
	cmd.Flags().StringVar(&opts.OnProblem, "on-problem", "", "run `CMD` (sh -c) when a login needs you, with the event as JSON on stdin (default: the config's on_problem)")
	cmd.Flags().BoolVar(&opts.Notify, "notify", false, "also show such events with the desktop's notifier (notify-send, osascript)")
	return cmd
}

func addWatchFlags(cmd *cobra.Command, configFile, dir *string, quiet, poll *time.Duration, level, format *string) {
	cmd.Flags().StringVar(configFile, "config", "", "config `FILE` (default $MC_BROKER_CONFIG, else $XDG_CONFIG_HOME/mc-broker/config.yaml if it exists, else built-in defaults)")
	cmd.Flags().StringVar(dir, "dir", "", "keep the pre-run hook layout `PATH`/claude/.credentials.json, PATH/codex/auth.json, PATH/gemini/oauth_creds.json (as sync --dir) instead of the configured copies; runs beside a background watcher of those")
	cmd.Flags().DurationVar(quiet, "quiet", watch.DefaultQuiet, "how soon a file that looks half-written is read again (Gemini CLI writes in place; whole files are read at once)")
	cmd.Flags().DurationVar(poll, "poll-interval", watch.DefaultPollInterval, "how often Docker volume copies and Keychain items are checked for changes")
	cmd.Flags().StringVar(level, "log-level", "info", "debug, info, warn or error")
	cmd.Flags().StringVar(format, "log-format", "auto", "text, json, or auto (text on a terminal, else json)")
}

// hupChannel turns SIGHUP into reload requests until ctx ends.
func hupChannel(ctx context.Context, sig <-chan os.Signal) <-chan struct{} {
	out := make(chan struct{}, 1)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-sig:
				select {
				case out <- struct{}{}:
				default: // a reload is already pending
				}
			}
		}
	}()
	return out
}

// newLogger builds the slog logger for watch and run.
func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, usageError("--log-level: %q is not one of debug, info, warn, error", level)
	}
	o := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "text":
		return slog.New(slog.NewTextHandler(w, o)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, o)), nil
	case "auto", "":
		if isTerminal(w) {
			return slog.New(slog.NewTextHandler(w, o)), nil
		}
		return slog.New(slog.NewJSONHandler(w, o)), nil
	}
	return nil, usageError("--log-format: %q is not one of text, json, auto", format)
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// watchRun runs the watcher until ctx ends; reload asks for a config reload.
func watchRun(ctx context.Context, opts *WatchOptions, reload <-chan struct{}) error {
	log, err := newLogger(opts.f.Stderr, opts.LogLevel, opts.LogFormat)
	if err != nil {
		return err
	}
	problems := newProblemRunner(log, opts.OnProblem, opts.Notify)
	wo, err := watchOptions(opts.f, opts.ConfigFile, opts.Dir, log, problems)
	if err != nil {
		return err
	}
	go problems.run(ctx)
	wo.Quiet, wo.PollInterval, wo.Reload, wo.Ready = opts.Quiet, opts.PollInterval, reload, opts.Ready
	if opts.LockMirrorBound <= 0 {
		return usageError("--lock-mirror-bound must be more than 0 (turn mirroring off with --mirror-refresh-lock=false)")
	}
	if opts.MirrorLock && opts.LockMirrorBound > 7*time.Second {
		// Allowed (tests of Claude Code's own waiting use it), but a dead
		// holder's lock then turns into failed requests, not one retry.
		log.Warn("--lock-mirror-bound is longer than a waiting Claude Code waits (about 7.5s): if a holder dies, the others report errors until the bound", "bound", opts.LockMirrorBound)
	}
	wo.NoLockMirror, wo.LockMirrorBound = !opts.MirrorLock, opts.LockMirrorBound
	return runWatcher(ctx, wo)
}

// watchOptions wires a watcher to the config selection: each (re)load
// resolves and reads the config again, and gives problems the config's
// on_problem and notify.
func watchOptions(f *Factory, configFile, dir string, log *slog.Logger, problems *problemRunner) (watch.Options, error) {
	env, err := f.Env()
	if err != nil {
		return watch.Options{}, &ExitError{Code: broker.ExitUsage, Err: err}
	}
	sel := &selection{ConfigFile: configFile, Dir: dir, writes: true}
	stateDir := env.StateDir()
	if dir != "" {
		abs, err := filepath.Abs(dir)
		if err != nil {
			return watch.Options{}, usageError("--dir: %v", err)
		}
		stateDir = layoutStateDir(stateDir, abs)
	}
	name := configFile
	if name == "" {
		name = f.Getenv("MC_BROKER_CONFIG")
	}
	if name == "" {
		// What selection.config reads when it exists: the log and status
		// must not say "built-in defaults" for it.
		if _, err := os.Stat(env.ConfigFile()); err == nil {
			name = env.ConfigFile()
		}
	}
	// With the built-in defaults, the volume copies depend on whether an
	// engine answered at load time. A service started at login, before
	// Docker Desktop, must not go without them until the next SIGHUP.
	var noEngine bool
	return watch.Options{
		Load: func() (*broker.Broker, error) {
			b, cfg, _, err := sel.load(context.Background(), f)
			if err == nil {
				noEngine = cfg.File == "" && !hasVolumeCopies(cfg)
				problems.configure(cfg.OnProblem, cfg.Notify)
			}
			return b, err
		},
		Recheck: func() bool {
			if !noEngine {
				return false
			}
			ctx, cancel := context.WithTimeout(context.Background(), engine.PingTimeout)
			defer cancel()
			e, err := engine.Connect(ctx, env.Getenv, env.Home)
			if err != nil {
				return false
			}
			defer e.Close()
			if e.Ping(ctx) != nil {
				return false
			}
			log.Info("a Docker engine answers now: adding the default volume copies", "engine", e.Endpoint.Host)
			return true
		},
		StateDir:   stateDir,
		ConfigFile: name,
		Log:        log,
		Now:        f.Now,
		OnEvent:    problems.send,
	}, nil
}

func hasVolumeCopies(cfg *config.Config) bool {
	for _, sk := range cfg.Sinks {
		if sk.Volume != "" {
			return true
		}
	}
	return false
}

func runWatcher(ctx context.Context, wo watch.Options) error {
	err := watch.Run(ctx, wo)
	var running *watch.AlreadyRunningError
	switch {
	case errors.As(err, &running):
		return &ExitError{Code: broker.ExitUsage, Err: err}
	case err != nil:
		var exit *ExitError
		if errors.As(err, &exit) {
			return err
		}
		return classifyLoad(err)
	}
	return nil
}

// classifyLoad maps a failed start: config problems are usage errors (2),
// anything else a failure to run (1).
func classifyLoad(err error) error {
	exit := classify(err)
	if exit.Hint == "see mc-broker --help" {
		return &ExitError{Code: broker.ExitCopyFailed, Err: fmt.Errorf("watch stopped: %w", err)}
	}
	return exit
}
