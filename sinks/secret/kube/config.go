// Package kube is a small client for the parts of the Kubernetes API that
// mc-broker uses: one Secret read, created, updated and watched, and (for
// tests and `kube manifest`'s checks) plain requests such as a server-side
// apply. It finds the cluster the way kubectl does: --kubeconfig, else
// $KUBECONFIG (a list, merged), else ~/.kube/config, else the pod's own
// service account (in-cluster).
//
// It is not client-go on purpose: client-go's rest package alone links about
// fifty packages whose init functions every mc-broker command would pay at
// start-up (docs/KUBERNETES.md has the measurement), for a handful of JSON
// requests. This package adds nothing to start-up: everything it links
// (net/http, crypto/tls, YAML) mc-broker links already.
package kube

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Config is how to reach and authenticate to one cluster.
type Config struct {
	// Server is the API server's URL (https://host:port).
	Server string
	// CAData is the PEM of the certificate authorities to trust; the
	// system's when empty.
	CAData     []byte
	Insecure   bool   // insecure-skip-tls-verify
	ServerName string // tls-server-name
	ProxyURL   string
	// Credentials: a bearer token (Token, or TokenFile read again as it
	// changes), a client certificate, or an exec plugin.
	Token             string
	TokenFile         string
	CertData, KeyData []byte
	Exec              *ExecConfig
	// Namespace is the context's namespace (in-cluster: the pod's).
	Namespace string
	// From says where the config came from, for messages: a kubeconfig
	// file and context, or "in-cluster".
	From string
}

// ExecConfig is a kubeconfig's exec credential plugin (how EKS, GKE and
// AKS clusters usually authenticate).
type ExecConfig struct {
	APIVersion         string
	Command            string
	Args               []string
	Env                map[string]string
	ProvideClusterInfo bool
	InstallHint        string
}

// LoadOptions say which kubeconfig and context to use.
type LoadOptions struct {
	// Kubeconfig is an explicit kubeconfig file (--kubeconfig, or the
	// config's kubeconfig: key). When empty, $KUBECONFIG, then
	// ~/.kube/config, then in-cluster.
	Kubeconfig string
	// Context names the kubeconfig context; its current-context when empty.
	Context string
	Getenv  func(string) string
	Home    string
	// InClusterDir is the service account directory; the standard one when
	// empty (tests set it).
	InClusterDir string
}

// ServiceAccountDir is where a pod finds its service account's token, CA
// and namespace.
const ServiceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount"

// ConfigError is a kubeconfig that cannot be used. It never quotes
// credentials.
type ConfigError struct {
	From string
	Msg  string
}

func (e *ConfigError) Error() string {
	if e.From == "" {
		return e.Msg
	}
	return e.From + ": " + e.Msg
}

// maxKubeconfig bounds a kubeconfig read: real ones are a few KiB.
const maxKubeconfig = 4 << 20

// Load finds the cluster as kubectl does and returns how to reach it.
func Load(o LoadOptions) (*Config, error) {
	getenv := o.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	var files []string
	explicit := o.Kubeconfig != ""
	switch {
	case explicit:
		files = []string{o.Kubeconfig}
	case getenv("KUBECONFIG") != "":
		for _, f := range filepath.SplitList(getenv("KUBECONFIG")) {
			if f != "" {
				files = append(files, f)
			}
		}
	default:
		if o.Home != "" {
			def := filepath.Join(o.Home, ".kube", "config")
			if _, err := os.Stat(def); err == nil {
				files = []string{def}
			}
		}
	}
	if len(files) == 0 {
		if getenv("KUBERNETES_SERVICE_HOST") != "" {
			if o.Context != "" {
				return nil, &ConfigError{From: "in-cluster", Msg: "context " + o.Context + " given, but there is no kubeconfig (in a pod, leave the context out)"}
			}
			return inCluster(getenv, o.InClusterDir)
		}
		return nil, &ConfigError{Msg: "no kubeconfig: set kubeconfig: (or KUBECONFIG), or create ~/.kube/config"}
	}
	var merged kubeconfig
	read := 0
	for _, f := range files {
		kc, err := readKubeconfig(f)
		if errors.Is(err, fs.ErrNotExist) && !explicit {
			continue // kubectl ignores missing files in $KUBECONFIG
		}
		if err != nil {
			return nil, err
		}
		merged.merge(kc)
		read++
	}
	if read == 0 {
		return nil, &ConfigError{From: "KUBECONFIG", Msg: "none of its files exists"}
	}
	return merged.resolve(o.Context, strings.Join(files, string(filepath.ListSeparator)))
}

// The kubeconfig file, as far as mc-broker reads it. Paths are made
// absolute against the file they came from when it is read.
type kubeconfig struct {
	CurrentContext string         `yaml:"current-context"`
	Clusters       []clusterEntry `yaml:"clusters"`
	Users          []userEntry    `yaml:"users"`
	Contexts       []contextEntry `yaml:"contexts"`
}

