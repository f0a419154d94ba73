package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/mc-broker/mc-broker/broker"
	"github.com/mc-broker/mc-broker/broker/atomicfile"
	"github.com/mc-broker/mc-broker/broker/config"
	"github.com/mc-broker/mc-broker/broker/kinds"
	"github.com/mc-broker/mc-broker/cmd/wire"
	"github.com/mc-broker/mc-broker/sinks/volume/engine"
	"github.com/mc-broker/mc-broker/sources/keychain"
)

// InitOptions are the inputs of `mc-broker init`.
type InitOptions struct {
	f      *Factory
	Output string
	Force  bool
	// engine probes for a Docker engine; nil means none (tests, and until
	// one is wired).
	engine func(context.Context) (endpoint string, err error)
}

// NewCmdInit builds `mc-broker init`; runF replaces the run in tests.
func NewCmdInit(f *Factory, runF func(*InitOptions) error) *cobra.Command {
	opts := &InitOptions{f: f}
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Write a commented starter config for the CLIs logged in here",
		Long: `Look at which CLIs are logged in on this host and write a commented
starter config: the sources found, one copy directory per CLI, a Docker
named volume per CLI when a Docker engine answers, and the compose snippet
that mounts them.

The config goes to $XDG_CONFIG_HOME/mc-broker/config.yaml
(~/.config/mc-broker/config.yaml) unless --output names another file. An
existing config is never overwritten without --force.

Next steps it prints: mc-broker sync, mc-broker launch install (keep the
copies current in the background), mc-broker doctor.`,
		Example: `  mc-broker init
  mc-broker init --output ./mc-broker.yaml
  mc-broker init && mc-broker launch install`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if runF != nil {
				return runF(opts)
			}
			if opts.engine == nil {
				opts.engine = defaultEngineProbe(f)
			}
			return initRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVarP(&opts.Output, "output", "o", "", "write the config to `FILE` instead of the default config file")
	cmd.Flags().BoolVar(&opts.Force, "force", false, "replace an existing config (the old one is kept as FILE.bak)")
	return cmd
}

