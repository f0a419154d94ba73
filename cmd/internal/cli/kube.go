package cli

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/mc-broker/mc-broker/broker"
	"github.com/mc-broker/mc-broker/broker/config"
	"github.com/mc-broker/mc-broker/launch/compose"
	"github.com/mc-broker/mc-broker/launch/pod"
)

// NewCmdKube builds `mc-broker kube`, the Kubernetes helpers.
func NewCmdKube(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "kube",
		Short: "Wire Secret copies into Kubernetes workloads",
		Long: `Helpers for logins kept in Kubernetes Secrets (secret: copies in the
config). See docs/KUBERNETES.md for how the pieces fit.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(NewCmdKubeManifest(f, nil))
	return cmd
}

// KubeManifestOptions are the inputs of `mc-broker kube manifest`.
type KubeManifestOptions struct {
	f              *Factory
	ConfigFile     string
	Workload       string
	CLIs           []string
	Secret         string // [NAMESPACE/]NAME
	Namespace      string
	Container      string
	Image          string
	Binary         string
	Home           string
	UID, GID       int64
	ServiceAccount string
	Output         string
	Force          bool
	uidSet, gidSet bool
}

// NewCmdKubeManifest builds `mc-broker kube manifest`; runF replaces
// kubeManifestRun in tests.
func NewCmdKubeManifest(f *Factory, runF func(*KubeManifestOptions) error) *cobra.Command {
	opts := &KubeManifestOptions{f: f}
	cmd := &cobra.Command{
		Use:   "manifest KIND/NAME --cli CLI[,CLI] --image IMAGE [flags]",
		Short: "Print what a workload needs to use the logins in a Secret",
		Long: `Print (or write with -o) the Kubernetes objects that give the pods of a
workload (deployment, statefulset or daemonset) the logins that a secret: copy
keeps in a Secret:

  ServiceAccount  <name>-mc-broker, whose token only mc-broker's containers
                  mount (not created with --service-account)
  Role            get, update and watch on that one Secret (resourceNames)
  RoleBinding     the Role for the service account
  the workload    only mc-broker's part of its pod template: an init
                  container (mc-broker agent --once) that copies each login
                  into a writable emptyDir at the CLI's config directory, a
                  sidecar (mc-broker agent) that keeps them in step, the
                  volumes, the mounts of the container running the CLIs
                  (--container, default the workload's name), and
                  CLAUDE_CONFIG_DIR for Claude Code

Apply it with server-side apply, which merges the workload document into
your workload rather than replacing it:

  kubectl apply --server-side --field-manager=mc-broker -f FILE

--image names an image that holds the mc-broker binary (statically linked;
--binary is its path there, default mc-broker on PATH): your agent image with
mc-broker installed, or one of its own (FROM scratch, COPY mc-broker /). Run
mc-broker's containers as the CLI's user with --uid/--gid, so the files they
write are the CLI's.

The Secret and its keys come from the config: each CLI's secret: copy (CLI
names are claude, codex, gemini or source names in the config). --secret
[NAMESPACE/]NAME names it instead; keys are then the CLIs' file names. The
workload must be in the Secret's namespace.

-o refuses to replace a file that mc-broker did not write unless --force.`,
		Example: `  mc-broker kube manifest deployment/agents --cli claude,codex \
      --secret agents/logins --image registry.example/agents:1.4 --uid 1000 --gid 1000 -o mc-broker.yaml
  kubectl apply --server-side --field-manager=mc-broker -f mc-broker.yaml`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError("name the workload: mc-broker kube manifest deployment/NAME --cli claude --image IMAGE")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Workload = args[0]
			opts.uidSet, opts.gidSet = cmd.Flags().Changed("uid"), cmd.Flags().Changed("gid")
			if runF != nil {
				return runF(opts)
			}
			return kubeManifestRun(opts)
		},
	}
	fl := cmd.Flags()
	fl.StringSliceVar(&opts.CLIs, "cli", nil, "the CLIs the workload runs: `CLI[,CLI]` (claude, codex, gemini or config source names)")
	fl.StringVar(&opts.Image, "image", "", "`IMAGE` holding the mc-broker binary, for the init container and the sidecar")
	fl.StringVar(&opts.Binary, "binary", "mc-broker", "mc-broker's `PATH` (or name on PATH) in --image")
	fl.StringVar(&opts.Secret, "secret", "", "the Secret: `[NAMESPACE/]NAME` (default: the CLIs' secret: copies in the config)")
	fl.StringVarP(&opts.Namespace, "namespace", "n", "", "the workload's `NAMESPACE` (default: the Secret's, else default)")
	fl.StringVar(&opts.Container, "container", "", "the container that runs the CLIs (default: the workload's name)")
	fl.StringVar(&opts.Home, "home", "/root", "the container user's home `DIR`: config directories go to DIR/.claude, DIR/.codex, DIR/.gemini")
	fl.Int64Var(&opts.UID, "uid", 0, "run mc-broker's containers as this user `ID` (the CLI's)")
	fl.Int64Var(&opts.GID, "gid", 0, "run mc-broker's containers as this group `ID`")
	fl.StringVar(&opts.ServiceAccount, "service-account", "", "bind the Role to the workload's existing service account `NAME` instead of creating one")
	fl.StringVarP(&opts.Output, "output", "o", "", "write the manifest to `FILE` (mode 0644) instead of printing it")
	fl.BoolVar(&opts.Force, "force", false, "with -o, replace a file mc-broker did not write")
	fl.StringVar(&opts.ConfigFile, "config", "", configFlagUsage)
	return cmd
}

func kubeManifestRun(opts *KubeManifestOptions) error {
	if len(opts.CLIs) == 0 {
		return usageError("name the CLIs the workload runs: --cli claude[,codex]")
	}
	sel := selection{ConfigFile: opts.ConfigFile}
	_, cfg, err := sel.loadConfig(opts.f)
	if err != nil {
		return err
	}
	spec := pod.Spec{
		Workload: opts.Workload, Container: opts.Container, Image: opts.Image,
		Binary: opts.Binary, Home: opts.Home, ServiceAccount: opts.ServiceAccount,
	}
	if opts.uidSet {
		spec.UID = &opts.UID
	}
	if opts.gidSet {
		spec.GID = &opts.GID
	}
	secretNS, secretName, err := manifestSecret(cfg, opts)
	if err != nil {
		return err
	}
	spec.Secret = secretName
	spec.Namespace = secretNS
	if opts.Namespace != "" && secretNS != "" && opts.Namespace != secretNS {
		return usageError("--namespace %s but the Secret is in %s: a pod reads Secrets of its own namespace (the Role lives there)", opts.Namespace, secretNS)
	}
	if spec.Namespace == "" {
		spec.Namespace = opts.Namespace
	}
	if spec.Namespace == "" {
		spec.Namespace = "default"
	}
	for _, name := range opts.CLIs {
		l, err := manifestLogin(cfg, strings.TrimSpace(name), spec.Namespace, secretName, opts.Secret != "")
		if err != nil {
			return err
		}
		spec.Logins = append(spec.Logins, l)
	}
	out, err := pod.Generate(spec)
	var specErr *pod.SpecError
	if errors.As(err, &specErr) {
		return usageError("%v", err)
	}
	if err != nil {
		return err
	}
	if opts.Output == "" {
		_, err := opts.f.Stdout.Write(out)
		return err
	}
	return writeManifest(opts.f, opts.Output, out, opts.Force)
}

// manifestSecret is the Secret the workload uses: --secret, else the one
// all the named CLIs' secret: copies share.
func manifestSecret(cfg *config.Config, opts *KubeManifestOptions) (ns, name string, err error) {
	if opts.Secret != "" {
		ns, name, ok := strings.Cut(opts.Secret, "/")
		if !ok {
			return "", opts.Secret, nil
		}
		return ns, name, nil
	}
	var found []string
	for _, cli := range opts.CLIs {
		for _, sk := range cfg.Sinks {
			if sk.Source == strings.TrimSpace(cli) && sk.SecretName != "" {
				ref := sk.SecretNamespace + "/" + sk.SecretName
				if len(found) == 0 || found[len(found)-1] != ref {
					found = append(found, ref)
				}
			}
		}
	}
	switch {
	case len(found) == 0:
		return "", "", &ExitError{Code: broker.ExitUsage,
			Err:  fmt.Errorf("none of %s has a secret: copy in %s", strings.Join(opts.CLIs, ", "), configName(cfg)),
			Hint: "add a sink with secret: NAMESPACE/NAME for them (docs/KUBERNETES.md), or name the Secret with --secret"}
	case len(found) > 1:
		return "", "", &ExitError{Code: broker.ExitUsage,
			Err:  fmt.Errorf("the CLIs' secret: copies are in %d Secrets (%s): a workload's agent follows one", len(found), strings.Join(found, ", ")),
			Hint: "keep the logins of one workload in one Secret (one key each), or name it with --secret"}
	}
	ns, name, _ = strings.Cut(found[0], "/")
	return ns, name, nil
}

// manifestLogin finds the CLI and Secret key of the source called name.
func manifestLogin(cfg *config.Config, name, ns, secretName string, explicit bool) (pod.Login, error) {
	src, ok := cfg.Source(name)
	if !ok {
		return pod.Login{}, usageError("unknown CLI %q: use claude, codex, gemini or a source in the config (sources: %s)", name, cfg.SourceNames())
	}
	if _, ok := compose.CLIDirs[src.Kind]; !ok {
		return pod.Login{}, usageError("source %s is a %s source: only claude, codex and gemini logins have a config directory in a pod", name, src.Kind)
	}
	var keys []string
	for _, sk := range cfg.Sinks {
		if sk.Source == name && sk.SecretName == secretName && sk.SecretNamespace == ns && sk.Key != "" {
			keys = append(keys, sk.Key)
		}
	}
	switch {
	case len(keys) == 1:
		return pod.Login{CLI: src.Kind, Key: keys[0]}, nil
	case len(keys) > 1:
		return pod.Login{}, usageError("%s has %d keys in Secret %s/%s (%s): a pod has one %s config directory", name, len(keys), ns, secretName, strings.Join(keys, ", "), src.Kind)
	case !explicit:
		return pod.Login{}, usageError("%s has no secret: copy in Secret %s/%s", name, ns, secretName)
	}
	return pod.Login{CLI: src.Kind}, nil
}

func configName(cfg *config.Config) string {
	if cfg.File == "" {
		return "the built-in defaults (no config file)"
	}
	return cfg.File
}

func writeManifest(f *Factory, path string, data []byte, force bool) error {
	return writeGenerated(f, path, data, force, generated{
		marker:  pod.Marker,
		command: "mc-broker kube manifest",
		use:     "kubectl apply --server-side --field-manager=" + pod.FieldManager + " -f " + path,
	})
}
