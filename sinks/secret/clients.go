package secret

import (
	"sync"

	"github.com/mc-broker/mc-broker/sinks/secret/kube"
)

// Clients holds one API client per kubeconfig and context, shared by all
// Secret copies of a run, loaded on first use (a run without Secret copies
// never reads a kubeconfig).
type Clients struct {
	getenv func(string) string
	home   string

	mu      sync.Mutex
	clients map[[2]string]*kube.Client
}

// NewClients finds kubeconfigs with getenv ($KUBECONFIG,
// $KUBERNETES_SERVICE_HOST) and home (~/.kube/config).
func NewClients(getenv func(string) string, home string) *Clients {
	return &Clients{getenv: getenv, home: home, clients: map[[2]string]*kube.Client{}}
}

// For returns the client for kubeconfig (empty: as kubectl finds it) and
// context (empty: its current context). A failure is not cached: the next
// call tries again (the user may fix the file meanwhile).
func (c *Clients) For(kubeconfig, context string) (*kube.Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	key := [2]string{kubeconfig, context}
	if cl, ok := c.clients[key]; ok {
		return cl, nil
	}
	cfg, err := kube.Load(kube.LoadOptions{Kubeconfig: kubeconfig, Context: context, Getenv: c.getenv, Home: c.home})
	if err != nil {
		return nil, err
	}
	cl, err := kube.NewClient(cfg)
	if err != nil {
		return nil, err
	}
	c.clients[key] = cl
	return cl, nil
}

// Put makes For return cl for kubeconfig and context (the agent, which has
// its client already; tests).
func (c *Clients) Put(kubeconfig, context string, cl *kube.Client) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.clients[[2]string{kubeconfig, context}] = cl
}
