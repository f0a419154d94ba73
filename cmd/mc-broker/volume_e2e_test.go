package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/mc-broker/mc-broker/broker/credential"
	"github.com/mc-broker/mc-broker/broker/kinds/claude"
	"github.com/mc-broker/mc-broker/sinks/volume"
	"github.com/mc-broker/mc-broker/sinks/volume/engine"
	"github.com/mc-broker/mc-broker/sinks/volume/volumetest"
)

// dockerHostEnv is the environment that points the binary at e.
func dockerHostEnv(e *engine.Engine) string { return "DOCKER_HOST=" + e.Endpoint.Host }

// volumeConfig writes a config with one volume copy per CLI (uid/gid 1000,
// Codex under /home/.codex; Claude's with its companion) and one directory
// copy of Claude.
func volumeConfig(t *testing.T, home string, vols [3]string) string {
	t.Helper()
	cfg := filepath.Join(home, "config.yaml")
	writeFile(t, cfg, []byte(fmt.Sprintf(`sources:
  claude: {}
  codex: {}
  gemini: {}
sinks:
  - {source: claude, volume: %s, uid: 1000, gid: 1000, companions: true}
  - {source: codex, volume: %s, path: /home/.codex, uid: 1000, gid: 1000}
  - {source: gemini, volume: %s, uid: 1000, gid: 1000}
  - {source: claude, dir: ~/auth/claude}
`, vols[0], vols[1], vols[2])))
	return cfg
}

func loginAll(t *testing.T, home string) {
	t.Helper()
	putFixture(t, "claude/credentials.valid.json", filepath.Join(home, ".claude/.credentials.json"))
	putFixture(t, "codex/auth.chatgpt.json", filepath.Join(home, ".codex/auth.json"))
	putFixture(t, "gemini/oauth_creds.json", filepath.Join(home, ".gemini/oauth_creds.json"))
}

