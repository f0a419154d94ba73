// Package volumetest holds what tests and benchmarks of volume copies
// share: reaching the real engines (Docker; rootful and rootless Podman
// from scripts/podman-env.sh; skip when there is none, fail under
// CI=true), unique volumes that are removed afterwards, reading a volume
// from a container, and counting helper containers with the events API.
package volumetest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/mc-broker/mc-broker/sinks/volume"
	"github.com/mc-broker/mc-broker/sinks/volume/engine"
)

// Image is the FROM-scratch busybox image scripts/docker-env.sh builds.
const Image = "mc-broker-test-busybox:latest"

// NeedEngine returns a run handle and the engine behind it, skipping the
// test when no engine answers, or failing it when CI=true.
func NeedEngine(tb testing.TB) (*volume.Shared, *engine.Engine) {
	tb.Helper()
	lazy := engine.NewLazy(os.Getenv, os.Getenv("HOME"))
	e, err := lazy.Engine(context.Background())
	if err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("CI=true and no Docker engine: %v", err)
		}
		tb.Skipf("no Docker engine: %v", err)
	}
	sh := volume.NewShared(lazy)
	tb.Cleanup(func() { sh.Close() })
	return sh, e
}

var seq atomic.Int64

// UniqueVolume names a volume no other test uses and removes it (and any
// container still using it) when the test ends.
func UniqueVolume(tb testing.TB, e *engine.Engine) string {
	tb.Helper()
	name := fmt.Sprintf("mc-broker-test-%d-%d-%d", os.Getpid(), time.Now().UnixNano()%1e6, seq.Add(1))
	tb.Cleanup(func() { RemoveVolume(e, name) })
	return name
}

// RemoveVolume removes a volume and the containers that mount it.
func RemoveVolume(e *engine.Engine, name string) {
	ctx := context.Background()
	c := e.Client()
	if list, err := c.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: make(client.Filters).Add("volume", name)}); err == nil {
		for _, ctr := range list.Items {
			c.ContainerRemove(ctx, ctr.ID, client.ContainerRemoveOptions{Force: true})
		}
	}
	c.VolumeRemove(ctx, name, client.VolumeRemoveOptions{Force: true})
}

// Run runs `sh -c script` in the test image with vol mounted at /d and no
// network, on the environment's Docker engine, and returns its output.
func Run(tb testing.TB, vol, script string) string {
	tb.Helper()
	out, err := exec.Command("docker", "run", "--rm", "--network", "none", "-v", vol+":/d", Image, "sh", "-c", script).CombinedOutput()
	if err != nil {
		tb.Fatalf("docker run: %v\n%s", err, out)
	}
	return string(out)
}

// Engine is one real engine the volume tests run on.
type Engine struct {
	// Name is "docker", "podman" (rootful) or "podman-rootless".
	Name string
	// Host is its address (DOCKER_HOST's form).
	Host string
	// Shared is a run handle whose environment's engine is this one.
	Shared *volume.Shared
	*engine.Engine
}

// Env is the environment that points the mc-broker binary at the engine.
func (e *Engine) Env() string { return "DOCKER_HOST=" + e.Host }

