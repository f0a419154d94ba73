package kube_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mc-broker/mc-broker/sinks/secret/kube"
)

func write(t *testing.T, path, content string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

const twoContexts = `apiVersion: v1
kind: Config
current-context: dev
clusters:
- name: dev
  cluster:
    server: https://dev.example:6443
    certificate-authority: certs/ca.pem
- name: prod
  cluster:
    server: https://prod.example
    certificate-authority-data: ` + "Zm9v" + `
    tls-server-name: api.prod
users:
- name: dev
  user:
    tokenFile: dev.token
- name: prod
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1
      command: ./bin/get-token
      args: [--cluster, prod]
      env: [{name: REGION, value: eu}]
contexts:
- name: dev
  context: {cluster: dev, user: dev, namespace: agents}
- name: prod
  context: {cluster: prod, user: prod}
`

func TestLoadResolvesContextAndRelativePaths(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "certs/ca.pem"), "CA PEM")
	kc := write(t, filepath.Join(dir, "kubeconfig"), twoContexts)

	cfg, err := kube.Load(kube.LoadOptions{Kubeconfig: kc, Getenv: env(nil)})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Server != "https://dev.example:6443" || string(cfg.CAData) != "CA PEM" || cfg.Namespace != "agents" {
		t.Errorf("dev context: server %q, CA %q, namespace %q", cfg.Server, cfg.CAData, cfg.Namespace)
	}
	if cfg.TokenFile != filepath.Join(dir, "dev.token") {
		t.Errorf("tokenFile %q is not resolved against the kubeconfig's directory", cfg.TokenFile)
	}

	cfg, err = kube.Load(kube.LoadOptions{Kubeconfig: kc, Context: "prod", Getenv: env(nil)})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Server != "https://prod.example" || string(cfg.CAData) != "foo" || cfg.ServerName != "api.prod" {
		t.Errorf("prod context: server %q, CA %q, server name %q", cfg.Server, cfg.CAData, cfg.ServerName)
	}
	if cfg.Exec == nil || cfg.Exec.Command != filepath.Join(dir, "bin/get-token") || cfg.Exec.Env["REGION"] != "eu" || len(cfg.Exec.Args) != 2 {
		t.Errorf("exec plugin: %+v", cfg.Exec)
	}
}

func TestLoadMergesKubeconfigListFirstWins(t *testing.T) {
	dir := t.TempDir()
	a := write(t, filepath.Join(dir, "a"), `clusters:
- name: c
  cluster: {server: https://a.example}
contexts:
- name: ctx
  context: {cluster: c}
`)
	b := write(t, filepath.Join(dir, "b"), `current-context: ctx
clusters:
- name: c
  cluster: {server: https://b.example}
- name: other
  cluster: {server: https://other.example}
contexts:
- name: ctx2
  context: {cluster: other}
`)
	list := a + string(filepath.ListSeparator) + filepath.Join(dir, "missing") + string(filepath.ListSeparator) + b
	cfg, err := kube.Load(kube.LoadOptions{Getenv: env(map[string]string{"KUBECONFIG": list})})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Server != "https://a.example" {
		t.Errorf("server %q: the first file to define a cluster wins", cfg.Server)
	}
	cfg, err = kube.Load(kube.LoadOptions{Context: "ctx2", Getenv: env(map[string]string{"KUBECONFIG": list})})
	if err != nil || cfg.Server != "https://other.example" {
		t.Errorf("a context from the second file: %v %+v", err, cfg)
	}
}

func TestLoadErrorsSayWhatToDo(t *testing.T) {
	dir := t.TempDir()
	kc := write(t, filepath.Join(dir, "kubeconfig"), twoContexts)
	for _, tc := range []struct {
		name string
		o    kube.LoadOptions
		want string
	}{
		{"unknown context", kube.LoadOptions{Kubeconfig: kc, Context: "staging"}, `no context "staging" (contexts: dev, prod)`},
		{"explicit file missing", kube.LoadOptions{Kubeconfig: filepath.Join(dir, "nope")}, "does not exist"},
		{"nothing at all", kube.LoadOptions{Home: dir}, "no kubeconfig"},
		{"auth provider", kube.LoadOptions{Kubeconfig: write(t, filepath.Join(dir, "ap"), `current-context: x
clusters: [{name: c, cluster: {server: "https://x"}}]
users: [{name: u, user: {auth-provider: {name: gcp}}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
`)}, "auth-provider gcp is not supported"},
		{"not YAML", kube.LoadOptions{Kubeconfig: write(t, filepath.Join(dir, "bad"), "clusters: [\n")}, "not valid kubeconfig YAML"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.Getenv = env(nil)
			_, err := kube.Load(tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to say %q", err, tc.want)
			}
		})
	}
}

func TestLoadNeverQuotesCredentials(t *testing.T) {
	dir := t.TempDir()
	kc := write(t, filepath.Join(dir, "kubeconfig"), `current-context: x
clusters: [{name: c, cluster: {server: "https://x", certificate-authority-data: "not base64 SECRET-TOKEN-FAKE"}}]
users: [{name: u, user: {token: SECRET-TOKEN-FAKE}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
`)
	_, err := kube.Load(kube.LoadOptions{Kubeconfig: kc, Getenv: env(nil)})
	if err == nil {
		t.Fatal("a broken certificate-authority-data loads")
	}
	if strings.Contains(err.Error(), "SECRET") {
		t.Fatalf("the error quotes the kubeconfig: %v", err)
	}
}

func TestLoadInCluster(t *testing.T) {
	sa := t.TempDir()
	write(t, filepath.Join(sa, "token"), "tok\n")
	write(t, filepath.Join(sa, "ca.crt"), "CA")
	write(t, filepath.Join(sa, "namespace"), "agents\n")
	e := env(map[string]string{"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"})
	cfg, err := kube.Load(kube.LoadOptions{Getenv: e, Home: t.TempDir(), InClusterDir: sa})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Server != "https://[fd00::1]:443" || cfg.Namespace != "agents" || cfg.TokenFile != filepath.Join(sa, "token") || cfg.From != "in-cluster" {
		t.Errorf("in-cluster config %+v", cfg)
	}
	if _, err := kube.Load(kube.LoadOptions{Getenv: e, Home: t.TempDir(), InClusterDir: sa, Context: "x"}); err == nil {
		t.Error("a context is accepted in a pod, where there is no kubeconfig to find it in")
	}
}
