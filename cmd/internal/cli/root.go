// Package cli is mc-broker's command line: one file per command, each with
// an Options struct, NewCmdX(f, runF) and xRun(opts), so that every command's
// logic runs in tests without a terminal (the gh layout).
package cli

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/mc-broker/mc-broker/broker/config"
)

// Factory carries what commands take from the outside world.
type Factory struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Getenv         func(string) string
	Env            func() (config.Env, error)
	Now            func() time.Time
}

// OSFactory wires the real process.
func OSFactory() *Factory {
	return &Factory{
		Stdin:  os.Stdin,
		Stdout: os.Stdout,
		Stderr: os.Stderr,
		Getenv: os.Getenv,
		Env:    config.OSEnv,
		Now:    time.Now,
	}
}

// Main runs the command line and returns the exit code. The first SIGINT
// or SIGTERM cancels the run's context, so that a copy being written
// cleans up after itself (a volume copy removes its helper container); a
// second one ends the process at once.
func Main(args []string, f *Factory) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop()
	}()
	root := NewCmdRoot(f)
	root.SetArgs(args)
	return exitCode(root.ExecuteContext(ctx), f.Stderr)
}

// NewCmdRoot builds the command tree.
func NewCmdRoot(f *Factory) *cobra.Command {
	root := &cobra.Command{
		Use:   "mc-broker",
		Short: "Keep container copies of your Claude Code, Codex and Gemini CLI logins in step",
		Long: `mc-broker reads the logins that Claude Code, Codex and Gemini CLI keep on this
host (files, or the macOS Keychain) and writes container-ready copies of
them: directories that compose bind-mounts as each CLI's config directory,
and Docker named volumes. A copy is never overwritten with an older login,
and a broken login (blanked, truncated) is never copied. 'watch' (or 'run',
or the background service from 'launch install') keeps the host and every
copy acting as one store, so that single-use refresh tokens never split.

With no config file, mc-broker finds the CLIs logged in on this host and keeps
one copy per CLI under $XDG_DATA_HOME/mc-broker/<cli>/ (default
~/.local/share/mc-broker/<cli>/), plus a named volume mc-<cli>-auth when a
Docker engine answers. Start with 'mc-broker init' for a config of your own,
and 'mc-broker doctor' to check the set-up.

Nothing mc-broker prints contains a token: logins are shown by fingerprint
(sha256: and 12 hex digits) and expiry time.

Exit codes: 0 all good; 1 a copy or source could not be read or written;
2 bad usage or config; 3 a login is broken, missing when asked for with
--only, or expires sooner than --min-ttl; 4 compose check found a problem.
'run' exits with its command's status; 'doctor' and 'launch status' exit 1
when something needs you.`,
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.SetOut(f.Stdout)
	root.SetErr(f.Stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return usageError("%v", err)
	})
	root.AddCommand(NewCmdSync(f, nil), NewCmdStatus(f, nil), NewCmdVersion(f, nil))
	root.AddCommand(NewCmdWatch(f, nil), NewCmdRun(f, nil), NewCmdDoctor(f, nil), NewCmdInit(f, nil))
	root.AddCommand(NewCmdLaunch(f, nil), NewCmdRestore(f, nil))
	root.AddCommand(NewCmdLogin(f, nil), NewCmdRevoke(f, nil))
	addCompletionHelp(root)
	addVersionFlag(root)
	root.AddCommand(NewCmdCompose(f, nil))
	root.AddCommand(NewCmdKube(f), NewCmdAgent(f, nil), NewCmdVolumeAgent(f))
	return root
}
