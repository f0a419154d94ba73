package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/mc-broker/mc-broker/broker/kinds"
)

// maxConfigSize keeps a mistaken --config (a log, a binary) from being read
// whole.
const maxConfigSize = 1 << 20

// Load reads and checks the config file at path.
func Load(path string, env Env) (*Config, error) {
	st, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		// The caller knows whether --config or MC_BROKER_CONFIG named it
		// and says what to do (see cli.loadNamed).
		return nil, &Error{File: path, Msg: "no such config file", Err: fs.ErrNotExist}
	}
	if err != nil {
		return nil, &Error{File: path, Msg: fmt.Sprintf("cannot read: %v", errors.Unwrap(err))}
	}
	if !st.Mode().IsRegular() || st.Size() > maxConfigSize {
		return nil, &Error{File: path, Msg: "not a config file (expected a YAML file under 1 MiB)"}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &Error{File: path, Msg: fmt.Sprintf("cannot read: %v", errors.Unwrap(err))}
	}
	return Parse(path, data, env)
}

// Parse checks a config's text; file names it in errors.
func Parse(file string, data []byte, env Env) (*Config, error) {
	p := parser{file: file, env: env}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		// yaml's messages name lines and tokens, never whole values.
		return nil, &Error{File: file, Msg: "not valid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	var second yaml.Node
	if err := dec.Decode(&second); !errors.Is(err, io.EOF) {
		return nil, &Error{File: file, Line: second.Line, Msg: "holds more than one YAML document (a second ---): keep one"}
	}
	if len(doc.Content) == 0 {
		return nil, &Error{File: file, Msg: "is empty: add sources and sinks (see the README), or remove it to use the built-in defaults"}
	}
	cfg, err := p.top(doc.Content[0])
	if err != nil {
		return nil, err
	}
	cfg.File = file
	return cfg, nil
}

type parser struct {
	file string
	env  Env
}

func (p *parser) errorf(n *yaml.Node, format string, args ...any) error {
	return &Error{File: p.file, Line: n.Line, Msg: fmt.Sprintf(format, args...)}
}

// fields walks a mapping node, refusing keys not in known.
func (p *parser) fields(n *yaml.Node, where string, known []string, visit func(key string, k, v *yaml.Node) error) error {
	if n.Kind != yaml.MappingNode {
		return p.errorf(n, "%s must be a mapping of keys to values", where)
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if !contains(known, k.Value) {
			return p.errorf(k, "%s: unknown key %q (known keys: %s)", where, k.Value, strings.Join(known, ", "))
		}
		if seen[k.Value] {
			return p.errorf(k, "%s: key %q given twice", where, k.Value)
		}
		seen[k.Value] = true
		if err := visit(k.Value, k, v); err != nil {
			return err
		}
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (p *parser) top(n *yaml.Node) (*Config, error) {
	cfg := &Config{}
	var sinksNode *yaml.Node
	err := p.fields(n, "config", []string{"sources", "sinks", "trust", "on_problem", "notify"}, func(key string, _, v *yaml.Node) error {
		switch key {
		case "sources":
			return p.sources(v, cfg)
		case "sinks":
			sinksNode = v
		case "trust":
			return p.trust(v, cfg)
		case "on_problem":
			if v.Kind != yaml.ScalarNode || v.Tag != "!!str" || strings.TrimSpace(v.Value) == "" {
				return p.errorf(v, "on_problem is a command for sh -c, which gets the event as JSON on stdin (e.g. on_problem: ~/bin/tell-me)")
			}
			cfg.OnProblem = v.Value
		case "notify":
			b, err := strconv.ParseBool(v.Value)
			if v.Kind != yaml.ScalarNode || v.Tag != "!!bool" || err != nil {
				return p.errorf(v, "notify must be true or false")
			}
			cfg.Notify = b
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	// Sinks name sources, so read them once all sources are known.
	if sinksNode != nil {
		if err := p.sinks(sinksNode, cfg); err != nil {
			return nil, err
		}
	}
	return cfg, nil
}

// trust reads the limits on what is taken back from copies.
func (p *parser) trust(n *yaml.Node, cfg *Config) error {
	return p.fields(n, "trust", []string{"take_backs_per_hour"}, func(key string, _, v *yaml.Node) error {
		n, err := strconv.Atoi(v.Value)
		if v.Kind != yaml.ScalarNode || err != nil || n < 1 || n > 10000 {
			return p.errorf(v, "trust.take_backs_per_hour must be a whole number from 1 to 10000 (how many new logins one copy may give the host in an hour; default %d)", 6)
		}
		cfg.Trust.TakeBacksPerHour = n
		return nil
	})
}

func (p *parser) sources(n *yaml.Node, cfg *Config) error {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		return p.errorf(n, "sources must be a mapping from a source name to its settings, e.g. `claude: {}`")
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		name := k.Value
		where := "sources." + name
		if !validName(name) {
			return p.errorf(k, "%s: a source name uses lower-case letters, digits, '.', '_' and '-' (it names a directory in the --dir layout)", where)
		}
		if _, dup := cfg.Source(name); dup {
			return p.errorf(k, "%s: source given twice", where)
		}
		src := Source{Name: name, Store: "auto", Line: k.Line}
		mirrorKeyGiven := false
		if !(v.Kind == yaml.ScalarNode && v.Tag == "!!null") {
			err := p.fields(v, where, sourceKeys, func(key string, _, v *yaml.Node) error {
				s, err := p.scalar(v, where+"."+key)
				if err != nil {
					return err
				}
				switch key {
				case "mirror_refresh_lock":
					on, convErr := strconv.ParseBool(s)
					if convErr != nil || v.Tag != "!!bool" {
						return p.errorf(v, "%s.mirror_refresh_lock must be true or false", where)
					}
					src.NoLockMirror, mirrorKeyGiven = !on, true
				case "kind":
					src.Kind = s
				case "path":
					src.Path, err = p.path(v, s, where+".path")
				case "store":
					src.Store = s
				case "service", "account":
					if strings.TrimSpace(s) == "" || strings.ContainsAny(s, "\"\\\n\r\t") {
						return p.errorf(v, "%s.%s must be a non-empty name without quotes, backslashes or line breaks", where, key)
					}
					if key == "service" {
						src.Service = s
					} else {
						src.Account = s
					}
				case "timeout":
					d, convErr := time.ParseDuration(s)
					if convErr != nil || d <= 0 {
						return p.errorf(v, "%s.timeout must be a duration such as 10s or 1m", where)
					}
					src.Timeout = d
				}
				return err
			})
			if err != nil {
				return err
			}
		}
		if src.Kind == "" {
			if _, known := kinds.ByName(name); !known {
				return p.errorf(k, "%s: kind is missing (one of %s)", where, kindList())
			}
			src.Kind = name
		}
		if _, known := kinds.ByName(src.Kind); !known {
			return p.errorf(v, "%s.kind must be one of %s", where, kindList())
		}
		if mirrorKeyGiven && src.Kind != "claude" {
			return p.errorf(v, "%s.mirror_refresh_lock applies to claude sources only", where)
		}
		switch src.Store {
		case "auto", "file", "keychain":
		default:
			return p.errorf(v, "%s.store must be auto, file or keychain", where)
		}
		keychainSettings := src.Service != "" || src.Account != "" || src.Timeout != 0
		switch {
		case src.Kind == "file" && (src.Store == "keychain" || keychainSettings):
			return p.errorf(v, "%s: a source of kind file is read from its file; store: keychain, service, account and timeout apply to claude, codex and gemini", where)
		case src.Store == "file" && keychainSettings:
			return p.errorf(v, "%s: service, account and timeout name a Keychain item, but store is file; remove them or use store: keychain", where)
		}
		if src.Path == "" {
			src.Path = DefaultPath(src.Kind, p.env.Home, p.env.Getenv)
			if src.Path == "" {
				return p.errorf(k, "%s: a source of kind file needs a path", where)
			}
		}
		cfg.Sources = append(cfg.Sources, src)
	}
	return nil
}

var sourceKeys = []string{"kind", "path", "store", "service", "account", "timeout", "mirror_refresh_lock"}

var sinkKeys = []string{"source", "dir", "volume", "secret", "path", "file_name", "key", "kubeconfig", "engine", "context", "adopt", "uid", "gid", "include_mcp_oauth", "companions"}

// secretOnlyKeys apply to secret: copies only.
var secretOnlyKeys = []string{"key", "kubeconfig"}

// dockerContextName is what `docker context create` accepts:
// ^[a-zA-Z0-9][a-zA-Z0-9_.+-]*$, checked by hand so that no regexp is
// compiled at start-up.
func dockerContextName(s string) bool {
	for i, c := range s {
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || !strings.ContainsRune("_.+-", c)) {
			return false
		}
	}
	return s != ""
}

func (p *parser) sinks(n *yaml.Node, cfg *Config) error {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		return p.errorf(n, "sinks must be a list of copies, each starting with `- source: NAME`")
	}
	for i, v := range n.Content {
		where := "sinks[" + strconv.Itoa(i) + "]"
		// Companions are on unless turned off: a Gemini CLI in a container
		// ignores its login without settings.json beside it.
		sink := Sink{Line: v.Line, Companions: true}
		given := map[string]*yaml.Node{}
		err := p.fields(v, where, sinkKeys, func(key string, k, v *yaml.Node) error {
			given[key] = k
			s, err := p.scalar(v, where+"."+key)
			if err != nil {
				return err
			}
			switch key {
			case "secret":
				ns, name, ok := strings.Cut(s, "/")
				if !ok {
					return p.errorf(v, "%s.secret must be NAMESPACE/NAME, e.g. agents/logins", where)
				}
				if err := CheckSecretNames(ns, name, ""); err != nil {
					return p.errorf(v, "%s.secret: %v", where, err)
				}
				sink.SecretNamespace, sink.SecretName = ns, name
			case "key":
				if err := CheckSecretNames("x", "x", s); err != nil || s == "" {
					return p.errorf(v, "%s.key %q is not a Secret key: letters, digits, '-', '_' and '.'", where, s)
				}
				sink.Key = s
			case "kubeconfig":
				sink.Kubeconfig, err = p.path(v, s, where+".kubeconfig")
			case "context":
				// A kubeconfig context (secret:) or a docker context
				// (volume:); which, is checked once the copy is known.
				if strings.TrimSpace(s) == "" {
					return p.errorf(v, "%s.context must name a kubeconfig context (secret: copies) or a docker context (volume: copies)", where)
				}
				sink.Context = s
			case "source":
				sink.Source = s
			case "dir":
				sink.Dir, err = p.path(v, s, where+".dir")
			case "volume":
				if !validVolume(s) {
					err = p.errorf(v, "%s.volume %q is not a Docker volume name: letters, digits, '_', '.' and '-', starting with a letter or digit, at least two characters", where, s)
				}
				sink.Volume = s
			case "path":
				if !strings.HasPrefix(s, "/") || path.Clean(s) != s || strings.Contains(s, "..") {
					err = p.errorf(v, "%s.path is the directory inside the volume, like / or /home/.claude: absolute, no '..', no trailing '/'", where)
				}
				sink.Path = s
			case "engine":
				// The address itself is checked where the engine code is
				// (cmd/wire): the core does not import the backends.
				if strings.TrimSpace(s) == "" {
					err = p.errorf(v, "%s.engine must be an engine address like ssh://user@host", where)
				}
				sink.Engine = s
			case "adopt":
				sink.Adopt, err = p.boolean(v, s, where+".adopt")
			case "file_name":
				if s == "" || s != filepath.Base(s) || s == "." || s == ".." || strings.TrimSpace(s) != s {
					err = p.errorf(v, "%s.file_name must be a plain file name: no slashes, no leading or trailing spaces", where)
				}
				sink.FileName = s
			case "uid", "gid":
				id, convErr := strconv.Atoi(s)
				if convErr != nil || id < 0 {
					return p.errorf(v, "%s.%s must be a whole number >= 0", where, key)
				}
				if key == "uid" {
					sink.UID = &id
				} else {
					sink.GID = &id
				}
			case "include_mcp_oauth":
				sink.IncludeMCPOAuth, err = p.boolean(v, s, where+".include_mcp_oauth")
			case "companions":
				sink.Companions, err = p.boolean(v, s, where+".companions")
			}
			return err
		})
		if err != nil {
			return err
		}
		if sink.Source == "" {
			return p.errorf(v, "%s: source is missing (the name of the source this copy follows)", where)
		}
		src, ok := cfg.Source(sink.Source)
		if !ok {
			return p.errorf(v, "%s.source: no source called %q (sources: %s)", where, sink.Source, cfg.SourceNames())
		}
		targets := 0
		for _, t := range []string{sink.Dir, sink.Volume, sink.SecretName} {
			if t != "" {
				targets++
			}
		}
		switch {
		case targets == 0:
			return p.errorf(v, "%s: dir or volume is missing (the host directory, or the Docker named volume, a container mounts as the CLI's config directory; or secret: NAMESPACE/NAME, the Kubernetes Secret pods read)", where)
		case sink.Dir != "" && sink.Volume != "" && sink.SecretName == "":
			return p.errorf(v, "%s: give dir or volume, not both (make two copies for both)", where)
		case targets > 1:
			return p.errorf(v, "%s: give one of dir, volume and secret (make one copy for each)", where)
		case sink.Path != "" && sink.Volume == "":
			return p.errorf(v, "%s.path applies to volume copies only (for a directory copy, put the path in dir)", where)
		case sink.Engine != "" && sink.Volume == "":
			return p.errorf(given["engine"], "%s.engine applies to volume copies only", where)
		case given["context"] != nil && sink.Volume == "" && sink.SecretName == "":
			return p.errorf(given["context"], "%s.context applies to volume and secret: copies only (a docker or kubeconfig context)", where)
		case given["adopt"] != nil && sink.Volume == "" && sink.SecretName == "":
			return p.errorf(given["adopt"], "%s.adopt applies to volume and secret: copies only", where)
		case sink.Engine != "" && sink.Context != "":
			return p.errorf(v, "%s: give engine or context, not both (a context names an engine)", where)
		case sink.Volume != "" && sink.Context != "" && !dockerContextName(sink.Context):
			return p.errorf(given["context"], "%s.context %q is not a docker context name (see `docker context ls`)", where, sink.Context)
		}
		if err := p.secretSink(where, given, &sink, src); err != nil {
			return err
		}
		if kind, _ := kinds.ByName(src.Kind); contains(kind.Facts().LockFiles, sink.FileName) {
			return p.errorf(v, "%s.file_name %q is a lock file of %s; choose another name", where, sink.FileName, src.Kind)
		}
		if sink.IncludeMCPOAuth && src.Kind != "claude" {
			return p.errorf(v, "%s.include_mcp_oauth applies to claude sources only", where)
		}
		cfg.Sinks = append(cfg.Sinks, sink)
	}
	return nil
}

// secretSink checks the keys that only some copies take, and gives a
// secret: copy its default key: the CLI's file name (the source file's name
// for kind file), which is also the file the pod's agent keeps.
func (p *parser) secretSink(where string, given map[string]*yaml.Node, sink *Sink, src Source) error {
	if sink.SecretName == "" {
		for _, key := range secretOnlyKeys {
			if k := given[key]; k != nil {
				return p.errorf(k, "%s.%s applies to secret: copies only", where, key)
			}
		}
		return nil
	}
	for _, no := range []struct{ key, why string }{
		{"file_name", "use key: to name the Secret's data key"},
		{"uid", "the pod's agent writes files as its container's user (kube manifest --uid)"},
		{"gid", "the pod's agent writes files as its container's group (kube manifest --gid)"},
		{"companions", "the pod's agent writes them into the pod"},
	} {
		if k := given[no.key]; k != nil {
			return p.errorf(k, "%s.%s does not apply to a secret: copy: %s", where, no.key, no.why)
		}
	}
	if sink.Key == "" {
		kind, _ := kinds.ByName(src.Kind)
		sink.Key = kind.FileName()
		if sink.Key == "" {
			sink.Key = filepath.Base(src.Path)
		}
		if err := CheckSecretNames("x", "x", sink.Key); err != nil {
			return p.errorf(given["secret"], "%s: the source's file name %q is not a Secret key: name one with key:", where, sink.Key)
		}
	}
	return nil
}

// SourceNames lists the sources' names for messages, sorted.
func (cfg *Config) SourceNames() string {
	var names []string
	for _, s := range cfg.Sources {
		names = append(names, s.Name)
	}
	sort.Strings(names)
	if len(names) == 0 {
		return "none defined"
	}
	return strings.Join(names, ", ")
}

func (p *parser) scalar(n *yaml.Node, where string) (string, error) {
	if n.Kind != yaml.ScalarNode {
		return "", p.errorf(n, "%s must be a single value", where)
	}
	return n.Value, nil
}

// boolean reads a YAML true or false (not yes, 1, "true").
func (p *parser) boolean(n *yaml.Node, s, where string) (bool, error) {
	b, err := strconv.ParseBool(s)
	if err != nil || n.Tag != "!!bool" {
		return false, p.errorf(n, "%s must be true or false", where)
	}
	return b, nil
}

func (p *parser) path(n *yaml.Node, s, where string) (string, error) {
	out, err := expandPath(s, p.env)
	if err != nil {
		return "", p.errorf(n, "%s %v", where, err)
	}
	return out, nil
}