// Run is the package's Run on this engine: the docker CLI with -H. On
// Podman the container's open-file and process limits are set low
// (PodmanLimits): rootful Podman otherwise asks for more than a machine
// without CAP_SYS_RESOURCE (this CI sandbox) lets it set, and the
// container does not start.
func (e *Engine) Run(tb testing.TB, vol, script string) string {
	tb.Helper()
	args := []string{"-H", e.Host, "run", "--rm", "--network", "none", "-v", vol + ":/d"}
	if e.Name != "docker" {
		args = append(args, PodmanLimits...)
	}
	args = append(args, Image, "sh", "-c", script)
	out, err := exec.Command("docker", args...).CombinedOutput()
	if err != nil {
		tb.Fatalf("docker %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// PodmanLimits are docker run flags that let rootful Podman start a
// container where the engine may not raise resource limits: limits below
// any machine's hard limits (Podman's defaults, 1048576 open files, are
// above this sandbox's).
var PodmanLimits = []string{"--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"}

// UniqueVolume is the package's UniqueVolume on this engine.
func (e *Engine) UniqueVolume(tb testing.TB) string { return UniqueVolume(tb, e.Engine) }

// Podman sockets as scripts/podman-env.sh starts them.
const (
	podmanRootful    = "unix:///run/podman/podman.sock"
	podmanRootlessAs = "mcb-podman"
)

// NeedPodman returns rootful (rootless false) or rootless Podman as
// scripts/podman-env.sh starts it (MC_BROKER_TEST_PODMAN_HOST and
// MC_BROKER_TEST_PODMAN_ROOTLESS_HOST name others), skipping the test when
// it does not answer, or failing it when CI=true.
func NeedPodman(tb testing.TB, rootless bool) *Engine {
	tb.Helper()
	name, host := "podman", os.Getenv("MC_BROKER_TEST_PODMAN_HOST")
	if host == "" {
		host = podmanRootful
	}
	if rootless {
		name, host = "podman-rootless", os.Getenv("MC_BROKER_TEST_PODMAN_ROOTLESS_HOST")
		if u, err := user.Lookup(podmanRootlessAs); host == "" && err == nil {
			host = "unix:///run/user/" + u.Uid + "/podman/podman.sock"
		}
	}
	e, err := dial(name, host)
	if err == nil && !e.Podman() {
		err = fmt.Errorf("%s answers but is not Podman", host)
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("CI=true and no %s (scripts/podman-env.sh starts it): %v", name, err)
		}
		tb.Skipf("no %s (run scripts/podman-env.sh as root): %v", name, err)
	}
	tb.Cleanup(func() { e.Shared.Close() })
	return e
}

func dial(name, host string) (*Engine, error) {
	if host == "" {
		return nil, errors.New("no socket")
	}
	getenv := func(k string) string {
		if k == "DOCKER_HOST" {
			return host
		}
		return ""
	}
	lazy := engine.NewLazy(getenv, os.TempDir())
	e, err := lazy.Engine(context.Background())
	if err != nil {
		return nil, err
	}
	return &Engine{Name: name, Host: host, Shared: volume.NewShared(lazy), Engine: e}, nil
}

// Docker is the environment's Docker engine as an Engine (NeedEngine's).
func Docker(tb testing.TB) *Engine {
	tb.Helper()
	sh, e := NeedEngine(tb)
	return &Engine{Name: "docker", Host: e.Endpoint.Host, Shared: sh, Engine: e}
}

// Engines runs f as a subtest on Docker, rootful Podman and rootless
// Podman: the volume tests hold on every engine mc-broker supports. The
// engines are independent, so the subtests run side by side; a test that
// changes package state uses EachEngine.
func Engines(t *testing.T, f func(t *testing.T, e *Engine)) {
	t.Helper()
	each(t, true, f)
}

// EachEngine is Engines one engine after the other.
func EachEngine(t *testing.T, f func(t *testing.T, e *Engine)) {
	t.Helper()
	each(t, false, f)
}

func each(t *testing.T, parallel bool, f func(t *testing.T, e *Engine)) {
	t.Helper()
	for _, eng := range []struct {
		name string
		get  func(testing.TB) *Engine
	}{
		{"docker", Docker},
		{"podman", func(tb testing.TB) *Engine { return NeedPodman(tb, false) }},
		{"podman-rootless", func(tb testing.TB) *Engine { return NeedPodman(tb, true) }},
	} {
		t.Run(eng.name, func(t *testing.T) {
			if parallel {
				t.Parallel()
			}
			f(t, eng.get(t))
		})
	}
}

// CountCreates counts the containers created for vols while f runs, with
// the engine's events API.
func CountCreates(tb testing.TB, e *engine.Engine, vols []string, f func()) int {
	tb.Helper()
	return Events(tb, e, vols, f)["create"]
}

// Events counts, by action, the engine's events on the helper containers
// of vols (all helpers when vols is empty) while f runs: "create",
// "destroy", "archive-path" (a read, CopyFromContainer) and
// "extract-to-dir" (a write, CopyToContainer). Scoping by volume keeps
// tests in other packages, running at the same time, out of the count.
func Events(tb testing.TB, e *engine.Engine, vols []string, f func()) map[string]int {
	tb.Helper()
	since := time.Now()
	f()
	until := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Since and Until are whole seconds; events are filtered to f's run
	// by their nanosecond times below. The stream ends at Until.
	res := e.Client().Events(ctx, client.EventsListOptions{
		Since:   fmt.Sprint(since.Unix()),
		Until:   fmt.Sprint(until.Unix() + 1),
		Filters: make(client.Filters).Add("type", "container").Add("label", volume.LabelHelper),
	})
	counts := map[string]int{}
	for {
		select {
		case m := <-res.Messages:
			t := time.Unix(0, m.TimeNano)
			if !t.Before(since) && !t.After(until) && (len(vols) == 0 || slices.Contains(vols, m.Actor.Attributes[volume.LabelVolume])) {
				counts[string(m.Action)]++
			}
		case err := <-res.Err:
			if err != nil && !errors.Is(err, context.Canceled) && err.Error() != "EOF" {
				tb.Fatalf("events: %v", err)
			}
			return counts
		}
	}
}

// Helpers lists helper containers carrying any of the given labels
// ("key=value" or "key"); all helpers when none is given.
func Helpers(tb testing.TB, e *engine.Engine, labels ...string) []string {
	tb.Helper()
	if len(labels) == 0 {
		labels = []string{volume.LabelHelper}
	}
	var ids []string
	for _, l := range labels {
		list, err := e.Client().ContainerList(context.Background(), client.ContainerListOptions{
			All:     true,
			Filters: make(client.Filters).Add("label", volume.LabelHelper).Add("label", l),
		})
		if err != nil {
			tb.Fatal(err)
		}
		for _, c := range list.Items {
			ids = append(ids, c.ID)
		}
	}
	return ids
}

// Agents lists the running resident agents that mount vol (of any
// process: tests in other packages start their own on the same engine,
// each with its own volumes).
func Agents(tb testing.TB, e *engine.Engine, vol string) []string {
	tb.Helper()
	list, err := e.Client().ContainerList(context.Background(), client.ContainerListOptions{
		Filters: make(client.Filters).Add("label", volume.LabelAgent+"=true").Add("status", "running"),
	})
	if err != nil {
		tb.Fatal(err)
	}
	var ids []string
	for _, c := range list.Items {
		if slices.Contains(strings.Split(c.Labels[volume.LabelVolume], ","), vol) {
			ids = append(ids, c.ID)
		}
	}
	return ids
}

// VolumeLabels turns volume names into Helpers arguments.
func VolumeLabels(vols ...string) []string {
	var out []string
	for _, v := range vols {
		out = append(out, volume.LabelVolume+"="+v)
	}
	return out
}

// ReadMountpoint reads the file rel inside vol where the engine keeps the
// volume on this machine (`podman volume inspect`'s Mountpoint), as root:
// what is really in the volume, whatever any container or the engine's
// copy API says.
func (e *Engine) ReadMountpoint(tb testing.TB, vol, rel string) ([]byte, error) {
	tb.Helper()
	res, err := e.Client().VolumeInspect(context.Background(), vol, client.VolumeInspectOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	if res.Volume.Mountpoint == "" {
		tb.Fatalf("volume %s has no Mountpoint", vol)
	}
	return os.ReadFile(filepath.Join(res.Volume.Mountpoint, rel))
}

// SSHHost is the ssh host alias scripts/ssh-env.sh sets up: an sshd on
// 127.0.0.1 whose "remote" docker CLI is this machine's.
const SSHHost = "mc-broker-test-sshd"

// NeedSSH checks that `ssh SSHHost docker version` works without a prompt,
// skipping the test when it does not, or failing it when CI=true. It
// returns the port the alias points at (`ssh -G`).
func NeedSSH(tb testing.TB) (port string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ssh", "-o", "BatchMode=yes", SSHHost, "docker", "version", "--format", "{{.Server.Version}}").CombinedOutput()
	if err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("CI=true and `ssh %s docker version` fails (scripts/ssh-env.sh sets it up): %v\n%s", SSHHost, err, out)
		}
		tb.Skipf("`ssh %s docker version` fails (run scripts/ssh-env.sh as root): %v", SSHHost, err)
	}
	g, err := exec.Command("ssh", "-G", SSHHost).Output()
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(string(g), "\n") {
		if p, ok := strings.CutPrefix(line, "port "); ok {
			return p
		}
	}
	tb.Fatalf("ssh -G %s names no port", SSHHost)
	return ""
}

// SSH is the machine's Docker engine reached as DOCKER_HOST=ssh://SSHHost
// (see NeedSSH).
func SSH(tb testing.TB) *Engine {
	tb.Helper()
	NeedSSH(tb)
	e, err := dial("ssh", "ssh://"+SSHHost)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { e.Shared.Close() })
	return e
}

var (
	agentOnce sync.Once
	agentBin  string
	agentErr  error
)

// AgentBinary builds mc-broker as a static Linux binary (CGO_ENABLED=0)
// once per test process, points volume.AgentBinaryEnv at it for the rest
// of the test, and returns its path: a test binary is not mc-broker, so
// the resident agent cannot use it.
func AgentBinary(tb testing.TB) string {
	tb.Helper()
	agentOnce.Do(func() {
		dir, err := os.MkdirTemp("", "mc-broker-agent-")
		if err != nil {
			agentErr = err
			return
		}
		agentBin = filepath.Join(dir, "mc-broker")
		cmd := exec.Command("go", "build", "-o", agentBin, "github.com/mc-broker/mc-broker/cmd/mc-broker")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
		if out, err := cmd.CombinedOutput(); err != nil {
			agentErr = fmt.Errorf("building a static mc-broker: %v\n%s", err, out)
		}
	})
	if agentErr != nil {
		tb.Fatal(agentErr)
	}
	tb.Setenv(volume.AgentBinaryEnv, agentBin)
	return agentBin
}
