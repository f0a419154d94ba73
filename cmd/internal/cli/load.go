package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spf13/pflag"

	"github.com/mc-broker/mc-broker/broker"
	"github.com/mc-broker/mc-broker/broker/config"
	"github.com/mc-broker/mc-broker/cmd/wire"
	"github.com/mc-broker/mc-broker/sinks/volume"
	"github.com/mc-broker/mc-broker/sinks/volume/engine"
)

// selection is what sync and status share: which config, which copies,
// which sources.
type selection struct {
	ConfigFile string
	Dir        string
	Only       []string
	// writes is set by commands that write the --dir layout: its root
	// then gets its .gitignore before anything else.
	writes bool
}

// configFlagUsage is --config's help, the same for every command.
const configFlagUsage = "config `FILE` (default $MC_BROKER_CONFIG, else $XDG_CONFIG_HOME/mc-broker/config.yaml if it exists, else built-in defaults)"

func (s *selection) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&s.ConfigFile, "config", "", configFlagUsage)
	fs.StringVar(&s.Dir, "dir", "", "use the pre-run hook layout instead of the configured copies: `PATH`/claude/.credentials.json, PATH/codex/auth.json, PATH/gemini/oauth_creds.json")
	fs.StringSliceVar(&s.Only, "only", nil, "only these sources (comma-separated `NAME`s); a named source that is not logged in is an error (exit 3)")
}

// load resolves the config and builds the broker. It also returns the
// environment it resolved, so that a command that goes on to use it does
// not resolve it again.
func (s *selection) load(ctx context.Context, f *Factory) (*broker.Broker, *config.Config, config.Env, error) {
	env, cfg, err := s.loadConfig(f)
	if err != nil {
		return nil, nil, config.Env{}, err
	}
	// One engine handle per run: the probe below and every volume copy
	// share its connection.
	docker := volume.NewShared(engine.NewLazy(env.Getenv, env.Home))
	if cfg.File == "" && s.Dir == "" {
		cfg = withDefaultVolumes(ctx, f, cfg, docker.Lazy())
	}
	for _, name := range s.Only {
		if _, ok := cfg.Source(name); !ok {
			return nil, nil, config.Env{}, usageError("--only: no source called %q (sources: %s)", name, cfg.SourceNames())
		}
	}
	if s.Dir != "" {
		abs, err := filepath.Abs(s.Dir)
		if err != nil {
			return nil, nil, config.Env{}, usageError("--dir: %v", err)
		}
		if s.writes {
			if err := prepareDirLayout(abs, f.Stderr); err != nil {
				return nil, nil, config.Env{}, &ExitError{Code: broker.ExitCopyFailed, Err: err}
			}
		}
		cfg = cfg.WithDirLayout(abs)
	}
	b, err := wire.Build(cfg, env, docker)
	if err != nil && s.Dir != "" {
		return nil, nil, config.Env{}, &ExitError{Code: broker.ExitUsage, Err: err, Hint: "choose another --dir"}
	}
	if err != nil {
		return nil, nil, config.Env{}, err
	}
	b.Now = f.Now
	return b, cfg, env, nil
}

// withDefaultVolumes gives the built-in defaults their named volumes when
// a Docker engine answers (within engine.PingTimeout), and says in one line
// on stderr why there are none when it does not.
func withDefaultVolumes(ctx context.Context, f *Factory, cfg *config.Config, lazy *engine.Lazy) *config.Config {
	_, err := lazy.Engine(ctx)
	if err == nil {
		return cfg.WithDefaultVolumes()
	}
	var ue *engine.UnreachableError
	msg := err.Error()
	if errors.As(err, &ue) && !ue.PermissionDenied() {
		msg = "no Docker engine at " + ue.Host
	}
	fmt.Fprintf(f.Stderr, "mc-broker: note: %s; volume copies skipped\n", msg)
	return cfg
}

// loadConfig resolves the environment and reads the config the selection
// names, without building a broker: for commands that only read the config
// (compose, kube manifest) as much as for load. An environment that cannot
// be resolved (no home directory) is bad usage, exit 2.
func (s *selection) loadConfig(f *Factory) (config.Env, *config.Config, error) {
	env, err := f.Env()
	if err != nil {
		return config.Env{}, nil, &ExitError{Code: broker.ExitUsage, Err: err}
	}
	cfg, err := s.config(f, env)
	if err != nil {
		return config.Env{}, nil, err
	}
	return env, cfg, nil
}

func (s *selection) config(f *Factory, env config.Env) (*config.Config, error) {
	if path, namedBy := namedConfig(s.ConfigFile, f.Getenv); path != "" {
		return loadNamed(path, namedBy, env)
	}
	path := env.ConfigFile()
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return config.Default(env), nil
	}
	return config.Load(path, env)
}

// namedConfig is the config file that --config (flag), else
// MC_BROKER_CONFIG names, and which of the two named it; "" when neither.
func namedConfig(flag string, getenv func(string) string) (path, namedBy string) {
	if flag != "" {
		return flag, "--config"
	}
	if v := getenv("MC_BROKER_CONFIG"); v != "" {
		return v, "MC_BROKER_CONFIG"
	}
	return "", ""
}

// loadNamed reads a config file that --config or MC_BROKER_CONFIG named. A
// missing one is an error, not a quiet fall-back to the defaults, and says
// which of the two to fix: a variable set in a shell profile long ago is
// easy to forget.
func loadNamed(path, namedBy string, env config.Env) (*config.Config, error) {
	cfg, err := config.Load(path, env)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return cfg, err
	}
	undo := "run without --config"
	if namedBy != "--config" {
		undo = "unset " + namedBy
	}
	return nil, &ExitError{
		Code: broker.ExitUsage,
		Err:  fmt.Errorf("%w (named by %s)", err, namedBy),
		Hint: "fix the path, or " + undo + " to use " + env.ConfigFile() + " when it exists, else the built-in defaults",
	}
}
