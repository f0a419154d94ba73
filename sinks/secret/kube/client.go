package kube

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// MaxResponse bounds what is read of one API response. A Secret holds at
// most 1 MiB of data (base64 in JSON: about 1.4 MiB), plus metadata.
const MaxResponse = 4 << 20

// DefaultTimeout bounds one request (not a watch) when the caller's context
// has no deadline.
const DefaultTimeout = 30 * time.Second

// Client talks to one API server.
type Client struct {
	cfg   *Config
	base  *url.URL
	http  *http.Client
	creds *credentials
}

// NewClient returns a client for cfg. It does not contact the server.
func NewClient(cfg *Config) (*Client, error) {
	base, err := url.Parse(cfg.Server)
	if err != nil || base.Host == "" || (base.Scheme != "https" && base.Scheme != "http") {
		return nil, &ConfigError{From: cfg.From, Msg: fmt.Sprintf("server %q is not an http(s) URL", cfg.Server)}
	}
	tlsCfg := &tls.Config{
		InsecureSkipVerify: cfg.Insecure, //nolint:gosec // the kubeconfig asked for it
		ServerName:         cfg.ServerName,
		MinVersion:         tls.VersionTLS12,
	}
	if len(cfg.CAData) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(cfg.CAData) {
			return nil, &ConfigError{From: cfg.From, Msg: "certificate-authority holds no PEM certificate"}
		}
		tlsCfg.RootCAs = pool
	}
	creds := &credentials{cfg: cfg}
	if len(cfg.CertData) > 0 {
		cert, err := tls.X509KeyPair(cfg.CertData, cfg.KeyData)
		if err != nil {
			return nil, &ConfigError{From: cfg.From, Msg: "client certificate and key do not load: " + err.Error()}
		}
		creds.cert = &cert
	}
	tlsCfg.GetClientCertificate = creds.clientCertificate
	proxy := http.ProxyFromEnvironment
	if cfg.ProxyURL != "" {
		u, err := url.Parse(cfg.ProxyURL)
		if err != nil {
			return nil, &ConfigError{From: cfg.From, Msg: "proxy-url is not a URL"}
		}
		proxy = http.ProxyURL(u)
	}
	tr := &http.Transport{
		Proxy:               proxy,
		TLSClientConfig:     tlsCfg,
		ForceAttemptHTTP2:   true,
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout: 10 * time.Second,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     90 * time.Second,
		// A watch is one long response: ping a connection that has been
		// quiet for 30 s and drop it when the ping goes unanswered, so a
		// dead connection (a laptop that slept, a dropped NAT entry) does
		// not leave a watch waiting forever (client-go does the same).
		HTTP2: &http.HTTP2Config{SendPingTimeout: 30 * time.Second, PingTimeout: 15 * time.Second},
	}
	return &Client{cfg: cfg, base: base, http: &http.Client{Transport: tr}, creds: creds}, nil
}

// Config returns the config the client was made from.
func (c *Client) Config() *Config { return c.cfg }

// Close drops idle connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }

// StatusError is the API server's answer to a failed request (its Status
// object): Code is the HTTP status, Reason the API's (NotFound, Conflict,
// AlreadyExists, Forbidden, Invalid, ...).
type StatusError struct {
	Code    int
	Reason  string
	Message string
}

func (e *StatusError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.Code)
	}
	return "the API server answered " + fmt.Sprint(e.Code) + ": " + msg
}

// IsNotFound, IsConflict, IsAlreadyExists, IsForbidden and IsUnauthorized
// match StatusErrors by HTTP status.
func IsNotFound(err error) bool      { return hasCode(err, http.StatusNotFound) }
func IsConflict(err error) bool      { return hasCode(err, http.StatusConflict) && !IsAlreadyExists(err) }
func IsAlreadyExists(err error) bool { return hasReason(err, "AlreadyExists") }
func IsForbidden(err error) bool     { return hasCode(err, http.StatusForbidden) }
func IsUnauthorized(err error) bool  { return hasCode(err, http.StatusUnauthorized) }

// IsGone matches an expired watch resource version (410, or a watch ERROR
// event with code 410).
func IsGone(err error) bool { return hasCode(err, http.StatusGone) }