type clusterEntry struct {
	Name    string `yaml:"name"`
	Cluster struct {
		Server                   string `yaml:"server"`
		CertificateAuthority     string `yaml:"certificate-authority"`
		CertificateAuthorityData string `yaml:"certificate-authority-data"`
		InsecureSkipTLSVerify    bool   `yaml:"insecure-skip-tls-verify"`
		TLSServerName            string `yaml:"tls-server-name"`
		ProxyURL                 string `yaml:"proxy-url"`
	} `yaml:"cluster"`
}

type userEntry struct {
	Name string   `yaml:"name"`
	User userInfo `yaml:"user"`
}

type contextEntry struct {
	Name    string `yaml:"name"`
	Context struct {
		Cluster   string `yaml:"cluster"`
		User      string `yaml:"user"`
		Namespace string `yaml:"namespace"`
	} `yaml:"context"`
}

type userInfo struct {
	ClientCertificate     string `yaml:"client-certificate"`
	ClientCertificateData string `yaml:"client-certificate-data"`
	ClientKey             string `yaml:"client-key"`
	ClientKeyData         string `yaml:"client-key-data"`
	Token                 string `yaml:"token"`
	TokenFile             string `yaml:"tokenFile"`
	Username              string `yaml:"username"`
	As                    string `yaml:"as"`
	AuthProvider          *struct {
		Name string `yaml:"name"`
	} `yaml:"auth-provider"`
	Exec *struct {
		APIVersion string   `yaml:"apiVersion"`
		Command    string   `yaml:"command"`
		Args       []string `yaml:"args"`
		Env        []struct {
			Name  string `yaml:"name"`
			Value string `yaml:"value"`
		} `yaml:"env"`
		ProvideClusterInfo bool   `yaml:"provideClusterInfo"`
		InstallHint        string `yaml:"installHint"`
	} `yaml:"exec"`
}

func readKubeconfig(path string) (*kubeconfig, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("kubeconfig %s does not exist: %w", path, fs.ErrNotExist)
		}
		return nil, &ConfigError{From: path, Msg: "cannot read: " + errors.Unwrap(err).Error()}
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() || st.Size() > maxKubeconfig {
		return nil, &ConfigError{From: path, Msg: "not a kubeconfig file (expected a YAML file under 4 MiB)"}
	}
	var kc kubeconfig
	dec := yaml.NewDecoder(f)
	if err := dec.Decode(&kc); err != nil && !errors.Is(err, io.EOF) {
		// yaml's messages name lines and types, never values.
		return nil, &ConfigError{From: path, Msg: "not valid kubeconfig YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = path
	}
	dir := filepath.Dir(abs)
	rel := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	for i := range kc.Clusters {
		c := &kc.Clusters[i].Cluster
		c.CertificateAuthority = rel(c.CertificateAuthority)
	}
	for i := range kc.Users {
		u := &kc.Users[i].User
		u.ClientCertificate, u.ClientKey, u.TokenFile = rel(u.ClientCertificate), rel(u.ClientKey), rel(u.TokenFile)
		// kubectl resolves a plugin named by a relative path (./bin/x),
		// not one looked up on PATH (aws, gke-gcloud-auth-plugin).
		if u.Exec != nil && strings.ContainsRune(u.Exec.Command, filepath.Separator) {
			u.Exec.Command = rel(u.Exec.Command)
		}
	}
	return &kc, nil
}

// merge adds other's entries; as with kubectl, the first file to define a
// name or the current context wins.
func (k *kubeconfig) merge(o *kubeconfig) {
	if k.CurrentContext == "" {
		k.CurrentContext = o.CurrentContext
	}
	k.Clusters = mergeNamed(k.Clusters, o.Clusters, func(c clusterEntry) string { return c.Name })
	k.Users = mergeNamed(k.Users, o.Users, func(u userEntry) string { return u.Name })
	k.Contexts = mergeNamed(k.Contexts, o.Contexts, func(c contextEntry) string { return c.Name })
}

// mergeNamed appends the entries of more whose names list lacks.
func mergeNamed[T any](list, more []T, name func(T) string) []T {
	have := map[string]bool{}
	for _, e := range list {
		have[name(e)] = true
	}
	for _, e := range more {
		if !have[name(e)] {
			list = append(list, e)
		}
	}
	return list
}

