package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/mc-broker/mc-broker/sinks/volume"
	"github.com/mc-broker/mc-broker/sinks/volume/volumetest"
)

// Issue 16's Podman report, end to end: against rootful and rootless
// Podman's Docker-compatible API, `mc-broker sync` with a volume copy puts
// the login in the volume (read where Podman keeps it on disk, as root),
// and the next sync finds it there instead of saying "created" again.
func TestPodmanVolumeSyncEndToEnd(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI=true: reading Podman's volumes on disk needs root")
		}
		t.Skip("reading Podman's volumes on disk needs root")
	}
	for _, rootless := range []bool{false, true} {
		e := volumetest.NeedPodman(t, rootless)
		t.Run(e.Name, func(t *testing.T) {
			home := t.TempDir()
			putFixture(t, "codex/auth.chatgpt.json", filepath.Join(home, ".codex/auth.json"))
			vol := e.UniqueVolume(t)
			cfg := filepath.Join(home, "config.yaml")
			writeFile(t, cfg, []byte("sources:\n  codex: {}\nsinks:\n  - {source: codex, volume: "+vol+", uid: 1000, gid: 1000}\n"))
			out, errOut, code := run(t, home, []string{e.Env()}, "sync", "--config", cfg)
			if code != 0 || !regexp.MustCompile(`(?m)^  created +volume `+vol+`:/auth.json \(`).MatchString(out) {
				t.Fatalf("first sync: exit %d\n%s%s", code, out, errOut)
			}
			want, _ := os.ReadFile(filepath.Join(home, ".codex/auth.json"))
			if got, err := e.ReadMountpoint(t, vol, "auth.json"); err != nil || string(got) != string(want) {
				t.Fatalf("the volume on disk holds %d bytes (%v), want the %d of the login", len(got), err, len(want))
			}
			if got := e.Run(t, vol, "cat /d/auth.json"); got != string(want) {
				t.Errorf("a container reads other bytes than the login")
			}
			out, errOut, code = run(t, home, []string{e.Env()}, "sync", "--config", cfg)
			if code != 0 || !strings.Contains(out, "1 unchanged") {
				t.Errorf("second sync: exit %d\n%s%s", code, out, errOut)
			}
			assertNoSecret(t, "sync on Podman", out+errOut)
			if left := volumetest.Helpers(t, e.Engine, volumetest.VolumeLabels(vol)...); len(left) != 0 {
				t.Errorf("%d helper containers left", len(left))
			}
		})
	}
}

