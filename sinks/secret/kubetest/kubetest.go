// Package kubetest starts a private, real kube-apiserver (with its etcd) on
// loopback for tests: the binaries scripts/k8s-env.sh builds from the Go
// module proxy, PKI made here, a static admin token, RBAC on. There is no
// kubelet, controller manager or scheduler: Secrets, RBAC, server-side
// apply and dry-run work; pods never run.
//
// One server per test package: the package's TestMain calls Main, tests
// call Require, which starts the server on first use. Tests isolate
// themselves with a namespace each (Namespace).
package kubetest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mc-broker/mc-broker/sinks/secret/kube"
)

// Versions: keep in step with scripts/k8s-env.sh, which builds them into
// $MC_BROKER_CACHE/k8s-<Kubernetes>-etcd-<Etcd>/bin.
const (
	Kubernetes = "v1.37.2"
	Etcd       = "v3.7.0"
)

// BinDir finds kube-apiserver and etcd: $KUBEBUILDER_ASSETS (what make test
// sets from scripts/k8s-env.sh), else the script's default cache.
func BinDir() (string, error) {
	var tried []string
	var dirs []string
	if d := os.Getenv("KUBEBUILDER_ASSETS"); d != "" {
		dirs = append(dirs, d)
	}
	sub := "k8s-" + Kubernetes + "-etcd-" + Etcd + "/bin"
	if c := os.Getenv("MC_BROKER_CACHE"); c != "" {
		dirs = append(dirs, filepath.Join(c, sub))
	}
	dirs = append(dirs, filepath.Join("/var/cache/mc-broker", sub))
	if home, err := os.UserHomeDir(); err == nil {
		dirs = append(dirs, filepath.Join(home, ".cache/mc-broker", sub))
	}
	for _, d := range dirs {
		if isExec(filepath.Join(d, "kube-apiserver")) && isExec(filepath.Join(d, "etcd")) {
			return d, nil
		}
		tried = append(tried, d)
	}
	return "", fmt.Errorf("no kube-apiserver and etcd in %s: run scripts/k8s-env.sh (make test does)", strings.Join(tried, ", "))
}

func isExec(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}

// Server is a running etcd + kube-apiserver.
type Server struct {
	// Dir holds the PKI, the etcd data, the logs and Kubeconfig.
	Dir string
	// URL is the API server's https URL on 127.0.0.1.
	URL string
	// Kubeconfig is an admin kubeconfig (system:masters, by static token).
	Kubeconfig string
	// CA is the PEM the server's certificate chains to.
	CA []byte

	token     string
	etcd, api *exec.Cmd
	done      map[*exec.Cmd]chan struct{}
	nsSeq     atomic.Int64
	client    *kube.Client
}

// Start builds the PKI in a temporary directory and starts etcd and
// kube-apiserver on free loopback ports, returning once /readyz answers.
// A port taken by another process between being found free and being
// bound makes it try again (three times in all).
func Start(ctx context.Context) (s *Server, err error) {
	for range 3 {
		if s, err = start(ctx); err == nil || ctx.Err() != nil {
			return s, err
		}
		if !strings.Contains(err.Error(), "address already in use") {
			return nil, err
		}
	}
	return nil, err
}

