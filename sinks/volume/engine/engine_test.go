package engine_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io/fs"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/mc-broker/mc-broker/broker/testenv"
	"github.com/mc-broker/mc-broker/sinks/volume/engine"
)

func envOf(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

// dockerCLI runs the real docker client against the config directory cfg,
// so that context files are exactly what users have.
func dockerCLI(t *testing.T, cfg string, args ...string) {
	t.Helper()
	if _, err := exec.LookPath("docker"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI=true and no docker client")
		}
		t.Skip("no docker client to create context files")
	}
	cmd := exec.Command("docker", args...)
	cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+cfg)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("docker %v: %v\n%s", args, err, out)
	}
}

func TestResolveFollowsTheDockerCLIsOrder(t *testing.T) {
	home := t.TempDir()
	cfg := filepath.Join(home, ".docker")
	dockerCLI(t, cfg, "context", "create", "desk", "--docker", "host=unix:///Users/dev/.docker/run/docker.sock")
	dockerCLI(t, cfg, "context", "create", "colima", "--docker", "host=unix:///Users/dev/.colima/default/docker.sock")
	dockerCLI(t, cfg, "context", "use", "desk")

	tests := []struct {
		name       string
		env        map[string]string
		host, from string
	}{
		{"DOCKER_HOST first", map[string]string{"DOCKER_HOST": "tcp://10.0.0.5:2375", "DOCKER_CONTEXT": "colima"}, "tcp://10.0.0.5:2375", "DOCKER_HOST"},
		{"DOCKER_CONTEXT over currentContext", map[string]string{"DOCKER_CONTEXT": "colima"}, "unix:///Users/dev/.colima/default/docker.sock", "DOCKER_CONTEXT"},
		{"currentContext", nil, "unix:///Users/dev/.docker/run/docker.sock", "currentContext in " + filepath.Join(cfg, "config.json")},
		{"DOCKER_CONTEXT=default", map[string]string{"DOCKER_CONTEXT": "default"}, engine.DefaultHost, "default"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ep, err := engine.Resolve(envOf(tt.env), home)
			if err != nil {
				t.Fatal(err)
			}
			if ep.Host != tt.host || ep.From != tt.from || ep.TLS {
				t.Errorf("got %+v, want host %s from %s", ep, tt.host, tt.from)
			}
		})
	}

	// DOCKER_CONFIG moves the whole directory.
	moved := t.TempDir()
	dockerCLI(t, moved, "context", "create", "remote", "--docker", "host=tcp://build.example:2376,skip-tls-verify=true")
	dockerCLI(t, moved, "context", "use", "remote")
	ep, err := engine.Resolve(envOf(map[string]string{"DOCKER_CONFIG": moved}), home)
	if err != nil || ep.Host != "tcp://build.example:2376" || !ep.TLS || !ep.SkipTLSVerify {
		t.Errorf("DOCKER_CONFIG: %+v %v", ep, err)
	}

	// Nothing at all: the default socket.
	ep, err = engine.Resolve(envOf(nil), t.TempDir())
	if err != nil || ep.Host != engine.DefaultHost || ep.From != "default" {
		t.Errorf("no config: %+v %v", ep, err)
	}
}

func TestResolveContextTLSMaterial(t *testing.T) {
	home := t.TempDir()
	cfg := filepath.Join(home, ".docker")
	certs := writeCerts(t)
	dockerCLI(t, cfg, "context", "create", "tls", "--docker",
		"host=tcp://127.0.0.1:2376,ca="+certs+"/ca.pem,cert="+certs+"/cert.pem,key="+certs+"/key.pem")
	ep, err := engine.Resolve(envOf(map[string]string{"DOCKER_CONTEXT": "tls"}), home)
	if err != nil {
		t.Fatal(err)
	}
	if !ep.TLS || ep.SkipTLSVerify || ep.CAFile == "" || ep.CertFile == "" || ep.KeyFile == "" {
		t.Fatalf("TLS material not found: %+v", ep)
	}
	for _, f := range []string{ep.CAFile, ep.CertFile, ep.KeyFile} {
		if !strings.HasPrefix(f, filepath.Join(cfg, "contexts", "tls")) {
			t.Errorf("%s is not the context's own copy", f)
		}
	}
	// The material loads: a TLS engine that is not there is unreachable,
	// not a certificate error.
	_, err = engine.Dial(context.Background(), engine.Endpoint{Host: "tcp://127.0.0.1:1", TLS: true, CAFile: ep.CAFile, CertFile: ep.CertFile, KeyFile: ep.KeyFile, From: "test"})
	var ue *engine.UnreachableError
	if !errors.As(err, &ue) {
		t.Errorf("Dial = %v, want unreachable", err)
	}
}

func TestResolveErrorsSayWhatToDo(t *testing.T) {
	home := t.TempDir()
	_, err := engine.Resolve(envOf(map[string]string{"DOCKER_CONTEXT": "nope"}), home)
	var ce *engine.ContextError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "docker context use") {
		t.Errorf("missing context: %v", err)
	}
	os.MkdirAll(filepath.Join(home, ".docker"), 0o700)
	os.WriteFile(filepath.Join(home, ".docker", "config.json"), []byte("{"), 0o600)
	if _, err := engine.Resolve(envOf(nil), home); err == nil || !strings.Contains(err.Error(), "not valid JSON") {
		t.Errorf("broken config.json: %v", err)
	}
	for host, want := range map[string]string{
		"ssh://me:secret@box":    "never a password",
		"ssh://me@box?x=1":       "query or fragment",
		"ssh://-oProxyCommand=x": "starting with '-'",
		"npipe:////./pp":         "only unix://, tcp:// and ssh://",
		"/var/run/x":             "not an address",
	} {
		_, err := engine.Connect(context.Background(), envOf(map[string]string{"DOCKER_HOST": host}), home)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("DOCKER_HOST=%s: %v", host, err)
		}
	}
}