// One config, three engines: the environment's, one named by engine:
// ssh://, one by a docker context whose endpoint is ssh://. (The "remote"
// host of scripts/ssh-env.sh is this machine, so all three are the same
// Docker engine here, reached three ways.)
func TestEnginesPerCopyEndToEnd(t *testing.T) {
	volumetest.NeedSSH(t)
	_, e := volumetest.NeedEngine(t)
	home := t.TempDir()
	putFixture(t, "claude/credentials.valid.json", filepath.Join(home, ".claude/.credentials.json"))
	ctxCmd := exec.Command("docker", "context", "create", "buildbox", "--docker", "host=ssh://"+volumetest.SSHHost)
	ctxCmd.Env = append(os.Environ(), "DOCKER_CONFIG="+filepath.Join(home, ".docker"))
	if out, err := ctxCmd.CombinedOutput(); err != nil {
		t.Fatalf("docker context create: %v\n%s", err, out)
	}
	local, viaSSH, viaCtx := volumetest.UniqueVolume(t, e), volumetest.UniqueVolume(t, e), volumetest.UniqueVolume(t, e)
	cfg := filepath.Join(home, "config.yaml")
	writeFile(t, cfg, []byte(`sources:
  claude: {}
sinks:
  - {source: claude, volume: `+local+`}
  - {source: claude, volume: `+viaSSH+`, engine: 'ssh://`+volumetest.SSHHost+`'}
  - {source: claude, volume: `+viaCtx+`, context: buildbox}
`))
	env := []string{dockerHostEnv(e)}
	out, errOut, code := run(t, home, env, "sync", "--config", cfg)
	if code != 0 {
		t.Fatalf("sync: exit %d\n%s%s", code, out, errOut)
	}
	for _, loc := range []string{local + ":/.credentials.json", viaSSH + ":/.credentials.json on ssh://" + volumetest.SSHHost, viaCtx + ":/.credentials.json on context buildbox"} {
		if !regexp.MustCompile(`(?m)^  created +volume ` + regexp.QuoteMeta(loc) + ` \(`).MatchString(out) {
			t.Errorf("no 'created volume %s' in\n%s", loc, out)
		}
	}
	want := volumetest.Run(t, local, "cat /d/.credentials.json")
	if !strings.Contains(want, `"expiresAt": 4102444800000`) {
		t.Fatalf("the local volume does not hold the login")
	}
	for _, vol := range []string{viaSSH, viaCtx} {
		if got := volumetest.Run(t, vol, "cat /d/.credentials.json"); got != want {
			t.Errorf("volume %s does not hold the login", vol)
		}
	}
	out, errOut, code = run(t, home, env, "sync", "--config", cfg)
	if code != 0 || !strings.Contains(out, "3 unchanged") {
		t.Errorf("second sync: exit %d\n%s%s", code, out, errOut)
	}
	statusOut, _, _ := run(t, home, env, "status", "--config", cfg, "--json")
	if !strings.Contains(statusOut, `"location": "volume `+viaSSH+`:/.credentials.json on ssh://`+volumetest.SSHHost+`"`) {
		t.Errorf("status --json does not name the ssh copy:\n%s", statusOut)
	}
	for _, o := range []string{out, errOut, statusOut} {
		assertNoSecret(t, "sync over ssh", o)
	}
	if left := volumetest.Helpers(t, e, volumetest.VolumeLabels(local, viaSSH, viaCtx)...); len(left) != 0 {
		t.Errorf("%d helper containers left", len(left))
	}

	// The build box goes away: its copies fail with what ssh said, the
	// local one is still written, exit 1.
	writeFile(t, cfg, []byte(`sources:
  claude: {}
sinks:
  - {source: claude, volume: `+local+`}
  - {source: claude, volume: `+viaSSH+`, engine: 'ssh://root@127.0.0.1:1'}
`))
	refreshed, _ := os.ReadFile(filepath.Join(home, ".claude/.credentials.json"))
	refreshed = []byte(strings.Replace(string(refreshed), `"expiresAt": 4102444800000`, `"expiresAt": 4102444800001`, 1))
	writeFile(t, filepath.Join(home, ".claude/.credentials.json"), refreshed)
	out, errOut, code = run(t, home, env, "sync", "--config", cfg)
	if code != 1 || !strings.Contains(out, "docker engine not reachable at ssh://root@127.0.0.1:1: ssh: connect to host 127.0.0.1 port 1: Connection refused") {
		t.Errorf("sync with the build box down: exit %d\n%s%s", code, out, errOut)
	}
	if !regexp.MustCompile(`(?m)^  updated +volume ` + local + `:`).MatchString(out) {
		t.Errorf("the local copy was not written while the build box was down:\n%s", out)
	}
}

// A watcher keeps a volume on an ssh:// engine in sync both ways: polling
// it over ssh, it takes back a refresh a container's CLI wrote there.
func TestWatchOverSSH(t *testing.T) {
	volumetest.NeedSSH(t)
	e, vol, w := watchWithVolumeOn(t, "300ms", "    engine: ssh://"+volumetest.SSHHost+"\n", 10*time.Second)
	first := w.forCopy(w.login(1))
	waitFor(t, 20*time.Second, "the volume copy over ssh", func() (bool, string) {
		return volumetest.Run(t, vol, "cat /d/.credentials.json 2>/dev/null; true") == string(first), "not there yet"
	})
	newer := w.forCopy(w.login(2))
	cmd := exec.Command("docker", "-H", e.Endpoint.Host, "run", "--rm", "-i", "--network", "none", "-v", vol+":/d", volumetest.Image,
		"sh", "-c", "cat > /d/.tmp && mv /d/.tmp /d/.credentials.json")
	cmd.Stdin = strings.NewReader(string(newer))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("container write: %v\n%s", err, out)
	}
	took := waitFor(t, 20*time.Second, "the volume's newer login to reach the host over ssh", func() (bool, string) {
		return string(w.forCopy(read(w.source))) == string(newer), "the host holds something else"
	})
	t.Logf("a refresh inside a volume on an ssh:// engine reached the host in %v (poll interval 300ms)", took)
}