func initRun(ctx context.Context, opts *InitOptions) error {
	if ctx == nil {
		ctx = context.Background()
	}
	f := opts.f
	env, err := f.Env()
	if err != nil {
		return &ExitError{Code: broker.ExitUsage, Err: err}
	}
	path := opts.Output
	if path == "" {
		path = env.ConfigFile()
	}
	path, err = filepath.Abs(path)
	if err != nil {
		return usageError("--output: %v", err)
	}
	old, err := os.ReadFile(path)
	switch {
	case err == nil && !opts.Force:
		return &ExitError{Code: broker.ExitUsage, Err: fmt.Errorf("%s already exists; not overwriting it", path), Hint: "edit it, or run mc-broker init --force to replace it (the old one is kept as .bak)"}
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return &ExitError{Code: broker.ExitCopyFailed, Err: fmt.Errorf("cannot read %s: %w", path, errors.Unwrap(err))}
	}

	defaults := config.Default(env)
	for _, a := range findAccounts(env, defaults) {
		defaults.Sources = append(defaults.Sources, a)
		defaults.Sinks = append(defaults.Sinks, config.Sink{Source: a.Name, Dir: filepath.Join(env.DataDir(), a.Name), Companions: true})
	}
	b, err := wire.Build(defaults, env, nil)
	if err != nil {
		return err
	}
	b.Now = f.Now
	report := b.Status(ctx, broker.Options{})
	endpoint, engineErr := "", errors.New("not probed")
	if opts.engine != nil {
		endpoint, engineErr = opts.engine(ctx)
	}
	text := starterConfig(env, defaults, report, endpoint, engineErr)
	// The config must be one mc-broker reads: check before writing.
	if _, err := config.Parse(path, []byte(text), env); err != nil {
		return fmt.Errorf("internal error: the starter config does not parse: %w", err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return &ExitError{Code: broker.ExitCopyFailed, Err: fmt.Errorf("cannot create %s: %w", dir, errors.Unwrap(err))}
	}
	if old != nil {
		if err := atomicfile.Write(dir, filepath.Base(path)+".bak", old, atomicfile.Options{Mode: 0o600}); err != nil {
			return &ExitError{Code: broker.ExitCopyFailed, Err: err}
		}
	}
	if err := atomicfile.Write(dir, filepath.Base(path), []byte(text), atomicfile.Options{Mode: 0o644}); err != nil {
		return &ExitError{Code: broker.ExitCopyFailed, Err: err}
	}
	w := f.Stdout
	fmt.Fprintf(w, "wrote %s\n", path)
	for _, s := range report.Sources {
		state := "not logged in"
		if s.State == broker.SourceValid {
			state = "logged in (" + s.Fingerprint + ")"
		} else if s.State != broker.SourceNotLoggedIn {
			state = string(s.State) + ": " + s.Problem
		}
		fmt.Fprintf(w, "  %-*s %s\n", nameWidth(report), s.Name, state)
	}
	fmt.Fprintln(w, "next:")
	if line := composeLine(defaults); line != "" {
		fmt.Fprintf(w, "  %s\n      one service per account: put in your services' names\n", line)
	}
	fmt.Fprintln(w, "  mc-broker sync             write the copies now")
	fmt.Fprintln(w, "  mc-broker launch install   keep them current in the background")
	fmt.Fprintln(w, "  mc-broker doctor           check the whole set-up")
	return nil
}

// starterConfig renders the commented config. It holds paths, fingerprints
// and expiry times only.
func starterConfig(env config.Env, defaults *config.Config, report *broker.Report, endpoint string, engineErr error) string {
	var sb strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&sb, format+"\n", args...) }
	home := func(path string) string {
		if rel, err := filepath.Rel(env.Home, path); err == nil && !strings.HasPrefix(rel, "..") {
			return "~/" + rel
		}
		return path
	}
	p("# mc-broker config, written by `mc-broker init`. Reference: the Config")
	p("# section of mc-broker's README. Check it with `mc-broker doctor`.")
	p("#")
	p("# Logins found on this host when it was written:")
	for _, s := range report.Sources {
		line := "not logged in"
		switch s.State {
		case broker.SourceValid:
			line = "logged in, " + s.Fingerprint
		case broker.SourceNotLoggedIn:
			if s.Hint != "" {
				line += " (" + s.Hint + "; copies follow once you do)"
			}
		default:
			line = string(s.State) + " (" + s.Problem + ")"
		}
		p("#   %-*s %s: %s", nameWidth(report), s.Name, home(s.Location), line)
	}
	p("")
	p("sources:")
	for _, s := range defaults.Sources {
		if s.Name != s.Kind {
			// An account of its own, found in a config directory of its own.
			dir := filepath.Dir(s.Path)
			p("  # Another %s account: %s, run as %s=%s %s.", s.Kind, home(dir), cliHomeVariable[s.Kind], home(dir), s.Kind)
			p("  # mc-broker login %s logs it in again and re-seeds its copies.", s.Name)
			p("  %s:", s.Name)
			p("    kind: %s", s.Kind)
			p("    path: %s", home(s.Path))
			if s.Store == "keychain" {
				p("    store: keychain   # macOS keeps this account's login in the Keychain")
			}
			continue
		}
		if env.Getenv(cliHomeVariable[s.Kind]) != "" {
			// Set in this shell, but a background service does not see the
			// shell's variables: pin the path.
			p("  %s:", s.Name)
			p("    path: %s   # from $%s", home(s.Path), cliHomeVariable[s.Kind])
			continue
		}
		p("  %s: {}", s.Name)
	}
	p("")
	p("sinks:")
	p("  # One copy directory per CLI. Mount each as that CLI's config directory,")
	p("  # read-write, never as single files (see the compose snippet below).")
	p("  # companions: also write .claude.json (onboarding done) and Gemini's")
	p("  # settings.json when absent.")
	for _, sk := range defaults.Sinks {
		p("  - source: %s", sk.Source)
		p("    dir: %s", home(sk.Dir))
		p("    companions: true")
	}
	p("  # For a non-root container user, give the copy to it:")
	p("  #   uid: 1000")
	p("  #   gid: 1000")
	if engineErr == nil {
		p("  # A Docker engine answered at %s: a named volume per CLI too,", endpoint)
		p("  # created (labelled org.mc-broker.managed) on the first sync that has")
		p("  # a login to put in it. Mount it as the CLI's config directory.")
		for _, s := range defaults.Sources {
			p("  - source: %s", s.Name)
			p("    volume: %s", config.DefaultVolume(s.Name))
			p("    companions: true")
		}
	} else {
		p("  # No Docker engine answered, so no named volumes are suggested; add")
		p("  # `- {source: claude, volume: mc-claude-auth}` once one runs.")
	}
	p("")
	p("# Compose: mount the copies into a service (or let `mc-broker compose`")
	p("# write this override for you):")
	p("#")
	p("#   services:")
	p("#     dev:")
	p("#       environment:")
	p("#         CLAUDE_CONFIG_DIR: /root/.claude   # so Claude reads .claude.json there")
	p("#       volumes:")
	for _, sk := range defaults.Sinks {
		if src, _ := defaults.Source(sk.Source); src.Name == src.Kind {
			p("#         - %s:/root/.%s", home(sk.Dir), src.Kind)
		}
	}
	p("#")
	if line := composeLine(defaults); line != "" {
		p("# Each account in a service of its own (its copy mounted as the CLI's")
		p("# config directory there; put in your services' names):")
		p("#   %s -o compose.mc-broker.yaml", line)
		p("#")
	}
	p("# and run it under mc-broker so refreshes flow both ways:")
	p("#   mc-broker run -- docker compose up")
	return sb.String()
}