func TestConnectRealEngineThroughAContext(t *testing.T) {
	if _, err := os.Stat("/var/run/docker.sock"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI=true and no /var/run/docker.sock")
		}
		t.Skip("no engine at /var/run/docker.sock")
	}
	home := t.TempDir()
	cfg := filepath.Join(home, ".docker")
	dockerCLI(t, cfg, "context", "create", "here", "--docker", "host=unix:///var/run/docker.sock")
	dockerCLI(t, cfg, "context", "use", "here")
	e, err := engine.Connect(context.Background(), envOf(nil), home)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if e.Endpoint.Context != "here" || e.APIVersion == "" {
		t.Errorf("engine %+v", e)
	}
	if _, err := e.Client().Ping(context.Background(), client.PingOptions{}); err != nil {
		t.Errorf("client not usable after Connect: %v", err)
	}
}

func TestUnreachableIsQuickAndClear(t *testing.T) {
	for name, host := range map[string]string{
		"no socket":   "unix://" + filepath.Join(t.TempDir(), "docker.sock"),
		"closed port": "tcp://127.0.0.1:1",
	} {
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			_, err := engine.Connect(context.Background(), envOf(map[string]string{"DOCKER_HOST": host}), t.TempDir())
			var ue *engine.UnreachableError
			if !errors.As(err, &ue) {
				t.Fatalf("got %v, want *UnreachableError", err)
			}
			if err.Error() != "docker engine not reachable at "+host+": is Docker Desktop / colima running?" {
				t.Errorf("message %q", err)
			}
			if errors.Is(err, fs.ErrNotExist) {
				t.Errorf("an unreachable engine must not look like a missing copy")
			}
			if d := time.Since(start); d > engine.PingTimeout {
				t.Errorf("took %v", d)
			}
		})
	}
}

// An engine that accepts the connection and never answers is unreachable
// after PingTimeout, not a hang.
func TestSilentEngineTimesOut(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	start := time.Now()
	_, err = engine.Connect(context.Background(), envOf(map[string]string{"DOCKER_HOST": "tcp://" + ln.Addr().String()}), t.TempDir())
	var ue *engine.UnreachableError
	if !errors.As(err, &ue) {
		t.Fatalf("got %v, want *UnreachableError", err)
	}
	if d := time.Since(start); d > engine.PingTimeout+time.Second {
		t.Errorf("took %v", d)
	}
}

// fakeEngine serves /_ping on a unix socket with the given API version.
func fakeEngine(t *testing.T, apiVersion string) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "engine.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Api-Version", apiVersion)
		w.Header().Set("Ostype", "linux")
		w.Write([]byte("OK"))
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "unix://" + sock
}

func TestEngineTooOldNamesBothVersions(t *testing.T) {
	host := fakeEngine(t, "1.24")
	_, err := engine.Connect(context.Background(), envOf(map[string]string{"DOCKER_HOST": host}), t.TempDir())
	var te *engine.TooOldError
	if !errors.As(err, &te) {
		t.Fatalf("got %v, want *TooOldError", err)
	}
	if !strings.Contains(err.Error(), "API 1.24") || !strings.Contains(err.Error(), engine.MinAPIVersion) || !strings.Contains(err.Error(), "upgrade Docker") {
		t.Errorf("message %q", err)
	}
}

func TestNegotiatesDownToTheEngine(t *testing.T) {
	host := fakeEngine(t, "1.41")
	e, err := engine.Connect(context.Background(), envOf(map[string]string{"DOCKER_HOST": host}), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if e.APIVersion != "1.41" {
		t.Errorf("APIVersion %s, want 1.41", e.APIVersion)
	}
}

func TestPermissionDeniedOnTheSocket(t *testing.T) {
	if testenv.RerunAsNobody(t, "TestPermissionDeniedOnTheSocket") {
		return
	}
	host := fakeEngine(t, "1.41")
	if err := os.Chmod(strings.TrimPrefix(host, "unix://"), 0); err != nil {
		t.Fatal(err)
	}
	_, err := engine.Connect(context.Background(), envOf(map[string]string{"DOCKER_HOST": host}), t.TempDir())
	var ue *engine.UnreachableError
	if !errors.As(err, &ue) || !ue.PermissionDenied() || !strings.Contains(err.Error(), "docker group") {
		t.Errorf("got %v, want permission denied with a hint", err)
	}
}

func TestLazyConnectsOnceAndRemembersFailures(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "engine.sock")
	l := engine.NewLazy(envOf(map[string]string{"DOCKER_HOST": "unix://" + sock}), t.TempDir())
	l.RetryAfter = time.Hour
	if _, err := l.Engine(context.Background()); err == nil {
		t.Fatal("connected to nothing")
	}
	// The engine appears, but the failure is remembered for RetryAfter.
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Api-Version", "1.41")
	})}
	go srv.Serve(ln)
	defer srv.Close()
	if _, err := l.Engine(context.Background()); err == nil {
		t.Error("failure not remembered")
	}
	l.RetryAfter = time.Nanosecond
	e1, err := l.Engine(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	e2, _ := l.Engine(context.Background())
	if e1 != e2 {
		t.Error("second call connected again")
	}
	l.Forget(e1)
	if e3, err := l.Engine(context.Background()); err != nil || e3 == e1 {
		t.Errorf("after Forget: %v, same=%v", err, e3 == e1)
	}
	l.Close()
}

// writeCerts writes a self-signed CA, certificate and key as PEM files.
func writeCerts(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mc-broker test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	cert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	for name, data := range map[string][]byte{
		"ca.pem": cert, "cert.pem": cert,
		"key.pem": pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}
