package cli

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spf13/pflag"

	"github.com/mc-broker/mc-broker/broker"
	"github.com/mc-broker/mc-broker/broker/config"
)

// selection is what sync and status share: which config, which copies,
// which sources.
type selection struct {
	ConfigFile string
	Dir        string
	Only       []string
}

// configFlagUsage is --config's help, the same for every command.
const configFlagUsage = "config `FILE` (default $MC_BROKER_CONFIG, else $XDG_CONFIG_HOME/mc-broker/config.yaml if it exists, else built-in defaults)"

func (s *selection) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&s.ConfigFile, "config", "", configFlagUsage)
	fs.StringVar(&s.Dir, "dir", "", "use the pre-run hook layout instead of the configured copies: `PATH`/claude/.credentials.json, PATH/codex/auth.json, PATH/gemini/oauth_creds.json")
	fs.StringSliceVar(&s.Only, "only", nil, "only these sources (comma-separated `NAME`s); a named source that is not logged in is an error (exit 3)")
}

// load resolves the config and builds the broker.
func (s *selection) load(f *Factory) (*broker.Broker, *config.Config, error) {
	env, err := f.Env()
	if err != nil {
		return nil, nil, &ExitError{Code: broker.ExitUsage, Err: err}
	}
	cfg, err := s.config(f, env)
	if err != nil {
		return nil, nil, err
	}
	for _, name := range s.Only {
		if _, ok := cfg.Source(name); !ok {
			return nil, nil, usageError("--only: no source called %q (sources: %s)", name, cfg.SourceNames())
		}
	}
	if s.Dir != "" {
		abs, err := filepath.Abs(s.Dir)
		if err != nil {
			return nil, nil, usageError("--dir: %v", err)
		}
		cfg = cfg.WithDirLayout(abs)
	}
	b, err := cfg.Build(env)
	if err != nil && s.Dir != "" {
		return nil, nil, &ExitError{Code: broker.ExitUsage, Err: err, Hint: "choose another --dir"}
	}
	if err != nil {
		return nil, nil, err
	}
	b.Now = f.Now
	return b, cfg, nil
}

func (s *selection) config(f *Factory, env config.Env) (*config.Config, error) {
	path := s.ConfigFile
	if path == "" {
		path = f.Getenv("MC_BROKER_CONFIG")
	}
	if path != "" {
		return config.Load(path, env)
	}
	path = env.ConfigFile()
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return config.Default(env), nil
	}
	return config.Load(path, env)
}
