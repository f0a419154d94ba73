package engine

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/moby/moby/client"
	"github.com/moby/moby/client/pkg/versions"
)

// DialTimeout bounds connecting to the engine, and PingTimeout a whole
// ping: an engine that is not there must not make `sync` hang.
const (
	DialTimeout = 2 * time.Second
	PingTimeout = 3 * time.Second
)

// MinAPIVersion is the oldest engine API this client speaks.
const MinAPIVersion = client.MinAPIVersion

// Engine is a connection to a Docker engine that answered a ping.
type Engine struct {
	Endpoint Endpoint
	// APIVersion is the negotiated API version (the lower of the engine's
	// and the client's).
	APIVersion string
	client     *client.Client
	seen       *seen
}

// Podman reports whether the engine is Podman's Docker-compatible service
// (it answers with a Libpod-Api-Version header). Podman differs where it
// matters to volume copies: see sinks/volume.
func (e *Engine) Podman() bool { return e.seen.podman.Load() }

// seen is what the connection learnt on the way: which engine answered,
// and the last thing ssh said when it failed (the API client replaces
// connection errors with a generic message).
type seen struct {
	podman atomic.Bool
	ssh    atomic.Pointer[SSHError]
}

func (s *seen) response(res *http.Response) {
	if res.Header.Get("Libpod-Api-Version") != "" {
		s.podman.Store(true)
	}
}

// Client is the Docker API client, with the API version negotiated.
func (e *Engine) Client() *client.Client { return e.client }

// Close releases idle connections.
func (e *Engine) Close() error { return e.client.Close() }

// UnreachableError is an engine that did not answer: not running, a socket
// that does not exist, permission denied on the socket, a timeout.
type UnreachableError struct {
	Host string
	// From says what chose Host (see Endpoint.From).
	From string
	Err  error
}

// PermissionDenied reports whether the socket exists but this user may not
// use it.
func (e *UnreachableError) PermissionDenied() bool {
	return errors.Is(e.Err, fs.ErrPermission)
}

func (e *UnreachableError) Error() string {
	var se *SSHError
	switch {
	case errors.As(e.Err, &se):
		return "docker engine not reachable at " + e.Host + ": " + se.Msg + " (check that `ssh HOST docker version` works without a prompt)"
	case strings.HasPrefix(e.Host, "ssh://"):
		return "docker engine not reachable at " + e.Host + ": no answer through ssh (check that `ssh HOST docker version` works without a prompt)"
	case e.PermissionDenied():
		return "permission denied on the docker socket " + e.Host + ": add your user to the docker group (then log in again), or run as a user that may use Docker"
	case e.From == FromPodman:
		return "docker engine not reachable at " + e.Host + " (the Podman socket): is `podman system service` (podman.socket) running?"
	}
	return "docker engine not reachable at " + e.Host + ": is Docker Desktop / colima running?"
}

// UnreachableError deliberately has no Unwrap: a missing socket is ENOENT,
// and a caller asking errors.Is(err, fs.ErrNotExist) ("is there no copy?")
// must not mistake a stopped engine for an empty volume.

// TooOldError is an engine whose API is older than this client supports.
type TooOldError struct {
	Host string
	// EngineAPI is the engine's API version; MinAPI the oldest this client
	// speaks.
	EngineAPI, MinAPI string
}

func (e *TooOldError) Error() string {
	return fmt.Sprintf("docker engine at %s speaks API %s, older than %s, the oldest mc-broker supports: upgrade Docker", e.Host, e.EngineAPI, e.MinAPI)
}

// Connect resolves the endpoint (see Resolve), connects and pings it. The
// errors a caller checks with errors.As are *UnreachableError,
// *TooOldError and *ContextError.
func Connect(ctx context.Context, getenv func(string) string, home string) (*Engine, error) {
	return ConnectTo(ctx, Selection{}, getenv, home)
}

// ConnectTo is Connect for the engine sel names. When nothing chose the
// engine (no DOCKER_HOST, no context, no selection) and none answers at the
// default socket, Podman's sockets are tried (PodmanSockets): a Linux user
// with Podman and no Docker needs no setting.
func ConnectTo(ctx context.Context, sel Selection, getenv func(string) string, home string) (*Engine, error) {
	ep, err := ResolveSelection(sel, getenv, home)
	if err != nil {
		return nil, err
	}
	e, err := Dial(ctx, ep)
	var ue *UnreachableError
	if err == nil || ep.From != "default" || !errors.As(err, &ue) {
		return e, err
	}
	for _, host := range PodmanSockets(getenv) {
		if _, serr := os.Stat(strings.TrimPrefix(host, "unix://")); serr != nil {
			continue
		}
		if pe, perr := Dial(ctx, Endpoint{Host: host, Context: "default", From: FromPodman}); perr == nil {
			return pe, nil
		}
	}
	return nil, err
}

