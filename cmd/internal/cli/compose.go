package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/mc-broker/mc-broker/broker"
	"github.com/mc-broker/mc-broker/broker/config"
	"github.com/mc-broker/mc-broker/broker/kinds"
	"github.com/mc-broker/mc-broker/launch/compose"
)

// ExitFindings is `compose check`'s exit code when it found a problem:
// distinct from 1 (I/O) and 3 (a login), so a script can tell them apart.
const ExitFindings = 4

// ComposeOptions are the inputs of `mc-broker compose`.
type ComposeOptions struct {
	f          *Factory
	ConfigFile string
	Dir        string
	Services   []string // NAME=CLI[,CLI]
	Home       string
	Volumes    bool
	Dirs       bool
	Output     string
	Force      bool
}

// NewCmdCompose builds `mc-broker compose` and its `check` subcommand;
// runF replaces composeRun in tests.
func NewCmdCompose(f *Factory, runF func(*ComposeOptions) error) *cobra.Command {
	opts := &ComposeOptions{f: f}
	cmd := &cobra.Command{
		Use:   "compose --service NAME=CLI[,CLI] [--service ...] [flags]",
		Short: "Write a compose override that mounts the copies into your services",
		Long: `Print (or write with -o) a compose override file that mounts each CLI's
copy as that CLI's config directory in the services you name:
<home>/.claude, <home>/.codex, <home>/.gemini (home: --home, default /root).

The mounts are directories, read-write: the CLIs write refreshed logins
there, and a single-file mount would go stale when the host replaces the
file. Named volumes are declared external, so 'docker compose down -v'
cannot delete them. The file works with docker compose v2 and with
docker-compose 1.29.

--dirs (the default) mounts the directory copies from the config (without a
config: $XDG_DATA_HOME/mc-broker/<cli>), or with --dir PATH the pre-run hook
layout PATH/<cli> that 'mc-broker sync --dir PATH' writes. Directories work
with every engine and need no Docker API. --volumes mounts the volume copies
from the config instead (without a config: mc-claude-auth, mc-codex-auth,
mc-gemini-auth).

CLI names are claude, codex and gemini, or the source names in your config.

The copies must exist before 'up': run 'mc-broker sync' first (or keep
'mc-broker watch' running). A missing directory stops 'up' with an error
rather than starting a logged-out CLI.

-o refuses to replace a file that mc-broker did not write (its first line
says so) unless --force is given; an unchanged file is not rewritten.`,
		Example: `  # claude and codex in the service "dev", gemini in "ci":
  mc-broker compose --service dev=claude,codex --service ci=gemini -o compose.mc-broker.yaml
  docker compose -f compose.yaml -f compose.mc-broker.yaml up

  # a project-local pre-run hook layout, container user node:
  mc-broker sync --dir .auth
  mc-broker compose --dir .auth --home /home/node --service app=claude -o compose.mc-broker.yaml

  # named volumes instead of directories:
  mc-broker compose --volumes --service app=claude,codex`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if runF != nil {
				return runF(opts)
			}
			return composeRun(opts)
		},
	}
	fl := cmd.Flags()
	fl.StringArrayVar(&opts.Services, "service", nil, "a compose service and the CLIs it runs: `NAME=CLI[,CLI]` (repeat for more services)")
	fl.StringVar(&opts.Home, "home", compose.DefaultHome, "the container user's home `DIR`: copies are mounted at DIR/.claude, DIR/.codex, DIR/.gemini")
	fl.BoolVar(&opts.Dirs, "dirs", false, "mount the directory copies (the default)")
	fl.BoolVar(&opts.Volumes, "volumes", false, "mount the config's volume copies (without a config mc-<cli>-auth) instead of directories")
	fl.StringVarP(&opts.Output, "output", "o", "", "write the override to `FILE` (mode 0644) instead of printing it")
	fl.BoolVar(&opts.Force, "force", false, "with -o, replace a file mc-broker did not write")
	fl.StringVar(&opts.ConfigFile, "config", "", configFlagUsage)
	fl.StringVar(&opts.Dir, "dir", "", "mount the pre-run hook layout `PATH`/<cli> (as written by mc-broker sync --dir PATH) instead of the configured copies")
	cmd.AddCommand(NewCmdComposeCheck(f, nil))
	return cmd
}