func TestVolumeCopiesEndToEnd(t *testing.T) {
	_, e := volumetest.NeedEngine(t)
	home := t.TempDir()
	loginAll(t, home)
	// A Claude login that expires as real ones do, so that a container's
	// refresh below is newer and plausible.
	writeFile(t, filepath.Join(home, ".claude/.credentials.json"), fixtureExpiringIn(t, "claude/credentials.valid.json", time.Hour, "FIRST"))
	vols := [3]string{volumetest.UniqueVolume(t, e), volumetest.UniqueVolume(t, e), volumetest.UniqueVolume(t, e)}
	cfg := volumeConfig(t, home, vols)
	env := []string{dockerHostEnv(e)}

	var out, errOut string
	var code int
	first := volumetest.Events(t, e, vols[:], func() { out, errOut, code = run(t, home, env, "sync", "--config", cfg) })
	if code != 0 {
		t.Fatalf("sync exit %d\n%s%s", code, out, errOut)
	}
	for _, v := range []string{vols[0] + ":/.credentials.json", vols[1] + ":/home/.codex/auth.json", vols[2] + ":/oauth_creds.json"} {
		if !regexp.MustCompile(`(?m)^  created +volume ` + regexp.QuoteMeta(v) + ` \(`).MatchString(out) {
			t.Errorf("no 'created volume %s' in\n%s", v, out)
		}
	}
	// The companion a volume got is reported, as for a directory.
	if !regexp.MustCompile(`(?m)^  created +volume ` + regexp.QuoteMeta(vols[0]) + `:/.credentials.json \(.*added .claude.json`).MatchString(out) {
		t.Errorf("no 'added .claude.json' for the Claude volume in\n%s", out)
	}
	// Per volume copy: one helper container to read and write, and a fresh
	// one that reads the write back.
	if first["create"] != 6 || first["extract-to-dir"] != 3 || first["destroy"] != 6 {
		t.Errorf("first sync: events %v, want 6 creates, 3 writes, 6 removals", first)
	}

	// What a container started with the volume mounted sees: exactly the
	// copy (Claude's without mcpOAuth, as in the directory copy), 0600,
	// owned by 1000, in a 0700 directory owned by 1000.
	dirCopy, err := os.ReadFile(filepath.Join(home, "auth/claude/.credentials.json"))
	if err != nil {
		t.Fatal(err)
	}
	if got := volumetest.Run(t, vols[0], "cat /d/.credentials.json"); got != string(dirCopy) {
		t.Errorf("the Claude volume copy differs from the directory copy")
	}
	codex, _ := os.ReadFile(filepath.Join(home, ".codex/auth.json"))
	if got := volumetest.Run(t, vols[1], "cat /d/home/.codex/auth.json"); got != string(codex) {
		t.Errorf("the Codex volume copy differs from the host's auth.json")
	}
	if got := volumetest.Run(t, vols[1], "stat -c '%a %u %g' /d/home/.codex/auth.json /d/home/.codex /d"); got != "600 1000 1000\n700 1000 1000\n700 1000 1000\n" {
		t.Errorf("modes and owners:\n%s", got)
	}

	// A second sync reads each copy and writes none.
	second := volumetest.Events(t, e, vols[:], func() { out, errOut, code = run(t, home, env, "sync", "--config", cfg) })
	if code != 0 || !strings.Contains(out, "4 unchanged") {
		t.Fatalf("second sync exit %d\n%s%s", code, out, errOut)
	}
	if second["extract-to-dir"] != 0 || second["create"] != 3 {
		t.Errorf("second sync: events %v, want no write and only the 3 read containers", second)
	}

	// A container's CLI refreshed: the volume holds a newer login of the
	// same account than the host. It is taken back into the host and given
	// to the other copy. A blanked copy is repaired.
	refreshed, err := claude.Kind.ForCopy(fixtureExpiringIn(t, "claude/credentials.valid.json", 8*time.Hour, "NEW"), credential.CopyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	volumetest.Run(t, vols[0], "echo "+base64.StdEncoding.EncodeToString(refreshed)+" | base64 -d > /d/.credentials.json")
	volumetest.Run(t, vols[2], `echo '{"access_token":"","refresh_token":"","expiry_date":0}' > /d/oauth_creds.json`)
	out, errOut, code = run(t, home, env, "sync", "--config", cfg)
	if code != 0 {
		t.Fatalf("third sync exit %d\n%s%s", code, out, errOut)
	}
	if !regexp.MustCompile(`(?m)^  taken-back +volume ` + vols[0] + `:/.credentials.json`).MatchString(out) {
		t.Errorf("newer volume copy not taken back:\n%s", out)
	}
	if !regexp.MustCompile(`(?m)^  repaired +volume ` + vols[2] + `:/oauth_creds.json`).MatchString(out) {
		t.Errorf("broken volume copy not repaired:\n%s", out)
	}
	if got := volumetest.Run(t, vols[0], "cat /d/.credentials.json"); got != string(refreshed) {
		t.Errorf("the newer Claude login in the volume was overwritten")
	}
	if got, _ := os.ReadFile(filepath.Join(home, ".claude/.credentials.json")); !bytes.Contains(got, []byte("REFRESH-TOKEN-NEW")) {
		t.Errorf("the host did not take the volume's newer login back")
	}
	if got, _ := os.ReadFile(filepath.Join(home, "auth/claude/.credentials.json")); !bytes.Equal(got, refreshed) {
		t.Errorf("the directory copy did not get the volume's newer login")
	}
	gemini, _ := os.ReadFile(filepath.Join(home, ".gemini/oauth_creds.json"))
	if got := volumetest.Run(t, vols[2], "cat /d/oauth_creds.json"); got != string(gemini) {
		t.Errorf("the blanked Gemini copy was not replaced by the host's login")
	}

	// status reads volumes too, and nothing printed holds a secret.
	statusOut, statusErr, _ := run(t, home, env, "status", "--config", cfg, "--json")
	if !strings.Contains(statusOut, `"location": "volume `+vols[1]+`:/home/.codex/auth.json"`) || !strings.Contains(statusOut, `"in-sync"`) {
		t.Errorf("status --json:\n%s", statusOut)
	}
	for _, o := range []string{out, errOut, statusOut, statusErr} {
		assertNoSecret(t, "volume sync", o)
	}
	if left := volumetest.Helpers(t, e, volumetest.VolumeLabels(vols[:]...)...); len(left) != 0 {
		t.Errorf("%d helper containers left", len(left))
	}
}

// With no config and an engine, the defaults add mc-<cli>-auth volumes,
// for logged-in CLIs only. These are the real default names, so the test
// leaves a machine that already has any of them alone.
func TestDefaultVolumesOnlyForLoggedInCLIs(t *testing.T) {
	_, e := volumetest.NeedEngine(t)
	ctx := context.Background()
	claimDefaultVolumes(t, e)
	home := t.TempDir()
	putFixture(t, "codex/auth.chatgpt.json", filepath.Join(home, ".codex/auth.json"))
	out, errOut, code := run(t, home, []string{dockerHostEnv(e)}, "sync")
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	if !regexp.MustCompile(`(?m)^  created +volume mc-codex-auth:/auth.json \(`).MatchString(out) {
		t.Errorf("no default Codex volume:\n%s", out)
	}
	if errOut != "" {
		t.Errorf("stderr with an engine: %q", errOut)
	}
	for _, n := range []string{"mc-claude-auth", "mc-gemini-auth"} {
		if _, err := e.Client().VolumeInspect(ctx, n, client.VolumeInspectOptions{}); err == nil {
			t.Errorf("%s created for a CLI that is not logged in", n)
		}
	}
	ls, err := exec.Command("docker", "-H", e.Endpoint.Host, "volume", "ls", "-q", "--filter", "label="+volume.LabelManaged).Output()
	if err != nil || !strings.Contains(string(ls), "mc-codex-auth") {
		t.Errorf("docker volume ls --filter label=%s: %q %v", volume.LabelManaged, ls, err)
	}
}

// privateEngine is a dockerd of the test's own, on its own socket and data
// root, so that stopping it disturbs no one else using the machine's
// engine. It is always stopped when the test ends.
type privateEngine struct {
	t    *testing.T
	dir  string
	cmd  *exec.Cmd
	host string
}

func startPrivateEngine(t *testing.T) *privateEngine {
	t.Helper()
	_, err := exec.LookPath("dockerd")
	if err == nil {
		_, err = exec.LookPath("unshare")
	}
	if os.Geteuid() != 0 || err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true: the engine outage test needs root, dockerd and unshare (euid %d, %v)", os.Geteuid(), err)
		}
		t.Skip("needs root, dockerd and unshare to run an engine of its own")
	}
	// A short path: unix socket paths are limited to 108 bytes.
	dir, err := os.MkdirTemp("", "mcb-engine-")
	if err != nil {
		t.Fatal(err)
	}
	p := &privateEngine{t: t, dir: dir, host: "unix://" + filepath.Join(dir, "d.sock")}
	t.Cleanup(func() {
		p.stop()
		os.RemoveAll(dir)
	})
	p.start()
	return p
}

