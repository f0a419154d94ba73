// Package config reads mc-broker's YAML config, supplies the built-in
// defaults used when there is none, and assembles sources and sinks into a
// broker.
package config

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/mc-broker/mc-broker/broker/kinds"
)

// Env is the part of the process environment that decides paths, passed in
// so that tests need not change the real one.
type Env struct {
	Home   string
	Getenv func(string) string
	// GOOS decides what store: auto means (the Keychain on "darwin");
	// runtime.GOOS when empty.
	GOOS string
	// User is the user name, the account of Claude Code's Keychain item.
	User string
}

// OSEnv reads the running process's environment.
func OSEnv() (Env, error) {
	home, err := os.UserHomeDir()
	if err != nil {
		return Env{}, fmt.Errorf("cannot find your home directory: %w (set HOME)", err)
	}
	// Claude Code takes $USER first, then the account's name.
	name := os.Getenv("USER")
	if u, err := user.Current(); name == "" && err == nil {
		name = u.Username
	}
	return Env{Home: home, Getenv: os.Getenv, GOOS: runtime.GOOS, User: name}, nil
}

// OS is the operating system the config is read for.
func (e Env) OS() string {
	if e.GOOS == "" {
		return runtime.GOOS
	}
	return e.GOOS
}

func (e Env) xdg(variable, fallback string) string {
	if d := e.Getenv(variable); filepath.IsAbs(d) {
		return filepath.Join(d, "mc-broker")
	}
	return filepath.Join(e.Home, fallback, "mc-broker")
}

// ConfigFile is where the config is looked for when neither --config nor
// MC_BROKER_CONFIG names one: $XDG_CONFIG_HOME/mc-broker/config.yaml.
func (e Env) ConfigFile() string {
	return filepath.Join(e.xdg("XDG_CONFIG_HOME", ".config"), "config.yaml")
}

// DataDir holds the default copies: $XDG_DATA_HOME/mc-broker.
func (e Env) DataDir() string { return e.xdg("XDG_DATA_HOME", ".local/share") }

// StateDir holds locks and, later, backups and watcher state:
// $XDG_STATE_HOME/mc-broker.
func (e Env) StateDir() string { return e.xdg("XDG_STATE_HOME", ".local/state") }

// Config is a parsed config, or the built-in defaults.
type Config struct {
	// File is the config file read; empty for the built-in defaults.
	File    string
	Sources []Source
	Sinks   []Sink
	Trust   Trust
	// OnProblem is a command watch runs (sh -c) when a login needs the
	// user, with the event as JSON on stdin; Notify also shows it with the
	// desktop's notifier.
	OnProblem string
	Notify    bool
}

// Trust are the limits on what is taken back from copies (docs/SECURITY.md).
type Trust struct {
	// TakeBacksPerHour caps how many new logins one copy may give the host
	// in an hour; 0 for the default (broker.DefaultMaxTakeBacks).
	TakeBacksPerHour int
}

// Source is one entry under sources:.
type Source struct {
	Name string
	Kind string
	Path string // absolute; the kind's default location when not configured
	// Store is where the login is read: auto (the Keychain on macOS where
	// the CLI keeps it there, else the file), file or keychain.
	Store string
	// Service and Account override the Keychain item's names.
	Service, Account string
	// Timeout bounds each call of security; keychain.DefaultTimeout when 0.
	Timeout time.Duration
	// NoLockMirror is set by mirror_refresh_lock: false: watch then does
	// not mirror Claude's refresh lock into this source's own directory.
	NoLockMirror bool
	Line         int
}

// Sink is one entry under sinks:.
type Sink struct {
	Source string
	// Dir is a host directory copy; Volume a Docker named volume copy,
	// with the file in Path inside it ("" for the volume root); SecretName
	// a Kubernetes Secret copy. Exactly one of Dir, Volume and SecretName
	// is set.
	Dir             string
	Volume          string
	Path            string
	FileName        string // default: the kind's own file name, or the source file's base name
	UID, GID        *int
	IncludeMCPOAuth bool
	// Companions adds the non-secret files a CLI in a fresh container needs
	// (the kind's Facts().Companions), when absent. On unless the config
	// says companions: false.
	Companions bool
	// SecretNamespace and SecretName name a Kubernetes Secret copy (the
	// secret: key), with the login under Key, reached through Kubeconfig
	// and Context (empty: as kubectl finds them). Adopt lets it write into
	// an existing Secret mc-broker did not create that holds other keys.
	SecretNamespace, SecretName string
	Key                         string
	Kubeconfig, Context         string
	Adopt                       bool
	Line                        int
}

// Error is a config problem, with the file and line where it is.
type Error struct {
	File string
	Line int
	Msg  string
	// Err is the cause when one matters to the caller: fs.ErrNotExist
	// for a config file that is not there.
	Err error
}

func (e *Error) Unwrap() error { return e.Err }

