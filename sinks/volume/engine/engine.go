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
	"os"
	"strings"
	"sync"
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
	if e.PermissionDenied() {
		return "permission denied on the docker socket " + e.Host + ": add your user to the docker group (then log in again), or run as a user that may use Docker"
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
	ep, err := Resolve(getenv, home)
	if err != nil {
		return nil, err
	}
	return Dial(ctx, ep)
}

// Dial connects to ep and pings it.
func Dial(ctx context.Context, ep Endpoint) (*Engine, error) {
	c, err := newClient(ep)
	if err != nil {
		return nil, err
	}
	e := &Engine{Endpoint: ep, client: c}
	if err := e.Ping(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return e, nil
}

func newClient(ep Endpoint) (*client.Client, error) {
	proto, addr, ok := strings.Cut(ep.Host, "://")
	if !ok || addr == "" {
		return nil, fmt.Errorf("docker host %q (from %s) is not an address like unix:///var/run/docker.sock or tcp://host:2376", ep.Host, ep.From)
	}
	switch proto {
	case "unix", "tcp":
	case "ssh":
		return nil, fmt.Errorf("docker host %s (from %s): ssh:// engines are not supported; forward the socket (ssh -L /tmp/docker.sock:/var/run/docker.sock HOST) and set DOCKER_HOST=unix:///tmp/docker.sock", ep.Host, ep.From)
	default:
		return nil, fmt.Errorf("docker host %s (from %s): only unix:// and tcp:// engines are supported", ep.Host, ep.From)
	}
	tr := &http.Transport{}
	if ep.TLS {
		cfg, err := tlsConfig(ep)
		if err != nil {
			return nil, err
		}
		tr.TLSClientConfig = cfg
	}
	if proto == "tcp" {
		if host, _, ok := strings.Cut(addr, "/"); ok {
			addr = host
		}
	}
	d := &net.Dialer{Timeout: DialTimeout}
	opts := []client.Opt{
		client.WithHTTPClient(&http.Client{Transport: tr}),
		client.WithHost(ep.Host),
		// After WithHost, which installs a dialer without our timeout.
		client.WithDialContext(func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, proto, addr)
		}),
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
		return nil, fmt.Errorf("docker host %s (from %s): %w", ep.Host, ep.From, err)
	}
	return c, nil
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
	ctx, cancel := context.WithTimeout(ctx, PingTimeout)
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
		if client.IsErrConnectionFailed(err) || errors.Is(err, context.DeadlineExceeded) {
			return &UnreachableError{Host: e.Endpoint.Host, From: e.Endpoint.From, Err: err}
		}
		return fmt.Errorf("docker engine at %s: %w", e.Endpoint.Host, err)
	}
	e.APIVersion = e.client.ClientVersion()
	return nil
}

func (e *Engine) dial(ctx context.Context) error {
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

// Endpoint resolves where the engine is without connecting.
func (l *Lazy) Endpoint() (Endpoint, error) { return Resolve(l.getenv, l.home) }

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
	e, err := Connect(ctx, l.getenv, l.home)
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