func start(ctx context.Context) (*Server, error) {
	bin, err := BinDir()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "mc-broker-kubetest-")
	if err != nil {
		return nil, err
	}
	s := &Server{Dir: dir, done: map[*exec.Cmd]chan struct{}{}}
	ok := false
	defer func() {
		if !ok {
			s.Stop()
		}
	}()
	if err := s.writePKI(); err != nil {
		return nil, err
	}
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	etcdClient := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	etcdPeer := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	s.etcd, err = s.start(filepath.Join(bin, "etcd"), "etcd.log",
		"--name=kubetest", "--data-dir="+filepath.Join(dir, "etcd"),
		"--listen-client-urls="+etcdClient, "--advertise-client-urls="+etcdClient,
		"--listen-peer-urls="+etcdPeer, "--initial-advertise-peer-urls="+etcdPeer,
		"--initial-cluster=kubetest="+etcdPeer, "--listen-metrics-urls=",
		"--log-level=warn")
	if err != nil {
		return nil, err
	}
	if err := s.waitFor(ctx, s.etcd, "etcd", etcdClient+"/health", nil); err != nil {
		return nil, err
	}
	p := func(name string) string { return filepath.Join(dir, name) }
	s.URL = fmt.Sprintf("https://127.0.0.1:%d", ports[2])
	s.api, err = s.start(filepath.Join(bin, "kube-apiserver"), "apiserver.log",
		"--etcd-servers="+etcdClient,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", ports[2]),
		"--tls-cert-file="+p("apiserver.crt"), "--tls-private-key-file="+p("apiserver.key"),
		"--client-ca-file="+p("ca.crt"),
		"--service-account-key-file="+p("sa.pub"), "--service-account-signing-key-file="+p("sa.key"),
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--token-auth-file="+p("tokens.csv"), "--authorization-mode=RBAC",
		"--service-cluster-ip-range=10.0.0.0/24",
		// A loopback advertise address cannot be reconciled into the
		// kubernetes Service's endpoints; nothing here needs them.
		"--endpoint-reconciler-type=none",
		"--cert-dir="+p("apiserver-certs"), "--v=1")
	if err != nil {
		return nil, err
	}
	if err := s.waitFor(ctx, s.api, "kube-apiserver", s.URL+"/readyz", s.CA); err != nil {
		return nil, err
	}
	s.Kubeconfig = p("kubeconfig")
	if err := s.WriteKubeconfig(s.Kubeconfig, s.token); err != nil {
		return nil, err
	}
	cfg, err := kube.Load(kube.LoadOptions{Kubeconfig: s.Kubeconfig})
	if err != nil {
		return nil, err
	}
	if s.client, err = kube.NewClient(cfg); err != nil {
		return nil, err
	}
	ok = true
	return s, nil
}

// Admin is a client with every right.
func (s *Server) Admin() *kube.Client { return s.client }

// AdminToken is the static token of the admin user (system:masters).
func (s *Server) AdminToken() string { return s.token }

