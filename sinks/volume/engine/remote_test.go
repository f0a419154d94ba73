package engine_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/mc-broker/mc-broker/sinks/volume/engine"
	"github.com/mc-broker/mc-broker/sinks/volume/volumetest"
)

// An ssh:// engine is reached as the docker CLI reaches it: ssh runs
// `docker system dial-stdio` on the remote host (here the machine's own
// engine through the test sshd), in every form the docker CLI accepts.
func TestSSHEngine(t *testing.T) {
	port := volumetest.NeedSSH(t)
	docker := volumetest.Docker(t)
	want, err := docker.Client().Info(context.Background(), client.InfoOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{
		"ssh://" + volumetest.SSHHost,
		"ssh://root@" + volumetest.SSHHost + ":" + port,
		"ssh://" + volumetest.SSHHost + "/var/run/docker.sock",
	} {
		t.Run(host, func(t *testing.T) {
			e, err := engine.Connect(context.Background(), envOf(map[string]string{"DOCKER_HOST": host}), t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			got, err := e.Client().Info(context.Background(), client.InfoOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if got.Info.ID != want.Info.ID || e.Podman() || !e.SSH() {
				t.Errorf("reached engine %s (podman %v), want the machine's %s", got.Info.ID, e.Podman(), want.Info.ID)
			}
			// The connection is kept open: ssh's arguments are the docker
			// CLI's, with no prompt allowed, and nothing but the host, user,
			// port and socket.
			children := sshChildren(t)
			if len(children) == 0 {
				t.Fatal("no ssh process while connected")
			}
			args := strings.Join(children[0], " ")
			wantArgs := map[string]string{
				"ssh://" + volumetest.SSHHost:                          "ssh -o BatchMode=yes -o ConnectTimeout=10 -T -- " + volumetest.SSHHost + " docker system dial-stdio",
				"ssh://root@" + volumetest.SSHHost + ":" + port:        "ssh -o BatchMode=yes -o ConnectTimeout=10 -T -l root -p " + port + " -- " + volumetest.SSHHost + " docker system dial-stdio",
				"ssh://" + volumetest.SSHHost + "/var/run/docker.sock": "ssh -o BatchMode=yes -o ConnectTimeout=10 -T -- " + volumetest.SSHHost + " docker --host=unix:///var/run/docker.sock system dial-stdio",
			}[host]
			if args != wantArgs {
				t.Errorf("ssh ran as\n  %s\nwant\n  %s", args, wantArgs)
			}
		})
	}
}

// A docker context whose endpoint is ssh:// works for DOCKER_CONTEXT and
// for a copy's `context:` alike.
func TestSSHContext(t *testing.T) {
	volumetest.NeedSSH(t)
	home := t.TempDir()
	cfg := filepath.Join(home, ".docker")
	dockerCLI(t, cfg, "context", "create", "buildbox", "--docker", "host=ssh://"+volumetest.SSHHost)
	for name, connect := range map[string]func() (*engine.Engine, error){
		"DOCKER_CONTEXT": func() (*engine.Engine, error) {
			return engine.Connect(context.Background(), envOf(map[string]string{"DOCKER_CONTEXT": "buildbox"}), home)
		},
		"context:": func() (*engine.Engine, error) {
			return engine.ConnectTo(context.Background(), engine.Selection{Context: "buildbox"}, envOf(nil), home)
		},
	} {
		e, err := connect()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if e.Endpoint.Host != "ssh://"+volumetest.SSHHost || e.Endpoint.Context != "buildbox" {
			t.Errorf("%s: endpoint %+v", name, e.Endpoint)
		}
		e.Close()
	}
}

// When ssh fails, the error says what ssh (or the remote docker CLI) said,
// quickly, and never asks for a password.
func TestSSHFailuresSayWhatSSHSaid(t *testing.T) {
	port := volumetest.NeedSSH(t)
	for host, want := range map[string]string{
		"ssh://nobody@" + volumetest.SSHHost:                              "Permission denied (publickey)",
		"ssh://root@127.0.0.1:1":                                          "Connection refused",
		"ssh://" + volumetest.SSHHost + "/nowhere.sock":                   "/nowhere.sock",
		"ssh://root@" + volumetest.SSHHost + ":" + port + "/nowhere.sock": "/nowhere.sock",
	} {
		t.Run(host, func(t *testing.T) {
			start := time.Now()
			_, err := engine.Connect(context.Background(), envOf(map[string]string{"DOCKER_HOST": host}), t.TempDir())
			var ue *engine.UnreachableError
			if !errors.As(err, &ue) {
				t.Fatalf("got %v, want *UnreachableError", err)
			}
			if !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "docker engine not reachable at "+host) {
				t.Errorf("message %q, want it to name %q", err, want)
			}
			// A failing ping is a HEAD and a GET, each tried twice: four
			// ssh runs, bounded by SSHPingTimeout (plus ending ssh).
			if d := time.Since(start); d > engine.SSHPingTimeout+2*time.Second {
				t.Errorf("took %v", d)
			}
		})
	}
}

// Podman answers with Libpod headers: the engine knows it is Podman
// (rootful and rootless), and Docker is not taken for Podman.
func TestPodmanIsRecognised(t *testing.T) {
	if volumetest.Docker(t).Podman() {
		t.Error("Docker taken for Podman")
	}
	for _, rootless := range []bool{false, true} {
		if e := volumetest.NeedPodman(t, rootless); !e.Podman() {
			t.Errorf("%s not recognised as Podman", e.Name)
		}
	}
}

// With nothing set (no DOCKER_HOST, no context) and no Docker engine at the
// default socket, Podman's socket is found: rootless Podman's under
// $XDG_RUNTIME_DIR first, then rootful Podman's.
func TestPodmanSocketFoundWhenNoDockerAnswers(t *testing.T) {
	rootful := volumetest.NeedPodman(t, false)
	rootless := volumetest.NeedPodman(t, true)
	runtimeDir := filepath.Dir(filepath.Dir(strings.TrimPrefix(rootless.Host, "unix://")))
	noDocker := "unix://" + filepath.Join(t.TempDir(), "docker.sock")
	defer engine.UseSockets(noDocker, strings.TrimPrefix(rootful.Host, "unix://"))()

	e, err := engine.Connect(context.Background(), envOf(map[string]string{"XDG_RUNTIME_DIR": runtimeDir}), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if e.Endpoint.Host != rootless.Host || e.Endpoint.From != engine.FromPodman || !e.Podman() {
		t.Errorf("with XDG_RUNTIME_DIR: %+v", e.Endpoint)
	}
	e.Close()
	e, err = engine.Connect(context.Background(), envOf(nil), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if e.Endpoint.Host != rootful.Host || !e.Podman() {
		t.Errorf("without XDG_RUNTIME_DIR: %+v", e.Endpoint)
	}
	e.Close()

	// Nothing anywhere: the error names the Docker socket, as before.
	defer engine.UseSockets(noDocker, filepath.Join(t.TempDir(), "podman.sock"))()
	_, err = engine.Connect(context.Background(), envOf(nil), t.TempDir())
	var ue *engine.UnreachableError
	if !errors.As(err, &ue) || ue.Host != noDocker {
		t.Errorf("no engine at all: %v", err)
	}
	// An engine chosen explicitly is never replaced by Podman.
	_, err = engine.Connect(context.Background(), envOf(map[string]string{"DOCKER_HOST": noDocker, "XDG_RUNTIME_DIR": runtimeDir}), t.TempDir())
	if !errors.As(err, &ue) || ue.Host != noDocker {
		t.Errorf("DOCKER_HOST set: %v", err)
	}
}

// sshChildren returns the argument lists of this process's ssh children.
func sshChildren(t *testing.T) [][]string {
	t.Helper()
	var out [][]string
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, st := range stats {
		data, err := os.ReadFile(st)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		rest := string(data[strings.LastIndexByte(string(data), ')')+2:])
		fields := strings.Fields(rest)
		if len(fields) < 2 || fields[1] != strconv.Itoa(os.Getpid()) || !strings.Contains(string(data), "(ssh)") {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join(filepath.Dir(st), "cmdline"))
		if err == nil {
			out = append(out, strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00"))
		}
	}
	return out
}

// A password in an ssh:// address is refused, and not repeated.
func TestSSHAddressWithPasswordIsRefused(t *testing.T) {
	err := engine.CheckHost("ssh://me:hunter2@box")
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("CheckHost = %v", err)
	}
	for _, host := range []string{"ssh://me@box:2222/run/docker.sock", "ssh://box"} {
		if err := engine.CheckHost(host); err != nil {
			t.Errorf("%s: %v", host, err)
		}
	}
}