func (e *Error) Error() string {
	switch {
	case e.File == "":
		return e.Msg
	case e.Line > 0:
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return e.File + ": " + e.Msg
}

// DefaultSources are the CLIs looked for when there is no config.
var DefaultSources = []string{"claude", "codex", "gemini"}

// Default is the config used when there is no config file: each CLI's login
// where the CLI keeps it, and one copy directory per CLI under DataDir.
func Default(env Env) *Config {
	c := &Config{}
	for _, k := range DefaultSources {
		c.Sources = append(c.Sources, Source{Name: k, Kind: k, Path: DefaultPath(k, env.Home, env.Getenv), Store: "auto"})
		c.Sinks = append(c.Sinks, Sink{Source: k, Dir: filepath.Join(env.DataDir(), k), Companions: true})
	}
	return c
}

// DefaultVolume is the named volume the defaults give a CLI's copy when a
// Docker engine is reachable: the names users already give them.
func DefaultVolume(kind string) string { return "mc-" + kind + "-auth" }

// WithDefaultVolumes adds one named volume copy per source, called
// DefaultVolume(kind). The defaults use it when a Docker engine answers;
// a source that is not logged in has its copies skipped, so no volume is
// created for it.
func (c *Config) WithDefaultVolumes() *Config {
	out := *c
	out.Sinks = append([]Sink(nil), c.Sinks...)
	for _, s := range c.Sources {
		out.Sinks = append(out.Sinks, Sink{Source: s.Name, Volume: DefaultVolume(s.Kind), Companions: true})
	}
	return &out
}

// WithDirLayout replaces the copies with the layout a pre-run hook wants:
// root/<source name>/<the CLI's file name> for every source.
func (c *Config) WithDirLayout(root string) *Config {
	out := *c
	out.Sinks = nil
	for _, s := range c.Sources {
		out.Sinks = append(out.Sinks, Sink{Source: s.Name, Dir: filepath.Join(root, s.Name), Companions: true})
	}
	return &out
}

// Source returns the source called name.
func (c *Config) Source(name string) (Source, bool) {
	for _, s := range c.Sources {
		if s.Name == name {
			return s, true
		}
	}
	return Source{}, false
}

// validName: a source's name is lower-case letters, digits, '.', '_'
// and '-', starting with a letter or digit. (Loops, not regular
// expressions: nothing to compile when mc-broker starts.)
func validName(s string) bool {
	if s == "" || !lowerOrDigit(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !lowerOrDigit(c) && c != '.' && c != '_' && c != '-' {
			return false
		}
	}
	return true
}

// validVolume: the volume names Docker accepts (sinks/volume checks the
// same before it uses one): at least two of letters, digits, '_', '.',
// '-', starting with a letter or digit.
func validVolume(s string) bool {
	if len(s) < 2 || !letterOrDigit(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !letterOrDigit(c) && c != '.' && c != '_' && c != '-' {
			return false
		}
	}
	return true
}

func lowerOrDigit(c byte) bool  { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }
func letterOrDigit(c byte) bool { return lowerOrDigit(c) || c >= 'A' && c <= 'Z' }

// envReference finds $NAME or ${NAME} in a path: "" when there is none.
func envReference(p string) string {
	for i := 0; i < len(p); i++ {
		if p[i] != '$' {
			continue
		}
		rest, braced := p[i+1:], false
		if strings.HasPrefix(rest, "{") {
			rest, braced = rest[1:], true
		}
		n := 0
		for n < len(rest) && (rest[n] == '_' || letterOrDigit(rest[n]) && (n > 0 || rest[n] < '0' || rest[n] > '9')) {
			n++
		}
		switch {
		case n == 0:
		case !braced:
			return p[i : i+1+n]
		case n < len(rest) && rest[n] == '}':
			return p[i : i+2+n+1]
		}
	}
	return ""
}

// expandPath turns ~/x into an absolute path and refuses relative paths:
// a config is read from services whose working directory is not yours.
// Environment variables are not expanded but refused, for the same reason:
// the background service (systemd, launchd) has another environment than
// the shell the config was written in, so $VAR could name another
// directory there, or nothing; and a path taken literally would create a
// directory called "$HOME".
func expandPath(p string, env Env) (string, error) {
	if ref := envReference(p); ref != "" {
		name := strings.Trim(ref, "${}")
		if name == "HOME" && strings.HasPrefix(p, ref) {
			return "", fmt.Errorf("uses %s, but environment variables are not expanded (a background service has another environment): write ~/%s", ref, strings.TrimLeft(p[len(ref):], "/"))
		}
		return "", fmt.Errorf("uses %s, but environment variables are not expanded (a background service has another environment): write the absolute path, or ~/...", ref)
	}
	switch {
	case p == "~":
		return env.Home, nil
	case strings.HasPrefix(p, "~/"):
		return filepath.Join(env.Home, p[2:]), nil
	case filepath.IsAbs(p):
		return filepath.Clean(p), nil
	}
	return "", fmt.Errorf("must be an absolute path or start with ~/, not a relative path")
}

func kindList() string { return strings.Join(kinds.Names, ", ") }

// DefaultPath returns where the CLI of kind keeps its login file on this
// host, honouring the CLI's own environment variables, as an absolute path
// (a relative CLAUDE_CONFIG_DIR is taken from the working directory, as the
// CLI would). It returns "" for kinds with no default (opaque files).
func DefaultPath(kind, home string, getenv func(string) string) string {
	p := kinds.DefaultPath(kind, home, getenv)
	if p == "" {
		return ""
	}
	if abs, err := filepath.Abs(p); err == nil {
		return abs
	}
	return p
}