// cliHomeVariable is the variable each CLI reads its config directory from.
var cliHomeVariable = map[string]string{"claude": "CLAUDE_CONFIG_DIR", "codex": "CODEX_HOME", "gemini": "GEMINI_CLI_HOME"}

// defaultEngineProbe asks the Docker engine the docker CLI would use.
func defaultEngineProbe(f *Factory) func(context.Context) (string, error) {
	return func(ctx context.Context) (string, error) {
		env, err := f.Env()
		if err != nil {
			return "", err
		}
		e, err := engine.Connect(ctx, env.Getenv, env.Home)
		if err != nil {
			return "", err
		}
		defer e.Close()
		return e.Endpoint.Host, e.Ping(ctx)
	}
}

// findAccounts finds Claude and Codex logins kept in config directories of
// their own (one per account, the way CLAUDE_CONFIG_DIR and CODEX_HOME are
// used for several accounts): ~/.claude-NAME and ~/.codex-NAME holding the
// CLI's login file, or, on macOS, a Claude directory whose login is in the
// Keychain (Claude Code-credentials-<hash of the directory>). Each becomes
// a source NAME-CLI.
func findAccounts(env config.Env, have *config.Config) []config.Source {
	known := map[string]bool{}
	for _, s := range have.Sources {
		known[filepath.Clean(s.Path)] = true
	}
	var out []config.Source
	for _, kind := range []string{"claude", "codex"} {
		k, _ := kinds.ByName(kind)
		dirs, _ := filepath.Glob(filepath.Join(env.Home, "."+kind+"-*"))
		for _, dir := range dirs {
			name := accountName(strings.TrimPrefix(filepath.Base(dir), "."+kind+"-"))
			path := filepath.Join(dir, k.FileName())
			if fi, err := os.Stat(dir); err != nil || !fi.IsDir() || name == "" || known[path] {
				continue
			}
			src := config.Source{Name: name + "-" + kind, Kind: kind, Path: path, Store: "auto"}
			switch {
			case isFile(path):
			case env.OS() == "darwin" && kind == "claude" && isFile(filepath.Join(dir, ".claude.json")):
				src.Store = "keychain"
			case env.OS() == "darwin" && kind == "codex":
				if keyring, _ := keychain.CodexUsesKeyring(dir, "darwin"); !keyring {
					continue
				}
				src.Store = "keychain"
			default:
				continue
			}
			if _, dup := have.Source(src.Name); dup {
				continue
			}
			out = append(out, src)
		}
	}
	return out
}

// accountName makes a directory's suffix a source name's first part:
// lower case, and only what a source name allows.
func accountName(s string) string {
	s = strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
			return r
		case r >= 'A' && r <= 'Z':
			return r - 'A' + 'a'
		}
		return -1
	}, s)
	return strings.TrimLeft(s, "._-")
}

func isFile(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular()
}

// composeLine is the compose command that gives each account of a CLI a
// service of its own (named as the source: the user puts in theirs), when
// there are several; "" otherwise.
func composeLine(cfg *config.Config) string {
	perKind := map[string][]string{}
	for _, s := range cfg.Sources {
		perKind[s.Kind] = append(perKind[s.Kind], s.Name)
	}
	var args []string
	for _, kind := range []string{"claude", "codex"} {
		if names := perKind[kind]; len(names) > 1 {
			for _, n := range names {
				args = append(args, "--service "+n+"="+n)
			}
		}
	}
	if len(args) == 0 {
		return ""
	}
	return "mc-broker compose " + strings.Join(args, " ")
}

// nameWidth is the width that lines up the sources' names (at least 7,
// "claude" and "gemini" with a space).
func nameWidth(r *broker.Report) int {
	n := 7
	for _, s := range r.Sources {
		n = max(n, len(s.Name))
	}
	return n
}