func composeRun(opts *ComposeOptions) error {
	if len(opts.Services) == 0 {
		return usageError("name at least one service: --service NAME=CLI[,CLI], e.g. --service app=claude,codex")
	}
	if opts.Volumes && opts.Dirs {
		return usageError("--volumes and --dirs exclude each other: choose one")
	}
	if opts.Volumes && opts.Dir != "" {
		return usageError("--dir names directory copies; it cannot be combined with --volumes")
	}
	cfg, err := composeConfig(opts.f, opts.ConfigFile, opts.Dir)
	if err != nil {
		return err
	}
	spec := compose.Spec{Home: opts.Home, Services: map[string][]compose.Mount{}}
	for _, arg := range opts.Services {
		name, clis, ok := strings.Cut(arg, "=")
		if !ok || name == "" || clis == "" {
			return usageError("--service %q: write NAME=CLI[,CLI], e.g. app=claude,codex", arg)
		}
		if _, dup := spec.Services[name]; dup {
			return usageError("--service %s given twice: list all its CLIs in one --service %s=CLI,CLI", name, name)
		}
		spec.Services[name] = []compose.Mount{}
		for _, cli := range strings.Split(clis, ",") {
			m, err := composeMount(cfg, strings.TrimSpace(cli), opts.Volumes)
			if err != nil {
				return err
			}
			spec.Services[name] = append(spec.Services[name], m)
		}
	}
	out, err := compose.Generate(spec)
	var specErr *compose.SpecError
	if errors.As(err, &specErr) {
		return usageError("%v", err)
	}
	if err != nil {
		return err
	}
	noteMissingDirs(opts.f.Stderr, spec)
	if opts.Output == "" {
		_, err := opts.f.Stdout.Write(out)
		return err
	}
	return writeOverride(opts.f, opts.Output, out, opts.Force)
}

// composeConfig is the config sync would use, with --dir's layout applied.
func composeConfig(f *Factory, file, dir string) (*config.Config, error) {
	sel := selection{ConfigFile: file}
	_, cfg, err := sel.loadConfig(f)
	if err != nil {
		return nil, err
	}
	if dir != "" {
		abs, err := filepath.Abs(dir)
		if err != nil {
			return nil, usageError("--dir: %v", err)
		}
		cfg = cfg.WithDirLayout(abs)
	}
	return cfg, nil
}

// composeMount finds where the copy of the source called name lives.
func composeMount(cfg *config.Config, name string, volumes bool) (compose.Mount, error) {
	src, ok := cfg.Source(name)
	if !ok {
		return compose.Mount{}, usageError("unknown CLI %q: use claude, codex, gemini or a source in the config (sources: %s)", name, cfg.SourceNames())
	}
	if _, ok := compose.CLIDirs[src.Kind]; !ok {
		return compose.Mount{}, usageError("source %s is a %s source: only claude, codex and gemini logins have a config directory to mount", name, src.Kind)
	}
	where := "the config"
	if cfg.File != "" {
		where = cfg.File
	}
	if volumes {
		return composeVolume(cfg, name, src.Kind, where)
	}
	var dirs []string
	for _, sk := range cfg.Sinks {
		if sk.Source == name && sk.Dir != "" {
			dirs = append(dirs, sk.Dir)
		}
	}
	switch len(dirs) {
	case 0:
		return compose.Mount{}, &ExitError{Code: broker.ExitUsage,
			Err:  fmt.Errorf("%s has no directory copy in %s", name, where),
			Hint: "add a sink with dir: for it, use --dir PATH, or use --volumes"}
	case 1:
		return compose.Mount{CLI: src.Kind, Dir: dirs[0]}, nil
	}
	return compose.Mount{}, &ExitError{Code: broker.ExitUsage,
		Err:  fmt.Errorf("%s has %d directory copies in %s (%s): a service mounts one", name, len(dirs), where, strings.Join(dirs, ", ")),
		Hint: "use --dir PATH for a project's own copy, or a config with one copy per source"}
}

// composeVolume finds the named volume holding the copy of the source
// called name: the config's volume copy, or without a config file the
// default volume sync keeps when an engine answers.
func composeVolume(cfg *config.Config, name, kind, where string) (compose.Mount, error) {
	if cfg.File == "" {
		return compose.Mount{CLI: kind, Volume: config.DefaultVolume(kind)}, nil
	}
	var vols []config.Sink
	for _, sk := range cfg.Sinks {
		if sk.Source == name && sk.Volume != "" {
			vols = append(vols, sk)
		}
	}
	switch {
	case len(vols) == 0:
		return compose.Mount{}, &ExitError{Code: broker.ExitUsage,
			Err:  fmt.Errorf("%s has no volume copy in %s", name, where),
			Hint: "add a sink with volume: for it, or leave out --volumes to mount its directory copy"}
	case len(vols) > 1:
		var names []string
		for _, sk := range vols {
			names = append(names, sk.Volume)
		}
		return compose.Mount{}, &ExitError{Code: broker.ExitUsage,
			Err:  fmt.Errorf("%s has %d volume copies in %s (%s): a service mounts one", name, len(vols), where, strings.Join(names, ", ")),
			Hint: "use a config with one volume copy per source"}
	case vols[0].Path != "" && vols[0].Path != "/":
		return compose.Mount{}, &ExitError{Code: broker.ExitUsage,
			Err:  fmt.Errorf("%s's volume copy is in %s inside %s: the override mounts a volume's root as the config directory", name, vols[0].Path, vols[0].Volume),
			Hint: "drop path: from that sink (the volume's root is then the config directory), or write that mount yourself"}
	}
	return compose.Mount{CLI: kind, Volume: vols[0].Volume}, nil
}

