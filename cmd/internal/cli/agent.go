package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/mc-broker/mc-broker/broker/kinds"

	"github.com/spf13/cobra"

	"github.com/mc-broker/mc-broker/broker"
	"github.com/mc-broker/mc-broker/launch/pod"
	"github.com/mc-broker/mc-broker/launch/pod/agent"
	"github.com/mc-broker/mc-broker/sinks/dir"
	"github.com/mc-broker/mc-broker/sinks/secret"
)

// AgentOptions are the inputs of `mc-broker agent`.
type AgentOptions struct {
	f          *Factory
	Secret     string   // [NAMESPACE/]NAME
	CLIs       []string // CLI[/KEY]=DIR
	Once       bool
	Kubeconfig string
	Context    string
	LockDir    string
	// Ready, when set (tests), is called once the sidecar watches both
	// sides.
	Ready func()
}

// NewCmdAgent builds `mc-broker agent`; runF replaces agentRun in tests.
func NewCmdAgent(f *Factory, runF func(context.Context, *AgentOptions) error) *cobra.Command {
	opts := &AgentOptions{f: f}
	cmd := &cobra.Command{
		Use:   "agent --secret [NAMESPACE/]NAME --cli CLI[/KEY]=DIR [--cli ...] [--once]",
		Short: "Keep a pod's logins in step with their Kubernetes Secret (runs in the pod)",
		Long: `The pod side of a secret: copy. 'mc-broker kube manifest' puts it into a
workload twice: as an init container (--once) and as a sidecar.

--once copies each login from the Secret into DIR (an emptyDir mounted as the
CLI's config directory) unless DIR holds a newer one, which goes back into the
Secret instead, and adds the files a CLI needs in a fresh container
(Claude's .claude.json, Gemini's settings.json) when absent. It fails (exit 3)
when a login has no usable copy on either side, so the pod waits rather than
starting a logged-out CLI; the host's 'mc-broker sync' fills the Secret.

Without --once it runs until stopped: it watches DIR (inotify) and the Secret
(the API's watch, not polling) and carries whichever login is newer to the
other side: a login the CLI refreshes goes back into the Secret within
milliseconds, and one another pod or the host wrote comes in. A broken login
(blanked, truncated) is never carried either way; a login whose age is
unknown (an API key) is never taken from the pod.

KEY is the Secret's data key (default: the CLI's file name: .credentials.json,
auth.json, oauth_creds.json). In a pod the service account's token is used
and NAMESPACE defaults to the pod's; elsewhere kubeconfig as for kubectl.

It needs get, update and watch on that one Secret; nothing else.`,
		Example: `  # in the pod (what kube manifest writes):
  mc-broker agent --once --secret agents/logins --cli claude=/root/.claude --cli codex=/root/.codex
  mc-broker agent --secret agents/logins --cli claude=/root/.claude --cli codex=/root/.codex`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return agentRun(cmd.Context(), opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.Secret, "secret", "", "the Secret holding the logins: `[NAMESPACE/]NAME`")
	fl.StringArrayVar(&opts.CLIs, "cli", nil, "a login and its directory: `CLI[/KEY]=DIR` (repeat for more)")
	fl.BoolVar(&opts.Once, "once", false, "bring the logins in step once and exit (the init container)")
	fl.StringVar(&opts.Kubeconfig, "kubeconfig", "", "kubeconfig `FILE` (default: the pod's service account, else as kubectl)")
	fl.StringVar(&opts.Context, "context", "", "kubeconfig context `NAME`")
	fl.StringVar(&opts.LockDir, "lock-dir", "", "`DIR` for mc-broker's own lock files (default $TMPDIR/mc-broker-agent)")
	return cmd
}

func agentRun(ctx context.Context, opts *AgentOptions) error {
	if ctx == nil {
		ctx = context.Background()
	}
	if opts.Secret == "" {
		return usageError("name the Secret: --secret [NAMESPACE/]NAME")
	}
	if len(opts.CLIs) == 0 {
		return usageError("name at least one login: --cli CLI=DIR, e.g. --cli claude=/root/.claude")
	}
	f := opts.f
	clients := secret.NewClients(f.Getenv, f.Getenv("HOME"))
	client, err := clients.For(opts.Kubeconfig, opts.Context)
	if err != nil {
		return &ExitError{Code: broker.ExitUsage, Err: err, Hint: "in a pod, mount the service account token (kube manifest does); elsewhere pass --kubeconfig"}
	}
	ns, name, hasNS := strings.Cut(opts.Secret, "/")
	if !hasNS {
		ns, name = client.Config().Namespace, opts.Secret
		if ns == "" {
			ns = "default"
		}
	}
	lockDir := opts.LockDir
	if lockDir == "" {
		lockDir = filepath.Join(os.TempDir(), "mc-broker-agent")
	}
	var logins []agent.Login
	seen := map[string]bool{}
	for _, arg := range opts.CLIs {
		cli, key, d, err := pod.ParseAgentArg(arg)
		if err != nil {
			return usageError("%v", err)
		}
		if err := secret.CheckNames(ns, name, key); err != nil {
			return usageError("--secret %s: %v", opts.Secret, err)
		}
		if seen[d] {
			return usageError("--cli %s: two logins in one directory %s", arg, d)
		}
		seen[d] = true
		kind, _ := kinds.ByName(cli)
		logins = append(logins, agent.Login{
			Name: cli,
			Kind: kind,
			Secret: secret.New(secret.Options{
				Namespace: ns, Name: name, Key: key,
				Kubeconfig: opts.Kubeconfig, Context: opts.Context,
				Clients: clients,
			}),
			Dir: dir.New(dir.Options{
				Dir:       d,
				FileName:  kind.FileName(),
				LockFiles: kind.Facts().LockFiles,
				WriteLock: kind.Facts().WriteLock,
				LockDir:   lockDir,
			}),
			Companions: kind.Facts().Companions,
		})
	}
	var mu sync.Mutex
	logf := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(f.Stderr, "%s mc-broker agent: %s\n", time.Now().UTC().Format(time.RFC3339), fmt.Sprintf(format, args...))
	}
	if opts.Once {
		err := agent.Once(ctx, logins, logf)
		var nl *agent.NoLoginError
		switch {
		case errors.As(err, &nl):
			return &ExitError{Code: broker.ExitCredential, Err: err,
				Hint: "fill the Secret from the host: a secret: copy in mc-broker's config, then mc-broker sync (kubelet retries this container)"}
		case err != nil:
			return &ExitError{Code: broker.ExitCopyFailed, Err: err}
		}
		return nil
	}
	ready := func() {
		logf("watching %d login(s) and secret %s/%s", len(logins), ns, name)
		if opts.Ready != nil {
			opts.Ready()
		}
	}
	if err := agent.Run(ctx, logins, agent.RunOptions{Logf: logf, Ready: ready}); err != nil {
		return &ExitError{Code: broker.ExitCopyFailed, Err: err}
	}
	return nil
}