// Dial connects to ep and pings it.
func Dial(ctx context.Context, ep Endpoint) (*Engine, error) {
	c, obs, err := newClient(ep)
	if err != nil {
		return nil, err
	}
	e := &Engine{Endpoint: ep, client: c, seen: obs}
	if err := e.Ping(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return e, nil
}

// CheckHost reports whether host is an engine address mc-broker can use:
// unix:///path, tcp://host:port or ssh://[user@]host[:port][/socket]. The
// config checks `engine:` with it.
func CheckHost(host string) error {
	proto, addr, ok := strings.Cut(host, "://")
	if !ok || addr == "" {
		return fmt.Errorf("%q is not an address like unix:///var/run/docker.sock, tcp://host:2376 or ssh://user@host", host)
	}
	switch proto {
	case "unix", "tcp":
		return nil
	case "ssh":
		if _, err := parseSSH(host); err != nil {
			return fmt.Errorf("%s %v", redact(host), err)
		}
		return nil
	}
	return fmt.Errorf("%s: only unix://, tcp:// and ssh:// engines are supported", host)
}

// redact hides a password in an address, for messages.
func redact(host string) string {
	if u, err := url.Parse(host); err == nil {
		return u.Redacted()
	}
	return "the address"
}

func newClient(ep Endpoint) (*client.Client, *seen, error) {
	if err := CheckHost(ep.Host); err != nil {
		return nil, nil, fmt.Errorf("docker host (from %s): %v", ep.From, err)
	}
	proto, addr, _ := strings.Cut(ep.Host, "://")
	tr := &http.Transport{}
	if ep.TLS {
		cfg, err := tlsConfig(ep)
		if err != nil {
			return nil, nil, err
		}
		tr.TLSClientConfig = cfg
	}
	if proto == "tcp" {
		if host, _, ok := strings.Cut(addr, "/"); ok {
			addr = host
		}
	}
	d := &net.Dialer{Timeout: DialTimeout}
	dial := func(ctx context.Context, _, _ string) (net.Conn, error) {
		return d.DialContext(ctx, proto, addr)
	}
	host := ep.Host
	obs := &seen{}
	if proto == "ssh" {
		sp, _ := parseSSH(ep.Host)
		dial = func(ctx context.Context, _, _ string) (net.Conn, error) { return dialSSH(ctx, sp, &obs.ssh) }
		// The client needs an address of its own kind; every connection
		// goes through ssh whatever it says.
		host = "tcp://docker.invalid"
	}
	opts := []client.Opt{
		client.WithHTTPClient(&http.Client{Transport: tr}),
		client.WithHTTPResponseHook(obs.response),
		client.WithHost(host),
		// After WithHost, which installs a dialer without our timeout.
		client.WithDialContext(dial),
		client.WithUserAgent("mc-broker"),
	}
	// Set the scheme outright: the client guesses it from the transport,
	// and a cloned transport can look like TLS when it is not.
	scheme := "http"
	if ep.TLS {
		scheme = "https"
	}
	opts = append(opts, client.WithScheme(scheme))
	c, err := client.New(opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("docker host %s (from %s): %w", ep.Host, ep.From, err)
	}
	return c, obs, nil
}

func tlsConfig(ep Endpoint) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: ep.SkipTLSVerify}
	if ep.CAFile != "" && !ep.SkipTLSVerify {
		pem, err := os.ReadFile(ep.CAFile)
		if err != nil {
			return nil, fmt.Errorf("docker TLS CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("docker TLS CA %s holds no PEM certificate", ep.CAFile)
		}
		cfg.RootCAs = pool
	}
	if ep.CertFile != "" && ep.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(ep.CertFile, ep.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("docker TLS client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// Ping checks that the engine answers within PingTimeout and speaks an API
// this client supports, and settles the API version used from then on.
func (e *Engine) Ping(ctx context.Context) error {
	timeout := PingTimeout
	if e.SSH() {
		timeout = SSHPingTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// Dial first: the client's own errors drop the errno (permission
	// denied, no such file), which is what tells the user what to do.
	if err := e.dial(ctx); err != nil {
		return &UnreachableError{Host: e.Endpoint.Host, From: e.Endpoint.From, Err: err}
	}
	res, err := e.client.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true})
	if res.APIVersion != "" && versions.LessThan(res.APIVersion, MinAPIVersion) {
		return &TooOldError{Host: e.Endpoint.Host, EngineAPI: res.APIVersion, MinAPI: MinAPIVersion}
	}
	if err != nil {
		if e.SSH() {
			return &UnreachableError{Host: e.Endpoint.Host, From: e.Endpoint.From, Err: e.SSHFailure(err)}
		}
		if client.IsErrConnectionFailed(err) || errors.Is(err, context.DeadlineExceeded) {
			return &UnreachableError{Host: e.Endpoint.Host, From: e.Endpoint.From, Err: err}
		}
		return fmt.Errorf("docker engine at %s: %w", e.Endpoint.Host, err)
	}
	e.APIVersion = e.client.ClientVersion()
	return nil
}

// SSHFailure is what ssh last said when a connection failed (an
// *SSHError), else err.
func (e *Engine) SSHFailure(err error) error {
	if se := e.seen.ssh.Load(); se != nil {
		return se
	}
	return err
}

// SSH reports whether the engine is reached through ssh.
func (e *Engine) SSH() bool { return strings.HasPrefix(e.Endpoint.Host, "ssh://") }

func (e *Engine) dial(ctx context.Context) error {
	if e.SSH() {
		return nil // each connection is an ssh process; the ping says it all
	}
	proto, addr, _ := strings.Cut(e.Endpoint.Host, "://")
	if proto == "tcp" {
		addr, _, _ = strings.Cut(addr, "/")
	}
	d := &net.Dialer{Timeout: DialTimeout}
	conn, err := d.DialContext(ctx, proto, addr)
	if err != nil {
		var errno syscall.Errno
		if errors.As(err, &errno) && (errno == syscall.EACCES || errno == syscall.EPERM) {
			return fmt.Errorf("%w: %v", fs.ErrPermission, err)
		}
		return err
	}
	return conn.Close()
}

// Lazy is an engine connection made on first use and shared by everything
// in one run (all volume copies, doctor): Connect runs at most once at a
// time, a success is kept, and a failure is kept for RetryAfter so that N
// copies against a missing engine cost one timeout, not N.
type Lazy struct {
	getenv func(string) string
	home   string
	sel    Selection
	// RetryAfter is how long a failed connect is remembered (default 5 s);
	// a long-running watcher then reconnects once the engine is back.
	RetryAfter time.Duration

	mu       sync.Mutex
	engine   *Engine
	err      error
	failedAt time.Time
}

// NewLazy returns a handle that connects with Connect(ctx, getenv, home).
func NewLazy(getenv func(string) string, home string) *Lazy {
	return &Lazy{getenv: getenv, home: home}
}

// For returns a new handle, with the same environment, for the engine sel
// names (l itself when sel is l's).
func (l *Lazy) For(sel Selection) *Lazy {
	if sel == l.sel {
		return l
	}
	return &Lazy{getenv: l.getenv, home: l.home, sel: sel, RetryAfter: l.RetryAfter}
}

// Selection is the engine this handle connects to.
func (l *Lazy) Selection() Selection { return l.sel }

// Endpoint resolves where the engine is without connecting.
func (l *Lazy) Endpoint() (Endpoint, error) { return ResolveSelection(l.sel, l.getenv, l.home) }

// Engine returns the connected engine, connecting if needed.
func (l *Lazy) Engine(ctx context.Context) (*Engine, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.engine != nil {
		return l.engine, nil
	}
	retry := l.RetryAfter
	if retry == 0 {
		retry = 5 * time.Second
	}
	if l.err != nil && time.Since(l.failedAt) < retry {
		return nil, l.err
	}
	e, err := ConnectTo(ctx, l.sel, l.getenv, l.home)
	if err != nil {
		l.err, l.failedAt = err, time.Now()
		return nil, err
	}
	l.engine, l.err = e, nil
	return e, nil
}

// Forget drops a connection that stopped working, so that the next Engine
// call connects again (the engine was restarted, Docker Desktop quit).
func (l *Lazy) Forget(e *Engine) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.engine == e && e != nil {
		l.engine = nil
		e.Close()
	}
}

// Close releases the connection, if any.
func (l *Lazy) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.engine != nil {
		err := l.engine.Close()
		l.engine = nil
		return err
	}
	return nil
}