func hasCode(err error, code int) bool {
	var se *StatusError
	return errors.As(err, &se) && se.Code == code
}

func hasReason(err error, reason string) bool {
	var se *StatusError
	return errors.As(err, &se) && se.Reason == reason
}

// UnreachableError is a request that got no answer from the server.
type UnreachableError struct {
	Server string
	Err    error
}

func (e *UnreachableError) Error() string {
	return "cannot reach the Kubernetes API at " + e.Server + ": " + e.Err.Error()
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// Request is one API call. Path is absolute (/api/v1/...); Body, when not
// nil, is sent as ContentType (application/json by default).
type Request struct {
	Method      string
	Path        string
	Query       url.Values
	Body        []byte
	ContentType string
}

// Do sends r and returns the response body, at most MaxResponse bytes. A
// non-2xx answer is a *StatusError.
func (c *Client) Do(ctx context.Context, r Request) ([]byte, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	resp, err := c.send(ctx, r)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponse+1))
	if err != nil {
		return nil, &UnreachableError{Server: c.cfg.Server, Err: err}
	}
	if len(body) > MaxResponse {
		return nil, fmt.Errorf("the API server's answer to %s %s is larger than %d bytes", r.Method, r.Path, MaxResponse)
	}
	if resp.StatusCode/100 != 2 {
		return nil, statusError(resp.StatusCode, body)
	}
	return body, nil
}

// send makes the request, authenticating it; an exec plugin's credential
// that the server refuses is fetched again once.
func (c *Client) send(ctx context.Context, r Request) (*http.Response, error) {
	for attempt := 0; ; attempt++ {
		req, err := c.newRequest(ctx, r)
		if err != nil {
			return nil, err
		}
		resp, err := c.http.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, &UnreachableError{Server: c.cfg.Server, Err: unwrapURL(err)}
		}
		if resp.StatusCode == http.StatusUnauthorized && attempt == 0 && c.creds.renewable() {
			resp.Body.Close()
			c.creds.expire()
			continue
		}
		return resp, nil
	}
}

func (c *Client) newRequest(ctx context.Context, r Request) (*http.Request, error) {
	u := *c.base
	u.Path = strings.TrimSuffix(c.base.Path, "/") + r.Path
	u.RawQuery = r.Query.Encode()
	var body io.Reader
	if r.Body != nil {
		body = bytes.NewReader(r.Body)
	}
	req, err := http.NewRequestWithContext(ctx, r.Method, u.String(), body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "mc-broker")
	if r.Body != nil {
		ct := r.ContentType
		if ct == "" {
			ct = "application/json"
		}
		req.Header.Set("Content-Type", ct)
	}
	token, err := c.creds.token(ctx)
	if err != nil {
		return nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return req, nil
}

func unwrapURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// statusError turns a failed answer into a StatusError, keeping only the
// Status object's reason and a bounded message.
func statusError(code int, body []byte) error {
	var st struct {
		Kind    string `json:"kind"`
		Reason  string `json:"reason"`
		Message string `json:"message"`
		Code    int    `json:"code"`
	}
	se := &StatusError{Code: code}
	if json.Unmarshal(body, &st) == nil && st.Kind == "Status" {
		se.Reason, se.Message = st.Reason, st.Message
	}
	if len(se.Message) > 400 {
		se.Message = se.Message[:400] + "..."
	}
	return se
}

// credentials hands out the bearer token and client certificate: fixed,
// re-read from a token file (projected service account tokens rotate), or
// from an exec plugin until they expire.
type credentials struct {
	cfg *Config

	mu        sync.Mutex
	fileToken string
	fileRead  time.Time
	execToken string
	execCert  *tls.Certificate
	execUntil time.Time
	execDone  bool
	cert      *tls.Certificate
}

// tokenFileTTL is how long a token file's content is used before it is read
// again (client-go: one minute).
const tokenFileTTL = time.Minute

func (c *credentials) renewable() bool { return c.cfg.Exec != nil || c.cfg.TokenFile != "" }

func (c *credentials) expire() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.execDone, c.fileRead = false, time.Time{}
}