// noteMissingDirs says which copies 'up' would stop on; not an error: the
// override is often written before the first sync.
func noteMissingDirs(w io.Writer, spec compose.Spec) {
	var missing []string
	for _, mounts := range spec.Services {
		for _, m := range mounts {
			if _, err := os.Stat(m.Dir); m.Dir != "" && errors.Is(err, fs.ErrNotExist) {
				missing = append(missing, m.Dir)
			}
		}
	}
	sort.Strings(missing)
	for i, d := range missing {
		if i == 0 || missing[i-1] != d {
			fmt.Fprintf(w, "mc-broker: note: %s does not exist yet: run mc-broker sync before docker compose up\n", d)
		}
	}
}

func writeOverride(f *Factory, path string, data []byte, force bool) error {
	return writeGenerated(f, path, data, force, generated{
		marker:  compose.Marker,
		command: "mc-broker compose",
		use:     "docker compose -f compose.yaml -f " + path + " up",
	})
}

// ComposeCheckOptions are the inputs of `mc-broker compose check`.
type ComposeCheckOptions struct {
	f          *Factory
	ConfigFile string
	ProjectDir string
	Files      []string
	JSON       bool
}

// NewCmdComposeCheck builds `mc-broker compose check`; runF replaces
// composeCheckRun in tests.
func NewCmdComposeCheck(f *Factory, runF func(*ComposeCheckOptions) error) *cobra.Command {
	opts := &ComposeCheckOptions{f: f}
	cmd := &cobra.Command{
		Use:   "check [FILE...]",
		Short: "Find mounts in compose files that lose or break CLI logins",
		Long: `Read compose files, merged as 'docker compose -f FILE -f FILE' merges them
(variables from the environment and the project's .env; unset ones become
empty, and where compose would stop on one the check goes on), and report each
mount that loses or breaks a login, with file, line, service and a fix:

  single-file-mount    a login file (.credentials.json, auth.json,
                       oauth_creds.json) bind-mounted on its own, or given
                       as a compose secret: it goes stale when the host CLI
                       refreshes, and the CLI inside cannot replace it
  read-only            a CLI config directory (.claude, .codex, .gemini) or
                       an mc-broker copy mounted :ro: refreshes are lost
  volume-not-external  a login volume (mc-*-auth, or mounted at a CLI config
                       directory) that compose owns: 'down -v' deletes it
  missing-source       a login bind mount whose source does not exist: the
                       short syntax creates an empty, root-owned directory
  login-override       a service that mounts a login also sets a variable
                       its CLI uses instead (ANTHROPIC_API_KEY,
                       CLAUDE_CODE_OAUTH_TOKEN, OPENAI_API_KEY, ...): the
                       login is ignored without a word. Names only, never
                       values; env_file: is not read

~/.claude.json is not flagged: it holds settings and onboarding state, not a
login, so a stale copy logs nobody out.

With no FILE, the files are those docker compose would use: the ones
COMPOSE_FILE lists (separated by COMPOSE_PATH_SEPARATOR, default ':'), else
the first of compose.yaml, compose.yml, docker-compose.yml and
docker-compose.yaml in the working directory or the nearest parent that has
one, with the first of compose.override.yml, compose.override.yaml,
docker-compose.override.yml and docker-compose.override.yaml beside it.

Exit codes: 0 no problem found; 4 a problem found; 2 a file cannot be read
or is not valid compose, no file was found, or bad usage.`,
		Example: `  mc-broker compose check
  mc-broker compose check compose.yaml
  mc-broker compose check compose.yaml compose.override.yaml --json`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Files = args
			if len(args) == 0 {
				wd, err := os.Getwd()
				if err != nil {
					return usageError("name the compose files to check: %v", err)
				}
				if opts.Files, err = composeFiles(wd, opts.f.Getenv); err != nil {
					return reportError(opts.f, opts.JSON, err)
				}
			}
			if runF != nil {
				return runF(opts)
			}
			return composeCheckRun(opts)
		},
	}
	// -f is accepted and ignored so that a compose command line can be reused.
	var ignored bool
	cmd.Flags().BoolVarP(&ignored, "file", "f", false, "accepted for 'docker compose -f' habits; files are the arguments")
	cmd.Flags().Lookup("file").Hidden = true
	cmd.Flags().StringVar(&opts.ProjectDir, "project-directory", "", "resolve relative paths against `DIR` (default: the first file's directory, as compose does)")
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print the findings as JSON")
	cmd.Flags().StringVar(&opts.ConfigFile, "config", "", "config `FILE` whose copy directories count as login mounts (default as for sync)")
	return cmd
}

