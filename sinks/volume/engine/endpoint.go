// Package engine finds and reaches the Docker engine the way the docker CLI
// does: DOCKER_HOST, else the context named by DOCKER_CONTEXT, else the
// config file's currentContext, else the default socket, and, when nothing
// answers there, Podman's socket. On macOS the engine (Docker Desktop,
// OrbStack, colima) is rarely at /var/run/docker.sock, so following the
// active context matters. A copy may also name its engine in the config
// (Selection): an address, or a docker context.
//
// unix://, tcp:// and ssh:// engines are reached; ssh:// as the docker CLI
// does it, by running `ssh HOST docker system dial-stdio`.
//
// It is a small reader of the docker CLI's files rather than a dependency on
// github.com/docker/cli, which would pull in most of the CLI.
package engine

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// DefaultHost is the engine the docker CLI uses with no DOCKER_HOST and no
// context.
const DefaultHost = "unix:///var/run/docker.sock"

// Selection names the engine one copy uses, as the config gives it: Host
// an address (DOCKER_HOST's form), or Context a docker context's name. The
// zero Selection is the environment's engine (see Resolve).
type Selection struct {
	Host, Context string
}

// IsZero reports whether s leaves the choice to the environment.
func (s Selection) IsZero() bool { return s.Host == "" && s.Context == "" }

// String is how people see the selection: the address, or "context NAME";
// "" for the environment's engine.
func (s Selection) String() string {
	switch {
	case s.Host != "":
		return s.Host
	case s.Context != "":
		return "context " + s.Context
	}
	return ""
}

// Endpoint is where the engine is, and how to talk TLS to it.
type Endpoint struct {
	// Host is the engine address: unix:///path, tcp://host:port or
	// ssh://[user@]host[:port][/socket].
	Host string
	// Context names the docker context it came from ("default" when it came
	// from DOCKER_HOST or nothing).
	Context string
	// From says what chose it, for messages: "DOCKER_HOST",
	// "DOCKER_CONTEXT", "currentContext in <file>", "default", "the config",
	// or "the Podman socket".
	From string
	// TLS material; empty paths mean none. CAFile, CertFile and KeyFile are
	// ca.pem, cert.pem and key.pem from the context's TLS directory or
	// DOCKER_CERT_PATH.
	CAFile, CertFile, KeyFile string
	// TLS is true when the connection uses TLS.
	TLS bool
	// SkipTLSVerify accepts any server certificate (the context's
	// SkipTLSVerify, or DOCKER_CERT_PATH without DOCKER_TLS_VERIFY).
	SkipTLSVerify bool
}

// ContextError is a docker context that cannot be used: it does not exist,
// its files do not parse, or it has no docker endpoint.
type ContextError struct {
	Name string
	From string
	Msg  string
}

func (e *ContextError) Error() string {
	return fmt.Sprintf("docker context %q (from %s) %s", e.Name, e.From, e.Msg)
}

// ConfigDir is the docker CLI's config directory: $DOCKER_CONFIG, else
// ~/.docker.
func ConfigDir(getenv func(string) string, home string) string {
	if d := getenv("DOCKER_CONFIG"); d != "" {
		return d
	}
	return filepath.Join(home, ".docker")
}

// Resolve finds the engine endpoint from the environment (getenv) and the
// docker CLI's files under home, in the docker CLI's order.
func Resolve(getenv func(string) string, home string) (Endpoint, error) {
	if h := getenv("DOCKER_HOST"); h != "" {
		ep := Endpoint{Host: h, Context: "default", From: "DOCKER_HOST"}
		envTLS(&ep, getenv, home)
		return ep, nil
	}
	cfgDir := ConfigDir(getenv, home)
	name, from := getenv("DOCKER_CONTEXT"), "DOCKER_CONTEXT"
	if name == "" {
		cfgFile := filepath.Join(cfgDir, "config.json")
		current, err := currentContext(cfgFile)
		if err != nil {
			return Endpoint{}, err
		}
		name, from = current, "currentContext in "+cfgFile
	}
	if name == "" || name == "default" {
		if from == "DOCKER_CONTEXT" || name == "" {
			from = "default"
		}
		ep := Endpoint{Host: defaultHost, Context: "default", From: from}
		envTLS(&ep, getenv, home)
		return ep, nil
	}
	return readContext(cfgDir, name, from)
}

// defaultHost is DefaultHost; tests move it to see the Podman fallback.
var defaultHost = DefaultHost