func (p *privateEngine) start() {
	p.t.Helper()
	ns := "mcbtest" + filepath.Base(p.dir)
	log, err := os.OpenFile(filepath.Join(p.dir, "dockerd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		p.t.Fatal(err)
	}
	defer log.Close()
	// In a network namespace of its own: a dockerd started with
	// --bridge none deletes the host's docker0, which the machine's engine
	// needs. unshare execs dockerd, so the pid is dockerd's.
	p.cmd = exec.Command("unshare", "--net", "dockerd", "--host", p.host,
		"--data-root", filepath.Join(p.dir, "data"), "--exec-root", filepath.Join(p.dir, "x"),
		"--pidfile", filepath.Join(p.dir, "d.pid"), "--bridge", "none", "--iptables=false", "--ip-masq=false",
		"--storage-driver", "vfs", "--containerd-namespace", ns, "--containerd-plugins-namespace", ns+"p")
	p.cmd.Stdout, p.cmd.Stderr = log, log
	if err := p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		e, err := engine.Dial(context.Background(), engine.Endpoint{Host: p.host, From: "test"})
		if err == nil {
			e.Close()
			return
		}
		if time.Now().After(deadline) {
			logText, _ := os.ReadFile(filepath.Join(p.dir, "dockerd.log"))
			p.t.Fatalf("private dockerd did not answer in 30 s: %v\n%s", err, logText)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop ends the dockerd this test started (by its pid) and waits for it;
// dockerd stops the containerd it started itself.
func (p *privateEngine) stop() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		p.cmd.Process.Kill()
		<-done
	}
	p.cmd = nil
}

func (p *privateEngine) engine() *engine.Engine {
	p.t.Helper()
	e, err := engine.Dial(context.Background(), engine.Endpoint{Host: p.host, From: "test"})
	if err != nil {
		p.t.Fatal(err)
	}
	p.t.Cleanup(func() { e.Close() })
	return e
}

// The engine stops between two syncs, with a crashed run's helper left
// behind: the volume copy fails with a clear error, the directory copy is
// still written, exit 1; once the engine is back the next sync succeeds and
// no helper container is left.
func TestEngineOutage(t *testing.T) {
	p := startPrivateEngine(t)
	home := t.TempDir()
	putFixture(t, "claude/credentials.expired-refreshable.json", filepath.Join(home, ".claude/.credentials.json"))
	cfg := filepath.Join(home, "config.yaml")
	writeFile(t, cfg, []byte("sources:\n  claude: {}\nsinks:\n  - {source: claude, volume: mc-outage-test}\n  - {source: claude, dir: ~/auth/claude}\n"))
	env := []string{"DOCKER_HOST=" + p.host}
	if out, errOut, code := run(t, home, env, "sync", "--config", cfg); code != 0 {
		t.Fatalf("sync with the engine up: exit %d\n%s%s", code, out, errOut)
	}

	// A crashed run's helper: labelled, made by a pid that is gone.
	e := p.engine()
	host, _ := os.Hostname()
	dead := exec.Command("true")
	dead.Run()
	res, err := e.Client().ContainerCreate(context.Background(), client.ContainerCreateOptions{
		Image: volume.HelperImage,
		Config: &container.Config{Cmd: []string{"/x"}, Labels: map[string]string{
			volume.LabelManaged: "true", volume.LabelHelper: "copy", volume.LabelHost: host, volume.LabelPID: fmt.Sprint(dead.Process.Pid),
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	e.Close()

	p.stop()
	// The host's login moves on while the engine is away.
	putFixture(t, "claude/credentials.valid.json", filepath.Join(home, ".claude/.credentials.json"))
	start := time.Now()
	out, errOut, code := run(t, home, env, "sync", "--config", cfg)
	if code != 1 {
		t.Errorf("exit %d, want 1\n%s%s", code, out, errOut)
	}
	if !strings.Contains(out, "failed       volume mc-outage-test:/.credentials.json (docker engine not reachable at "+p.host+": is Docker Desktop / colima running?)") {
		t.Errorf("no clear error in\n%s%s", out, errOut)
	}
	if !regexp.MustCompile(`updated +` + regexp.QuoteMeta(filepath.Join(home, "auth/claude/.credentials.json"))).MatchString(out) {
		t.Errorf("directory copy not written while the engine was away:\n%s", out)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("sync with no engine took %v", d)
	}

	p.start()
	e = p.engine()
	if out, errOut, code := run(t, home, env, "sync", "--config", cfg); code != 0 || !regexp.MustCompile(`updated +volume mc-outage-test`).MatchString(out) {
		t.Errorf("sync after the engine came back: exit %d\n%s%s", code, out, errOut)
	}
	if left := volumetest.Helpers(t, e); len(left) != 0 {
		t.Errorf("%d helper containers left after the engine came back (the crashed run's was %s)", len(left), res.ID[:12])
	}
	if bytes.Contains([]byte(out+errOut), []byte("FAKE")) {
		t.Error("output shows a secret")
	}
}

// Ctrl-C during a sync cancels the run instead of killing it, so that a
// volume copy removes its helper container: here the binary waits for a
// volume's lock held by the test, gets SIGINT, and exits at once with the
// copy failed, long before the lock's 10 s timeout.
func TestInterruptCancelsTheRun(t *testing.T) {
	_, e := volumetest.NeedEngine(t)
	home := t.TempDir()
	putFixture(t, "claude/credentials.valid.json", filepath.Join(home, ".claude/.credentials.json"))
	vol := volumetest.UniqueVolume(t, e)
	cfg := filepath.Join(home, "config.yaml")
	writeFile(t, cfg, []byte("sources:\n  claude: {}\nsinks:\n  - {source: claude, volume: "+vol+"}\n"))
	state := filepath.Join(home, "state")
	lockPath := volume.LockFile(filepath.Join(state, "mc-broker", "locks"), vol, "/")
	if err := os.MkdirAll(filepath.Dir(lockPath), 0o700); err != nil {
		t.Fatal(err)
	}
	lock, err := os.OpenFile(lockPath, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(lock.Fd()), &st); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(filepath.Join(binDir, "mc-broker"), "sync", "--config", cfg)
	cmd.Env = []string{"HOME=" + home, "PATH=" + os.Getenv("PATH"), "XDG_STATE_HOME=" + state, dockerHostEnv(e)}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// mc-broker polls the lock; wait until it has tried it at least once,
	// seen as its open file descriptor on the lock file.
	waitFor(t, 10*time.Second, "the run to hold the volume lock", func() (bool, string) { return holdsOpen(cmd.Process.Pid, st.Ino), "not yet" })
	start := time.Now()
	cmd.Process.Signal(os.Interrupt)
	err = cmd.Wait()
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("took %v to stop after SIGINT", d)
	}
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Errorf("exit %v, want 1\n%s", err, out.String())
	}
	if !regexp.MustCompile(`failed +volume ` + vol + `:/.credentials.json \(.*context canceled`).MatchString(out.String()) {
		t.Errorf("the interrupted copy is not reported:\n%s", out.String())
	}
	if left := volumetest.Helpers(t, e, volumetest.VolumeLabels(vol)...); len(left) != 0 {
		t.Errorf("%d helper containers left", len(left))
	}
}

// holdsOpen reports whether process pid has a file with inode ino open.
func holdsOpen(pid int, ino uint64) bool {
	fds, _ := filepath.Glob(fmt.Sprintf("/proc/%d/fd/*", pid))
	for _, fd := range fds {
		var st syscall.Stat_t
		if syscall.Stat(fd, &st) == nil && st.Ino == ino {
			return true
		}
	}
	return false
}

// TestWatchAdoptsARefreshInsideAVolume: a container's CLI refreshes the
// login inside a named volume; watch notices within its poll interval
// (no inotify reaches inside a volume), writes it back into the host's
// file and fans it out to the directory copy. Polling with nothing changed
// creates no container.
func TestWatchAdoptsARefreshInsideAVolume(t *testing.T) {
	e, vol, w := watchWithVolume(t, "200ms")
	first := w.forCopy(w.login(1))
	waitFor(t, 10*time.Second, "the volume copy", func() (bool, string) {
		return volumetest.Run(t, vol, "cat /d/.credentials.json") == string(first), "not there yet"
	})

	// The first poll creates the sink's one poll container (kept, never
	// started) and, as a first answer, asks for one pass (a read). Once
	// settled, idle polls create no container: some 0.6 s window (three
	// polls) within the next few must see none.
	idle := false
	for i := 0; i < 5 && !idle; i++ {
		idle = volumetest.CountCreates(t, e, []string{vol}, func() { time.Sleep(600 * time.Millisecond) }) == 0
	}
	if !idle {
		t.Error("idle polling kept creating containers")
	}

	// The container's CLI writes a newer login (temp + rename, as Claude does).
	newer := w.forCopy(w.login(2))
	cmd := exec.Command("docker", "run", "--rm", "-i", "--network", "none", "-v", vol+":/d", volumetest.Image,
		"sh", "-c", "cat > /d/.tmp && mv /d/.tmp /d/.credentials.json")
	cmd.Stdin = bytes.NewReader(newer)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("container write: %v\n%s", err, out)
	}
	took := waitFor(t, 5*time.Second, "the volume's newer login to reach the host", func() (bool, string) {
		return bytes.Equal(w.forCopy(read(w.source)), newer), "the host holds something else"
	})
	t.Logf("a refresh inside the volume reached the host in %v (poll interval 200ms)", took)
	waitFor(t, 5*time.Second, "the directory copy to follow", func() (bool, string) {
		return copiesHold(w.copies, newer)
	})
	if n := len(w.backups()); n != 1 {
		t.Errorf("%d backups, want 1", n)
	}
}

// TestWatchAddsDefaultVolumesWhenTheEngineComesUp: a watcher on the
// built-in defaults started before Docker (a service at login, Docker
// Desktop still starting) gains the default volume copies once the engine
// answers, without a SIGHUP.
func TestWatchAddsDefaultVolumesWhenTheEngineComesUp(t *testing.T) {
	_, e := volumetest.NeedEngine(t)
	ctx := context.Background()
	claimDefaultVolumes(t, e)
	realSock, ok := strings.CutPrefix(e.Endpoint.Host, "unix://")
	if !ok {
		t.Skipf("the engine is not on a unix socket (%s)", e.Endpoint.Host)
	}
	root := t.TempDir()
	home := filepath.Join(root, "home")
	putFixture(t, "codex/auth.chatgpt.json", filepath.Join(home, ".codex/auth.json"))
	sock := filepath.Join(root, "docker.sock") // nothing there yet
	cmd := exec.Command(filepath.Join(binDir, "mc-broker"), "watch", "--poll-interval", "200ms", "--log-format", "json")
	cmd.Env = []string{"HOME=" + home, "PATH=" + os.Getenv("PATH"), "XDG_STATE_HOME=" + filepath.Join(root, "state"), "DOCKER_HOST=unix://" + sock}
	var logs bytes.Buffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		if t.Failed() {
			t.Logf("watch logs:\n%s", logs.String())
		}
	}()
	waitFor(t, 10*time.Second, "the watcher's first pass", func() (bool, string) {
		_, err := os.Stat(filepath.Join(root, "state", "mc-broker", "watch.json"))
		return err == nil, "no state file"
	})
	if _, err := e.Client().VolumeInspect(ctx, "mc-codex-auth", client.VolumeInspectOptions{}); err == nil {
		t.Fatal("a volume was made while no engine answered")
	}

	// Docker comes up.
	if err := os.Symlink(realSock, sock); err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(filepath.Join(home, ".codex/auth.json"))
	waitFor(t, 10*time.Second, "the default Codex volume", func() (bool, string) {
		if _, err := e.Client().VolumeInspect(ctx, "mc-codex-auth", client.VolumeInspectOptions{}); err != nil {
			return false, "no volume yet"
		}
		return volumetest.Run(t, "mc-codex-auth", "cat /d/auth.json 2>/dev/null; true") == string(want), "not written yet"
	})
	for _, n := range []string{"mc-claude-auth", "mc-gemini-auth"} {
		if _, err := e.Client().VolumeInspect(ctx, n, client.VolumeInspectOptions{}); err == nil {
			t.Errorf("volume %s made for a CLI that is not logged in", n)
		}
	}
}

// TestWatchFileEventsDoNotReadVolumes: a change on the host is fanned out
// to a volume copy with its update's helper container and the one that
// reads the write back, and no read before: the
// pass a file event starts does not first read the volume to look for a
// newer login there (the poller says when a volume changed), so directory
// copies never wait for a Docker round trip before the fan-out.
func TestWatchFileEventsDoNotReadVolumes(t *testing.T) {
	e, vol, w := watchWithVolume(t, "1h")
	newer := w.forCopy(w.login(2))
	ev := volumetest.Events(t, e, []string{vol}, func() {
		w.replace(w.source, w.login(2))
		waitFor(t, 5*time.Second, "the volume copy to follow the host", func() (bool, string) {
			return volumetest.Run(t, vol, "cat /d/.credentials.json") == string(newer), "not yet"
		})
	})
	// Events counts mc-broker's helpers only (the test's docker run
	// readers carry no helper label): one container that reads and writes,
	// and one that reads the write back.
	if ev["create"] != 2 || ev["archive-path"] != 2 || ev["extract-to-dir"] != 1 {
		t.Errorf("helper events for one host change: %v, want 2 creates, 2 reads, 1 write", ev)
	}
	if ok, why := copiesHold(w.copies, newer); !ok {
		t.Errorf("the directory copy: %s", why)
	}
}

// claimDefaultVolumes lets a test use the real default volume names: it
// skips when any of them exists (not the test's to touch) and removes them
// after the test.
func claimDefaultVolumes(t *testing.T, e *engine.Engine) {
	t.Helper()
	names := []string{"mc-claude-auth", "mc-codex-auth", "mc-gemini-auth"}
	for _, n := range names {
		if _, err := e.Client().VolumeInspect(context.Background(), n, client.VolumeInspectOptions{}); err == nil {
			t.Skipf("volume %s exists on this engine already (not this test's): not touching it", n)
		}
	}
	t.Cleanup(func() {
		for _, n := range names {
			volumetest.RemoveVolume(e, n)
		}
	})
}

// watchWithVolume runs watch over a Claude world with one directory copy
// and one volume copy, polled every poll; the watcher must stop cleanly
// (exit 0 on SIGTERM, within 2 s) when the test ends.
func watchWithVolume(t *testing.T, poll string) (*engine.Engine, string, *world) {
	t.Helper()
	return watchWithVolumeOn(t, poll, "", 2*time.Second)
}

// watchWithVolumeOn is watchWithVolume with more of the volume copy's
// settings (sinkYAML, e.g. "    engine: ssh://host\n") and the time the
// watcher may take to stop: over ssh, removing the poll helper can take a
// new ssh connection.
func watchWithVolumeOn(t *testing.T, poll, sinkYAML string, stopWithin time.Duration) (*engine.Engine, string, *world) {
	t.Helper()
	_, e := volumetest.NeedEngine(t)
	vol := volumetest.UniqueVolume(t, e)
	w := newWorld(t, "claude", 1)
	w.env = append(w.env, dockerHostEnv(e))
	cfg, _ := os.ReadFile(w.config)
	writeFile(t, w.config, append(cfg, []byte("  - source: claude\n    volume: "+vol+"\n"+sinkYAML)...))
	p := w.watch("--poll-interval", poll)
	t.Cleanup(func() {
		p.signal(syscall.SIGTERM)
		if code := p.wait(stopWithin); code != 0 {
			t.Errorf("watch exited %d after SIGTERM", code)
		}
		if left := volumetest.Helpers(t, e, volumetest.VolumeLabels(vol)...); len(left) != 0 {
			t.Errorf("%d helper containers left after the watcher stopped", len(left))
		}
	})
	return e, vol, w
}