// WriteKubeconfig writes a kubeconfig for this server that authenticates
// with token (context "kubetest").
func (s *Server) WriteKubeconfig(path, token string) error {
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: kubetest
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: user
  user:
    token: %s
contexts:
- name: kubetest
  context: {cluster: kubetest, user: user}
current-context: kubetest
`, s.URL, filepath.Join(s.Dir, "ca.crt"), token)
	return os.WriteFile(path, []byte(kc), 0o600)
}

// Namespace creates a namespace of its own for one test.
func (s *Server) Namespace(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("t%d-%s", s.nsSeq.Add(1), strings.ToLower(hex.EncodeToString(randBytes(3))))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.client.CreateNamespace(ctx, name); err != nil {
		t.Fatalf("create namespace %s: %v", name, err)
	}
	return name
}

// ServiceAccountToken creates service account sa in namespace (when
// missing) and returns a token for it from the TokenRequest API: what a
// pod's projected token holds.
func (s *Server) ServiceAccountToken(ctx context.Context, namespace, sa string) (string, error) {
	body := fmt.Sprintf(`{"apiVersion":"v1","kind":"ServiceAccount","metadata":{"name":%q,"namespace":%q}}`, sa, namespace)
	if _, err := s.client.Create(ctx, []byte(body), false); err != nil && !kube.IsAlreadyExists(err) {
		return "", err
	}
	out, err := s.client.Do(ctx, kube.Request{
		Method: http.MethodPost,
		Path:   "/api/v1/namespaces/" + namespace + "/serviceaccounts/" + sa + "/token",
		Body:   []byte(`{"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","spec":{"expirationSeconds":3600}}`),
	})
	if err != nil {
		return "", err
	}
	var tr struct {
		Status struct {
			Token string `json:"token"`
		} `json:"status"`
	}
	if err := json.Unmarshal(out, &tr); err != nil || tr.Status.Token == "" {
		return "", errors.New("TokenRequest returned no token")
	}
	return tr.Status.Token, nil
}

// Stop ends both processes (SIGTERM, then SIGKILL after 10 s) and removes
// Dir.
func (s *Server) Stop() {
	for _, c := range []*exec.Cmd{s.api, s.etcd} {
		if c == nil || c.Process == nil {
			continue
		}
		_ = c.Process.Signal(os.Interrupt)
		select {
		case <-s.done[c]:
		case <-time.After(10 * time.Second):
			_ = c.Process.Kill()
			<-s.done[c]
		}
	}
	if s.client != nil {
		s.client.Close()
	}
	os.RemoveAll(s.Dir)
}

func (s *Server) start(bin, log string, args ...string) (*exec.Cmd, error) {
	f, err := os.Create(filepath.Join(s.Dir, log))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, err
	}
	done := make(chan struct{})
	s.done[cmd] = done
	go func() {
		_ = cmd.Wait()
		f.Close()
		close(done)
	}()
	return cmd, nil
}

// waitFor polls url (every 50 ms, up to 60 s) until it answers 200.
func (s *Server) waitFor(ctx context.Context, cmd *exec.Cmd, name, url string, ca []byte) error {
	tr := &http.Transport{}
	if ca != nil {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(ca)
		tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	}
	hc := &http.Client{Transport: tr, Timeout: 2 * time.Second}
	defer tr.CloseIdleConnections()
	deadline := time.Now().Add(60 * time.Second)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if s.token != "" {
			req.Header.Set("Authorization", "Bearer "+s.token)
		}
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-s.done[cmd]:
			return fmt.Errorf("%s exited during start-up:\n%s", name, s.logTail(name))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after 60 s:\n%s", name, s.logTail(name))
		}
	}
}

func (s *Server) logTail(name string) string {
	log := "etcd.log"
	if name != "etcd" {
		log = "apiserver.log"
	}
	data, _ := os.ReadFile(filepath.Join(s.Dir, log))
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return strings.Join(lines, "\n")
}

func freePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// writePKI writes a CA, the API server's serving certificate for
// 127.0.0.1, the service account signing key pair and the static token
// file into Dir.
func (s *Server) writePKI() error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "mc-broker-kubetest-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "kube-apiserver"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.0.0.1")},
		DNSNames:     []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"},
	}, ca, &srvKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	s.CA = pemBlock("CERTIFICATE", caDER)
	s.token = hex.EncodeToString(randBytes(16))
	files := map[string][]byte{
		"ca.crt":        s.CA,
		"apiserver.crt": pemBlock("CERTIFICATE", srvDER),
		"tokens.csv":    []byte(s.token + ",admin,admin,system:masters\n"),
	}
	if files["apiserver.key"], err = ecKeyPEM(srvKey); err != nil {
		return err
	}
	if files["sa.key"], err = ecKeyPEM(saKey); err != nil {
		return err
	}
	pub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return err
	}
	files["sa.pub"] = pemBlock("PUBLIC KEY", pub)
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(s.Dir, name), data, 0o600); err != nil {
			return err
		}
	}
	return nil
}

func ecKeyPEM(k *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		return nil, err
	}
	return pemBlock("EC PRIVATE KEY", der), nil
}

func pemBlock(typ string, der []byte) []byte {
	var b bytes.Buffer
	_ = pem.Encode(&b, &pem.Block{Type: typ, Bytes: der})
	return b.Bytes()
}

var (
	shared     *Server
	sharedErr  error
	sharedOnce sync.Once
)

// Main runs a package's tests and stops the shared server afterwards. Use
// it as TestMain: func TestMain(m *testing.M) { os.Exit(kubetest.Main(m)) }.
func Main(m *testing.M) int {
	code := m.Run()
	if shared != nil {
		shared.Stop()
	}
	return code
}

// Require returns the package's shared server, starting it on first use.
// Without the binaries the test is skipped, or fails when CI=true.
func Require(t testing.TB) *Server {
	t.Helper()
	sharedOnce.Do(func() {
		if _, err := BinDir(); err != nil {
			sharedErr = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		shared, sharedErr = Start(ctx)
	})
	if sharedErr != nil {
		if _, missing := BinDir(); missing != nil && os.Getenv("CI") != "true" {
			t.Skipf("no real API server: %v", sharedErr)
		}
		t.Fatalf("real API server: %v", sharedErr)
	}
	return shared
}

// Context is a test's context for calls to the server: it ends when the
// test does, or after a minute, so that an API call that hangs fails the
// test rather than holding it until go test's own timeout.
func Context(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// New starts a server of the test's own, stopped when the test ends; for
// packages whose TestMain does not call Main. Without the binaries the
// test is skipped, or fails when CI=true.
func New(t testing.TB) *Server {
	t.Helper()
	if _, err := BinDir(); err != nil {
		if os.Getenv("CI") != "true" {
			t.Skipf("no real API server: %v", err)
		}
		t.Fatalf("real API server: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := Start(ctx)
	if err != nil {
		t.Fatalf("real API server: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}