// ResolveSelection finds the endpoint a copy's selection names: its Host,
// or its docker context read from the docker CLI's files (DOCKER_CONFIG is
// honoured); the zero Selection is Resolve's answer.
func ResolveSelection(sel Selection, getenv func(string) string, home string) (Endpoint, error) {
	switch {
	case sel.Host != "":
		return Endpoint{Host: sel.Host, From: FromConfig}, nil
	case sel.Context == "default":
		return Endpoint{Host: DefaultHost, Context: "default", From: FromConfig}, nil
	case sel.Context != "":
		return readContext(ConfigDir(getenv, home), sel.Context, FromConfig)
	}
	return Resolve(getenv, home)
}

// FromConfig is Endpoint.From for an engine named in mc-broker's config.
const FromConfig = "the config"

// FromPodman is Endpoint.From for Podman's socket, used when nothing chose
// an engine and none answers at DefaultHost.
const FromPodman = "the Podman socket"

// PodmanSockets are the sockets tried, in order, when nothing chose an
// engine and DefaultHost does not answer: rootless Podman's
// ($XDG_RUNTIME_DIR/podman/podman.sock), then rootful Podman's.
func PodmanSockets(getenv func(string) string) []string {
	var out []string
	if d := getenv("XDG_RUNTIME_DIR"); filepath.IsAbs(d) {
		out = append(out, "unix://"+filepath.Join(d, "podman", "podman.sock"))
	}
	return append(out, "unix://"+rootfulPodmanSocket)
}

// rootfulPodmanSocket is where `podman system service` (and podman.socket)
// listens when run as root; a variable so that tests can move it.
var rootfulPodmanSocket = "/run/podman/podman.sock"

// currentContext reads currentContext from the docker CLI's config.json; a
// missing file means none.
func currentContext(file string) (string, error) {
	data, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("cannot read the docker CLI config %s: %w", file, err)
	}
	var cfg struct {
		CurrentContext string `json:"currentContext"`
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		return "", fmt.Errorf("the docker CLI config %s is not valid JSON: %v (fix or remove it)", file, err)
	}
	return cfg.CurrentContext, nil
}

// contextDirName is how the docker CLI names a context's directories: the
// hex sha256 of the context name.
func contextDirName(name string) string {
	sum := sha256.Sum256([]byte(name))
	return hex.EncodeToString(sum[:])
}

func readContext(cfgDir, name, from string) (Endpoint, error) {
	id := contextDirName(name)
	metaFile := filepath.Join(cfgDir, "contexts", "meta", id, "meta.json")
	data, err := os.ReadFile(metaFile)
	if errors.Is(err, fs.ErrNotExist) {
		return Endpoint{}, &ContextError{Name: name, From: from, Msg: "does not exist: run `docker context ls`, then `docker context use NAME`"}
	}
	if err != nil {
		return Endpoint{}, &ContextError{Name: name, From: from, Msg: "cannot be read: " + err.Error()}
	}
	var meta struct {
		Name      string
		Endpoints map[string]struct {
			Host          string
			SkipTLSVerify bool
		}
	}
	if err := json.Unmarshal(data, &meta); err != nil {
		return Endpoint{}, &ContextError{Name: name, From: from, Msg: "has a meta.json that is not valid JSON (" + metaFile + ")"}
	}
	docker, ok := meta.Endpoints["docker"]
	if !ok || docker.Host == "" {
		return Endpoint{}, &ContextError{Name: name, From: from, Msg: "has no docker endpoint: run `docker context inspect " + name + "`"}
	}
	ep := Endpoint{Host: docker.Host, Context: name, From: from, SkipTLSVerify: docker.SkipTLSVerify}
	tlsDir := filepath.Join(cfgDir, "contexts", "tls", id, "docker")
	for file, dst := range map[string]*string{"ca.pem": &ep.CAFile, "cert.pem": &ep.CertFile, "key.pem": &ep.KeyFile} {
		if p := filepath.Join(tlsDir, file); isFile(p) {
			*dst = p
			ep.TLS = true
		}
	}
	if docker.SkipTLSVerify && strings.HasPrefix(docker.Host, "tcp://") {
		ep.TLS = true
	}
	return ep, nil
}

// envTLS applies DOCKER_TLS_VERIFY and DOCKER_CERT_PATH as the docker CLI
// does for the default context.
func envTLS(ep *Endpoint, getenv func(string) string, home string) {
	verify := getenv("DOCKER_TLS_VERIFY") != ""
	certPath := getenv("DOCKER_CERT_PATH")
	if !verify && certPath == "" {
		return
	}
	if certPath == "" {
		certPath = filepath.Join(home, ".docker")
	}
	ep.TLS = true
	ep.SkipTLSVerify = !verify
	for file, dst := range map[string]*string{"ca.pem": &ep.CAFile, "cert.pem": &ep.CertFile, "key.pem": &ep.KeyFile} {
		if p := filepath.Join(certPath, file); isFile(p) {
			*dst = p
		}
	}
}

func isFile(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}