func (c *credentials) token(ctx context.Context) (string, error) {
	switch {
	case c.cfg.Token != "":
		return c.cfg.Token, nil
	case c.cfg.TokenFile != "":
		c.mu.Lock()
		defer c.mu.Unlock()
		if time.Since(c.fileRead) > tokenFileTTL || c.fileToken == "" {
			data, err := readSmall(c.cfg.TokenFile)
			if err != nil {
				return "", &ConfigError{From: c.cfg.From, Msg: "token file: " + err.Error()}
			}
			c.fileToken, c.fileRead = strings.TrimSpace(string(data)), time.Now()
		}
		return c.fileToken, nil
	case c.cfg.Exec != nil:
		if err := c.runExec(ctx); err != nil {
			return "", err
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.execToken, nil
	}
	return "", nil
}

func (c *credentials) clientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	if c.cert != nil {
		return c.cert, nil
	}
	if c.cfg.Exec != nil {
		if err := c.runExec(context.Background()); err != nil {
			return nil, err
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.execCert != nil {
			return c.execCert, nil
		}
	}
	return &tls.Certificate{}, nil // none: the server may accept a token
}

// ExecError is an exec credential plugin that failed.
type ExecError struct {
	Command string
	Msg     string
	Hint    string
}

func (e *ExecError) Error() string {
	s := "kubeconfig exec plugin " + e.Command + ": " + e.Msg
	if e.Hint != "" {
		s += " (" + e.Hint + ")"
	}
	return s
}

// runExec runs the plugin when there is no unexpired credential from it,
// the way client-go's exec authenticator does (ExecCredential in
// KUBERNETES_EXEC_INFO, answer on stdout).
func (c *credentials) runExec(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.execDone && (c.execUntil.IsZero() || time.Until(c.execUntil) > 10*time.Second) {
		return nil
	}
	e := c.cfg.Exec
	apiVersion := e.APIVersion
	if apiVersion == "" {
		apiVersion = "client.authentication.k8s.io/v1"
	}
	info := map[string]any{
		"apiVersion": apiVersion,
		"kind":       "ExecCredential",
		"spec":       map[string]any{"interactive": false},
	}
	if e.ProvideClusterInfo {
		info["spec"].(map[string]any)["cluster"] = map[string]any{
			"server":                     c.cfg.Server,
			"tls-server-name":            c.cfg.ServerName,
			"insecure-skip-tls-verify":   c.cfg.Insecure,
			"certificate-authority-data": c.cfg.CAData,
		}
	}
	infoJSON, _ := json.Marshal(info)
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.Command, e.Args...)
	cmd.Env = append(os.Environ(), "KUBERNETES_EXEC_INFO="+string(infoJSON))
	for k, v := range e.Env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = os.Stderr // the plugin's own messages, as kubectl shows them
	if err := cmd.Run(); err != nil {
		var ee *exec.Error
		if errors.As(err, &ee) {
			return &ExecError{Command: e.Command, Msg: "not found", Hint: e.InstallHint}
		}
		return &ExecError{Command: e.Command, Msg: err.Error()}
	}
	var out struct {
		Status *struct {
			Token                 string     `json:"token"`
			ClientCertificateData string     `json:"clientCertificateData"`
			ClientKeyData         string     `json:"clientKeyData"`
			ExpirationTimestamp   *time.Time `json:"expirationTimestamp"`
		} `json:"status"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil || out.Status == nil {
		return &ExecError{Command: e.Command, Msg: "did not print an ExecCredential with a status"}
	}
	st := out.Status
	c.execToken, c.execCert, c.execUntil = st.Token, nil, time.Time{}
	if st.ClientCertificateData != "" {
		cert, err := tls.X509KeyPair([]byte(st.ClientCertificateData), []byte(st.ClientKeyData))
		if err != nil {
			return &ExecError{Command: e.Command, Msg: "its client certificate does not load"}
		}
		c.execCert = &cert
	}
	if st.Token == "" && c.execCert == nil {
		return &ExecError{Command: e.Command, Msg: "returned neither a token nor a client certificate"}
	}
	if st.ExpirationTimestamp != nil {
		c.execUntil = *st.ExpirationTimestamp
	}
	c.execDone = true
	return nil
}