func (k *kubeconfig) resolve(context, from string) (*Config, error) {
	name := context
	if name == "" {
		name = k.CurrentContext
	}
	if name == "" {
		return nil, &ConfigError{From: from, Msg: "no current-context: name a context (context: in the config, or --context)"}
	}
	where := from + " (context " + name + ")"
	var cfg Config
	cfg.From = where
	found := false
	var clusterName, userName string
	for _, c := range k.Contexts {
		if c.Name == name {
			found = true
			clusterName, userName, cfg.Namespace = c.Context.Cluster, c.Context.User, c.Context.Namespace
			break
		}
	}
	if !found {
		var names []string
		for _, c := range k.Contexts {
			names = append(names, c.Name)
		}
		return nil, &ConfigError{From: from, Msg: fmt.Sprintf("no context %q (contexts: %s)", name, strings.Join(names, ", "))}
	}
	found = false
	for _, c := range k.Clusters {
		if c.Name != clusterName {
			continue
		}
		found = true
		cl := c.Cluster
		cfg.Server, cfg.Insecure, cfg.ServerName, cfg.ProxyURL = cl.Server, cl.InsecureSkipTLSVerify, cl.TLSServerName, cl.ProxyURL
		var err error
		if cfg.CAData, err = fileOrData(cl.CertificateAuthority, cl.CertificateAuthorityData); err != nil {
			return nil, &ConfigError{From: where, Msg: "certificate-authority: " + err.Error()}
		}
		break
	}
	if !found {
		return nil, &ConfigError{From: where, Msg: fmt.Sprintf("the context names cluster %q, which is not defined", clusterName)}
	}
	if cfg.Server == "" {
		return nil, &ConfigError{From: where, Msg: "cluster " + clusterName + " has no server"}
	}
	if userName == "" {
		return &cfg, nil
	}
	found = false
	for _, u := range k.Users {
		if u.Name != userName {
			continue
		}
		found = true
		if err := cfg.setUser(u.User); err != nil {
			return nil, &ConfigError{From: where, Msg: "user " + userName + ": " + err.Error()}
		}
		break
	}
	if !found {
		return nil, &ConfigError{From: where, Msg: fmt.Sprintf("the context names user %q, which is not defined", userName)}
	}
	return &cfg, nil
}

func (cfg *Config) setUser(u userInfo) error {
	switch {
	case u.AuthProvider != nil:
		return fmt.Errorf("auth-provider %s is not supported (kubectl dropped the built-in providers in 1.26): use an exec plugin such as gke-gcloud-auth-plugin or kubelogin", u.AuthProvider.Name)
	case u.Username != "":
		return errors.New("basic authentication (username/password) is not supported: use a token, a client certificate or an exec plugin")
	case u.As != "":
		return errors.New("impersonation (as:) is not supported: use a context whose user has the rights itself")
	}
	cfg.Token, cfg.TokenFile = u.Token, u.TokenFile
	var err error
	if cfg.CertData, err = fileOrData(u.ClientCertificate, u.ClientCertificateData); err != nil {
		return fmt.Errorf("client-certificate: %v", err)
	}
	if cfg.KeyData, err = fileOrData(u.ClientKey, u.ClientKeyData); err != nil {
		return fmt.Errorf("client-key: %v", err)
	}
	if (len(cfg.CertData) == 0) != (len(cfg.KeyData) == 0) {
		return errors.New("a client certificate needs both client-certificate and client-key")
	}
	if e := u.Exec; e != nil {
		if e.Command == "" {
			return errors.New("exec has no command")
		}
		cfg.Exec = &ExecConfig{APIVersion: e.APIVersion, Command: e.Command, Args: e.Args, ProvideClusterInfo: e.ProvideClusterInfo, InstallHint: e.InstallHint, Env: map[string]string{}}
		for _, v := range e.Env {
			cfg.Exec.Env[v.Name] = v.Value
		}
	}
	return nil
}

// fileOrData returns the file's content, or the base64 data. A data field
// wins over a file, as in kubectl.
func fileOrData(file, data string) ([]byte, error) {
	if data != "" {
		out, err := base64.StdEncoding.DecodeString(strings.TrimSpace(data))
		if err != nil {
			return nil, errors.New("the -data field is not base64")
		}
		return out, nil
	}
	if file == "" {
		return nil, nil
	}
	out, err := readSmall(file)
	if err != nil {
		return nil, err
	}
	return out, nil
}

// readSmall reads a credential or certificate file, at most 1 MiB.
func readSmall(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %v", path, errors.Unwrap(err))
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() || st.Size() > 1<<20 {
		return nil, fmt.Errorf("%s is not a regular file under 1 MiB", path)
	}
	out, err := io.ReadAll(io.LimitReader(f, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %v", path, err)
	}
	return out, nil
}

// inCluster is the pod's own service account, as client-go's
// rest.InClusterConfig reads it.
func inCluster(getenv func(string) string, dir string) (*Config, error) {
	if dir == "" {
		dir = ServiceAccountDir
	}
	host, port := getenv("KUBERNETES_SERVICE_HOST"), getenv("KUBERNETES_SERVICE_PORT")
	if port == "" {
		port = "443"
	}
	cfg := &Config{
		Server:    "https://" + net.JoinHostPort(host, port),
		TokenFile: filepath.Join(dir, "token"),
		From:      "in-cluster",
	}
	if _, err := os.Stat(cfg.TokenFile); err != nil {
		return nil, &ConfigError{From: "in-cluster", Msg: "no service account token at " + cfg.TokenFile + " (is automountServiceAccountToken off for this container?)"}
	}
	ca, err := readSmall(filepath.Join(dir, "ca.crt"))
	if err != nil {
		return nil, &ConfigError{From: "in-cluster", Msg: err.Error()}
	}
	cfg.CAData = ca
	if ns, err := readSmall(filepath.Join(dir, "namespace")); err == nil {
		cfg.Namespace = strings.TrimSpace(string(ns))
	}
	return cfg, nil
}