// The names docker compose looks for when no -f is given, in its order of
// preference (compose-go's cli.DefaultFileNames and
// DefaultOverrideFileNames; docker-compose 1.x read the same, without the
// compose.* names).
var (
	composeFileNames     = []string{"compose.yaml", "compose.yml", "docker-compose.yml", "docker-compose.yaml"}
	composeOverrideNames = []string{"compose.override.yml", "compose.override.yaml", "docker-compose.override.yml", "docker-compose.override.yaml"}
)

// composeFiles finds the files `docker compose` uses when none is named,
// the way it finds them: COMPOSE_FILE, else the first default name in wd or
// the nearest parent that has one, plus the first override file beside it.
// Files in wd are named relative to it, as the user would.
func composeFiles(wd string, getenv func(string) string) ([]string, error) {
	if list := getenv("COMPOSE_FILE"); list != "" {
		sep := getenv("COMPOSE_PATH_SEPARATOR")
		if sep == "" {
			sep = string(os.PathListSeparator)
		}
		var files []string
		for _, f := range strings.Split(list, sep) {
			if f != "" {
				files = append(files, f)
			}
		}
		return files, nil
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if found := firstFile(dir, composeFileNames); found != "" {
			files := []string{found}
			if override := firstFile(dir, composeOverrideNames); override != "" {
				files = append(files, override)
			}
			for i, f := range files {
				if rel, err := filepath.Rel(wd, f); err == nil {
					files[i] = rel
				}
			}
			return files, nil
		}
		if filepath.Dir(dir) == dir {
			return nil, usageError("no compose file in %s or its parents (looked for %s): name the files, e.g. mc-broker compose check compose.yaml",
				wd, strings.Join(composeFileNames, ", "))
		}
	}
}

func firstFile(dir string, names []string) string {
	for _, n := range names {
		p := filepath.Join(dir, n)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p
		}
	}
	return ""
}

func composeCheckRun(opts *ComposeCheckOptions) error {
	cfg, err := composeConfig(opts.f, opts.ConfigFile, "")
	if err != nil {
		return reportError(opts.f, opts.JSON, err)
	}
	check := compose.CheckOptions{ProjectDir: opts.ProjectDir, Overrides: overrideVariables()}
	for _, sk := range cfg.Sinks {
		if sk.Dir != "" {
			check.CopyDirs = append(check.CopyDirs, sk.Dir)
		}
	}
	findings, err := check.Check(opts.Files...)
	if err != nil {
		return reportError(opts.f, opts.JSON, &ExitError{Code: broker.ExitUsage, Err: err,
			Hint: "docker compose -f FILE config shows what compose makes of it"})
	}
	code := broker.ExitOK
	if len(findings) > 0 {
		code = ExitFindings
	}
	if opts.JSON {
		enc := json.NewEncoder(opts.f.Stdout)
		enc.SetIndent("", "  ")
		if findings == nil {
			findings = []compose.Finding{}
		}
		if err := enc.Encode(struct {
			Files    []string          `json:"files"`
			Findings []compose.Finding `json:"findings"`
			ExitCode int               `json:"exit_code"`
		}{opts.Files, findings, code}); err != nil {
			return err
		}
	} else {
		w := opts.f.Stdout
		for _, fd := range findings {
			fmt.Fprintf(w, "%s\n  fix: %s\n", fd, fd.Fix)
		}
		files := strings.Join(opts.Files, ", ")
		switch len(findings) {
		case 0:
			fmt.Fprintf(w, "no problems found in %s\n", files)
		case 1:
			fmt.Fprintf(w, "1 problem in %s\n", files)
		default:
			fmt.Fprintf(w, "%d problems in %s\n", len(findings), files)
		}
	}
	if code != broker.ExitOK {
		return &ExitError{Code: code}
	}
	return nil
}

// overrideVariables maps each variable that beats a CLI's login to that
// CLI, from the kinds' facts.
func overrideVariables() map[string]string {
	out := map[string]string{}
	for _, name := range kinds.Names {
		k, _ := kinds.ByName(name)
		for _, v := range k.Facts().Overrides {
			out[v] = name
		}
	}
	return out
}