// Issue 11's measurement, end to end: two users of one Docker engine, no
// config. The first user's sync makes the default volume mc-codex-auth,
// labelled as theirs, with their ChatGPT login. The second user's sync and
// run neither take that login into their own ~/.codex/auth.json nor write
// theirs over it: the copy fails, saying whose the volume is and what to
// do.
func TestTwoUsersOfOneEngine(t *testing.T) {
	_, e := volumetest.NeedEngine(t)
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI=true: this test runs the second user as uid 65534, which needs root")
		}
		t.Skip("needs root to run the second user as uid 65534")
	}
	sock, ok := strings.CutPrefix(e.Endpoint.Host, "unix://")
	var st syscall.Stat_t
	if !ok || syscall.Stat(sock, &st) != nil {
		t.Skipf("the engine is not on a local socket (%s)", e.Endpoint.Host)
	}
	claimDefaultVolumes(t, e)
	env := []string{dockerHostEnv(e)}

	alice := t.TempDir()
	putFixture(t, "codex/auth.chatgpt.json", filepath.Join(alice, ".codex/auth.json"))
	out, errOut, code := run(t, alice, env, "sync")
	if code != 0 || !regexp.MustCompile(`(?m)^  created +volume mc-codex-auth:/auth.json`).MatchString(out) {
		t.Fatalf("first user's sync: exit %d\n%s%s", code, out, errOut)
	}
	alicesLogin, _ := os.ReadFile(filepath.Join(alice, ".codex/auth.json"))

	// The second user: uid 65534, allowed on the engine's socket by its
	// group, logged in to another (older) ChatGPT account.
	bob, err := os.MkdirTemp("", "mc-broker-bob-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(bob) })
	var login map[string]any
	if err := json.Unmarshal(alicesLogin, &login); err != nil {
		t.Fatal(err)
	}
	login["last_refresh"] = "2026-01-01T08:00:00.000000Z"
	login["tokens"].(map[string]any)["account_id"] = "11111111-fake-other-acct"
	bobsLogin, _ := json.MarshalIndent(login, "", "  ")
	writeFile(t, filepath.Join(bob, ".codex/auth.json"), bobsLogin)
	if err := filepath.Walk(bob, func(p string, _ os.FileInfo, err error) error {
		if err == nil {
			err = os.Chown(p, 65534, 65534)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	asBob := func(args ...string) (string, int) {
		t.Helper()
		cmd := exec.Command(filepath.Join(binDir, "mc-broker"), args...)
		cmd.Env = append([]string{"HOME=" + bob, "PATH=" + os.Getenv("PATH"), "USER=bob"}, env...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{st.Gid}}}
		outB, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		assertNoSecret(t, "the second user's output", string(outB))
		return string(outB), code
	}
	owner := "root@"
	if u, err := user.Current(); err == nil {
		owner = u.Username + "@"
	}
	// sync exits 1; run says so on stderr and runs the command anyway.
	for _, args := range [][]string{{"sync"}, {"run", "--", "true"}} {
		outB, code := asBob(args...)
		if want := map[string]int{"sync": 1, "run": 0}[args[0]]; code != want {
			t.Errorf("second user's %s: exit %d, want %d\n%s", args[0], code, want, outB)
		}
		if !strings.Contains(outB, "volume mc-codex-auth belongs to another user, "+owner) || !strings.Contains(outB, "adopt: true") {
			t.Errorf("second user's %s does not say whose the volume is:\n%s", args[0], outB)
		}
		if got, _ := os.ReadFile(filepath.Join(bob, ".codex/auth.json")); string(got) != string(bobsLogin) {
			t.Fatalf("the second user's %s changed their own login (took the first user's?)", args[0])
		}
		if got := volumetest.Run(t, "mc-codex-auth", "cat /d/auth.json"); got != string(alicesLogin) {
			t.Fatalf("the second user's %s changed the first user's volume", args[0])
		}
	}
	// The first user's own runs are unaffected.
	if out, errOut, code := run(t, alice, env, "sync"); code != 0 || !strings.Contains(out, "unchanged") {
		t.Errorf("first user's next sync: exit %d\n%s%s", code, out, errOut)
	}
	vi, err := e.Client().VolumeInspect(context.Background(), "mc-codex-auth", client.VolumeInspectOptions{})
	if err != nil || vi.Volume.Labels[volume.LabelOwner] != volume.CurrentOwner().ID {
		t.Errorf("mc-codex-auth labels %v (%v), want the first user as owner", vi.Volume.Labels, err)
	}
}
