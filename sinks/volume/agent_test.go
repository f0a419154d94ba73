package volume_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/mc-broker/mc-broker/broker"
	"github.com/mc-broker/mc-broker/broker/watch/lockmirror"
	"github.com/mc-broker/mc-broker/sinks/volume"
	"github.com/mc-broker/mc-broker/sinks/volume/engine"
	"github.com/mc-broker/mc-broker/sinks/volume/volumetest"
)

// following starts following s's changes through its resident agent and
// waits until the agent serves it; the returned channel has the changes.
func following(t *testing.T, s *volume.Sink) <-chan struct{} {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	var errs []string
	ch := s.Changes(ctx, func(err error) {
		mu.Lock()
		errs = append(errs, err.Error())
		mu.Unlock()
	})
	t.Cleanup(func() { cancel(); s.Close() })
	start := time.Now()
	defer func() {
		t.Logf("the agent served %s %v after Changes", s.Location(), time.Since(start).Round(time.Millisecond))
	}()
	deadline := time.Now().Add(30 * time.Second)
	for !s.Pushing() {
		if time.Now().After(deadline) {
			mu.Lock()
			defer mu.Unlock()
			t.Fatalf("no resident agent serves %s after 30 s: %v", s.Location(), errs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	drain(ch)
	return ch
}

func drain(ch <-chan struct{}) {
	for {
		select {
		case <-ch:
		case <-time.After(50 * time.Millisecond):
			return
		}
	}
}

// followedCopy is a Claude copy in a new volume holding {"gen":1},
// served by its resident agent; ch has its changes.
func followedCopy(t *testing.T) (s *volume.Sink, e *engine.Engine, vol string, ch <-chan struct{}) {
	t.Helper()
	volumetest.AgentBinary(t)
	sh, e := volumetest.NeedEngine(t)
	vol = volumetest.UniqueVolume(t, e)
	s = volume.New(volume.Options{Volume: vol, FileName: ".credentials.json", LockDir: t.TempDir(), Shared: sh, WriteLock: ".storage-write.lock"})
	if err := s.Update(context.Background(), always([]byte(`{"gen":1}`))); err != nil {
		t.Fatal(err)
	}
	return s, e, vol, following(t, s)
}

// TestAgentSeesAContainersWriteAtOnce: a container renames a new login over
// the copy (as Claude Code does); the resident agent says so within
// milliseconds, and a Read through it returns the new bytes.
func TestAgentSeesAContainersWriteAtOnce(t *testing.T) {
	s, _, vol, ch := followedCopy(t)
	// A long-lived container so that only the rename is timed.
	ctr := startContainer(t, vol)
	for gen := 2; gen <= 6; gen++ {
		want := fmt.Sprintf(`{"gen":%d}`, gen)
		containerExec(t, ctr, fmt.Sprintf("printf '%%s' '%s' > /d/.tmp.x && mv /d/.tmp.x /d/.credentials.json", want))
		start := time.Now()
		select {
		case <-ch:
		case <-time.After(5 * time.Second):
			t.Fatalf("gen %d: no change reported within 5 s", gen)
		}
		// The exec returns after the rename; the event follows.
		if d := time.Since(start); d > 100*time.Millisecond {
			t.Errorf("gen %d: the change was reported %v after the container's write returned", gen, d)
		}
		got, err := s.Read(context.Background())
		if err != nil || string(got) != want {
			t.Fatalf("gen %d: Read = %q, %v", gen, got, err)
		}
		drain(ch)
	}
}

// TestAgentNeverLosesANewerLogin: while an update is between its read and
// its write, a container writes a newer login into the copy. The agent's
// conditional write notices, the decision is made again with the newer
// login, and it stays: many trials, none lost.
func TestAgentNeverLosesANewerLogin(t *testing.T) {
	volumetest.AgentBinary(t)
	sh, e := volumetest.NeedEngine(t)
	vol := volumetest.UniqueVolume(t, e)
	s := volume.New(volume.Options{Volume: vol, FileName: "auth.json", LockDir: t.TempDir(), Shared: sh, LockFiles: []string{"auth.lock", "auth.json.lock"}})
	if err := s.Update(context.Background(), always([]byte("1"))); err != nil {
		t.Fatal(err)
	}
	following(t, s)
	ctr := startContainer(t, vol)
	gen := func(b []byte) int { n, _ := strconv.Atoi(strings.TrimSpace(string(b))); return n }
	for trial := 0; trial < 10; trial++ {
		host := 10*trial + 5  // what the fan-out writes
		newer := 10*trial + 9 // what the container writes meanwhile
		calls := 0
		decide := func(current []byte, exists bool) ([]byte, bool) {
			calls++
			if calls == 1 {
				// The container refreshes right now.
				containerExec(t, ctr, fmt.Sprintf("printf %d > /d/.auth-x && mv /d/.auth-x /d/auth.json", newer))
			}
			if exists && gen(current) >= host {
				return nil, false // newest wins: keep it
			}
			return []byte(strconv.Itoa(host)), true
		}
		if err := s.Update(context.Background(), broker.Decide(decide)); err != nil {
			t.Fatalf("trial %d: %v", trial, err)
		}
		got := containerExec(t, ctr, "cat /d/auth.json")
		if gen([]byte(got)) != newer {
			t.Fatalf("trial %d: the copy holds %q after the update, want the container's newer %d (lost update)", trial, got, newer)
		}
		if calls < 2 {
			t.Fatalf("trial %d: decided %d times, want again after the container's write", trial, calls)
		}
	}
}

// TestAgentIsGoneWhenNothingFollows: once the last copy stops following,
// the agent's container is removed, so `docker volume rm` works.
func TestAgentIsGoneWhenNothingFollows(t *testing.T) {
	volumetest.AgentBinary(t)
	sh, e := volumetest.NeedEngine(t)
	vol := volumetest.UniqueVolume(t, e)
	s := volume.New(volume.Options{Volume: vol, FileName: "auth.json", LockDir: t.TempDir(), Shared: sh})
	if err := s.Update(context.Background(), always([]byte("1"))); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.Changes(ctx, nil)
	deadline := time.Now().Add(30 * time.Second)
	for !s.Pushing() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !s.Pushing() {
		t.Fatal("no agent")
	}
	if ids := volumetest.Helpers(t, e, volume.LabelAgent); len(ids) == 0 {
		t.Fatal("no agent container listed")
	}
	cancel()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("docker", "volume", "rm", vol).CombinedOutput(); err != nil {
		t.Fatalf("docker volume rm after the watcher stopped: %v\n%s", err, out)
	}
}

// TestAgentKeepsRunningWhenNothingItServesChanged: a copy's volume created
// while its agent was starting is mounted by that agent already; the wake
// that creation left must not restart the agent. A restart has every copy
// read again, and meanwhile writes take the slow path: that is how the
// first host change after a watcher started once reached no volume.
func TestAgentKeepsRunningWhenNothingItServesChanged(t *testing.T) {
	s, e, vol, ch := followedCopy(t)
	agents := func() []string { return volumetest.Agents(t, e, vol) }
	before := agents()
	if len(before) != 1 {
		t.Fatalf("%d agents serve %s, want 1", len(before), vol)
	}
	ctr := startContainer(t, vol)
	volume.WakeAgent(s)
	// A container's write, told by the agent: by then a restart would have
	// removed the agent's container (before it says "read every copy").
	containerExec(t, ctr, `printf '{"gen":2}' > /d/.tmp.x && mv /d/.tmp.x /d/.credentials.json`)
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("the container's write was not told within 5 s")
	}
	if after := agents(); !slices.Equal(after, before) || !s.Pushing() {
		t.Fatalf("the agent was restarted by a wake that changed nothing (agents %v, then %v; serving: %v)", before, after, s.Pushing())
	}
	got, err := s.Read(context.Background())
	if err != nil || string(got) != `{"gen":2}` {
		t.Fatalf("Read = %q, %v; want the container's write", got, err)
	}
}

// TestAgentToldOfARefreshLockTakenBeforeItServed: Claude Code in a
// container took its refresh lock before the agent watched the volume (a
// watcher starting, an agent restarting). The agent reports only what
// changes once it watches, so when it starts serving the copy the watcher
// is told to look at the lock: the lock is mirrored now, not at its next
// change, which may come after the refresh it guards.
func TestAgentToldOfARefreshLockTakenBeforeItServed(t *testing.T) {
	volumetest.AgentBinary(t)
	sh, e := volumetest.NeedEngine(t)
	vol := volumetest.UniqueVolume(t, e)
	s := volume.New(volume.Options{Volume: vol, FileName: ".credentials.json", LockDir: t.TempDir(), Shared: sh, WriteLock: ".storage-write.lock"})
	if err := s.Update(context.Background(), always([]byte(`{"gen":1}`))); err != nil {
		t.Fatal(err)
	}
	_, place, events := s.RefreshLockPlace()
	volumetest.Run(t, vol, "mkdir /d/"+lockmirror.LockName)
	following(t, s)
	select {
	case <-events:
	case <-time.After(5 * time.Second):
		t.Fatal("the watcher was not told to look at the refresh lock when the agent started serving the copy")
	}
	if _, isDir, err := place.StatLock(); err != nil || !isDir {
		t.Fatalf("the lock taken before the agent started is not seen through it: dir %v, %v", isDir, err)
	}
}

// startContainer runs a busybox container with vol at /d until the test
// ends.
func startContainer(t *testing.T, vol string) string {
	t.Helper()
	out, err := exec.Command("docker", "run", "-d", "--rm", "--network", "none", "-v", vol+":/d", volumetest.Image, "sleep", "600").Output()
	if err != nil {
		t.Fatalf("docker run: %v", err)
	}
	id := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("docker", "rm", "-f", id).Run() })
	return id
}

func containerExec(t *testing.T, id, script string) string {
	t.Helper()
	out, err := exec.Command("docker", "exec", id, "sh", "-c", script).CombinedOutput()
	if err != nil {
		t.Fatalf("docker exec: %v\n%s", err, out)
	}
	return string(bytes.TrimSpace(out))
}

// TestSyncUsesTheRunningAgent: with a watcher's agent running, another run
// (a sync: its own engine handle) reads and writes the copy through docker
// exec in the agent's container. A sync with nothing to write creates no
// container at all, and one that writes creates none either.
func TestSyncUsesTheRunningAgent(t *testing.T) {
	volumetest.AgentBinary(t)
	sh, e := volumetest.NeedEngine(t)
	vol := volumetest.UniqueVolume(t, e)
	watcher := volume.New(volume.Options{Volume: vol, FileName: "auth.json", LockDir: t.TempDir(), Shared: sh, LockFiles: []string{"auth.lock", "auth.json.lock"}})
	if err := watcher.Update(context.Background(), always([]byte("1"))); err != nil {
		t.Fatal(err)
	}
	following(t, watcher)

	syncShared, _ := volumetest.NeedEngine(t)
	lockDir := t.TempDir()
	sync := volume.New(volume.Options{Volume: vol, FileName: "auth.json", LockDir: lockDir, Shared: syncShared, LockFiles: []string{"auth.lock", "auth.json.lock"}})
	// Connect first: the first use of an engine makes sure of the helper
	// image and looks for leftovers.
	if _, err := sync.Read(context.Background()); err != nil {
		t.Fatal(err)
	}
	events := volumetest.Events(t, e, []string{vol}, func() {
		got, err := sync.Read(context.Background())
		if err != nil || string(got) != "1" {
			t.Fatalf("Read = %q, %v", got, err)
		}
		err = sync.Update(context.Background(), func(current []byte, exists bool) ([]byte, bool) {
			if !exists || string(current) != "1" {
				t.Errorf("decide got %q (exists %v)", current, exists)
			}
			return nil, false
		})
		if err != nil {
			t.Fatal(err)
		}
		sync.EndPass(context.Background())
	})
	execs := 0
	for action, n := range events {
		if strings.HasPrefix(action, "exec_create") {
			execs += n
		}
	}
	if creates := events["create"]; creates != 0 {
		t.Errorf("a no-op sync with the agent running created %d containers, want 0", creates)
	}
	if execs != 2 {
		t.Errorf("the no-op sync ran %d execs in the agent's container, want 2 (a read, an update): %v", execs, events)
	}
	creates := volumetest.CountCreates(t, e, []string{vol}, func() {
		if err := sync.Update(context.Background(), always([]byte("2"))); err != nil {
			t.Fatal(err)
		}
	})
	if creates != 0 {
		t.Errorf("a sync that writes with the agent running created %d containers, want 0", creates)
	}
	if got := volumetest.Run(t, vol, "cat /d/auth.json"); got != "2" {
		t.Errorf("the volume holds %q, want 2", got)
	}
}

// TestAgentOnEachEngine: on Docker and on rootful and rootless Podman the
// agent starts, reports a container's write, reads it, and writes through
// its conditional write what a container then reads, as the copy's user.
func TestAgentOnEachEngine(t *testing.T) {
	volumetest.AgentBinary(t)
	volumetest.EachEngine(t, testAgentOn)
}

// TestAgentOverSSH: the same on an engine reached over ssh:// (the attach
// stream rides ssh's docker system dial-stdio).
func TestAgentOverSSH(t *testing.T) {
	volumetest.AgentBinary(t)
	testAgentOn(t, volumetest.SSH(t))
}

func testAgentOn(t *testing.T, e *volumetest.Engine) {
	{
		vol := e.UniqueVolume(t)
		s := volume.New(volume.Options{Volume: vol, Path: "/home/.codex", FileName: "auth.json", UID: intp(1000), GID: intp(1000), LockDir: t.TempDir(), Shared: e.Shared, LockFiles: []string{"auth.lock", "auth.json.lock"}})
		if err := s.Update(context.Background(), always([]byte("1"))); err != nil {
			t.Fatal(err)
		}
		ch := following(t, s)
		e.Run(t, vol, "printf 2 > /d/home/.codex/.x && mv /d/home/.codex/.x /d/home/.codex/auth.json")
		select {
		case <-ch:
		case <-time.After(5 * time.Second):
			t.Fatal("no change reported within 5 s")
		}
		if got, err := s.Read(context.Background()); err != nil || string(got) != "2" {
			t.Fatalf("Read = %q, %v", got, err)
		}
		// Through the agent: no helper container (one would mean the
		// agent could not write and the helper did). Podman's events do
		// not say (the count stays 0 whatever happens); there the CLI's
		// lock files, which only the agent takes, tell.
		creates := volumetest.CountCreates(t, e.Engine, []string{vol}, func() {
			err := s.Update(context.Background(), func(current []byte, exists bool) ([]byte, bool) {
				if string(current) != "2" {
					t.Errorf("decide got %q", current)
				}
				return []byte("3"), true
			})
			if err != nil {
				t.Fatal(err)
			}
		})
		if creates != 0 {
			t.Errorf("the update created %d containers, want none (through the agent)", creates)
		}
		if got := e.Run(t, vol, "ls /d/home/.codex/auth.lock /d/home/.codex/auth.json.lock"); !strings.Contains(got, "auth.json.lock") {
			t.Errorf("no lock files beside the login: the agent did not write it (%q)", got)
		}
		if got := e.Run(t, vol, "cat /d/home/.codex/auth.json; echo; stat -c '%a %u %g' /d/home/.codex/auth.json"); got != "3\n600 1000 1000\n" {
			t.Errorf("a container reads %q, want 3, mode 600, owner 1000:1000", got)
		}
		checkAgentConfined(t, e, vol, "1000:1000")
	}
}

// TestEachVolumeHasItsOwnAgent: two volumes of one user on one engine are
// served by two agents, each mounting its own volume only (a container
// that can write one volume cannot reach the other through the agent).
func TestEachVolumeHasItsOwnAgent(t *testing.T) {
	volumetest.AgentBinary(t)
	e := volumetest.Docker(t)
	var vols []string
	for range 2 {
		vol := e.UniqueVolume(t)
		s := volume.New(volume.Options{Volume: vol, FileName: ".credentials.json", LockDir: t.TempDir(), Shared: e.Shared})
		if err := s.Update(context.Background(), always([]byte(`{"gen":1}`))); err != nil {
			t.Fatal(err)
		}
		following(t, s)
		vols = append(vols, vol)
	}
	for _, vol := range vols {
		checkAgentConfined(t, e, vol, "0:0")
	}
}

// checkAgentConfined checks, as the engine reports it, that the agent
// serving vol runs confined: no network, read-only root, no capabilities,
// no new privileges, as the copy's user, and bounded in memory and
// processes.
func checkAgentConfined(t *testing.T, e *volumetest.Engine, vol, user string) {
	t.Helper()
	ids := volumetest.Agents(t, e.Engine, vol)
	if len(ids) != 1 {
		t.Fatalf("%d agents serve %s, want 1", len(ids), vol)
	}
	res, err := e.Client().ContainerInspect(context.Background(), ids[0], client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	hc, cfg := res.Container.HostConfig, res.Container.Config
	var problems []string
	if hc.NetworkMode != "none" {
		problems = append(problems, "network "+string(hc.NetworkMode))
	}
	if !hc.ReadonlyRootfs {
		problems = append(problems, "root file system writable")
	}
	if !slices.ContainsFunc(hc.CapDrop, func(c string) bool { return strings.EqualFold(strings.TrimPrefix(c, "CAP_"), "ALL") }) && len(hc.CapDrop) < 10 {
		problems = append(problems, fmt.Sprintf("capabilities not dropped (%v)", hc.CapDrop))
	}
	if !slices.ContainsFunc(hc.SecurityOpt, func(o string) bool { return strings.HasPrefix(o, "no-new-privileges") }) {
		problems = append(problems, fmt.Sprintf("new privileges allowed (%v)", hc.SecurityOpt))
	}
	if cfg.User != user {
		problems = append(problems, "user "+cfg.User)
	}
	// Its own volume and nothing else: a path a container swaps under the
	// agent can lead nowhere the container could not write anyway.
	var volumes []string
	for _, m := range res.Container.Mounts {
		if m.Type == "volume" {
			volumes = append(volumes, m.Name)
		}
	}
	if !slices.Equal(volumes, []string{vol}) {
		problems = append(problems, fmt.Sprintf("volumes mounted %v, want only %s", volumes, vol))
	}
	info, err := e.Client().Info(context.Background(), client.InfoOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if e.Name == "podman-rootless" && info.Info.CgroupVersion == "1" {
		// Rootless Podman cannot set limits on cgroups v1 and ignores
		// them (docs/VOLUMES.md).
		t.Logf("rootless Podman on cgroups v1: the agent runs without memory and pids limits (memory %d)", hc.Memory)
	} else {
		if hc.Memory == 0 || hc.Memory > 64<<20 {
			problems = append(problems, fmt.Sprintf("memory limit %d", hc.Memory))
		}
		if hc.PidsLimit == nil || *hc.PidsLimit <= 0 || *hc.PidsLimit > 64 {
			problems = append(problems, "no pids limit of at most 64")
		}
	}
	if len(problems) > 0 {
		t.Errorf("the agent serving %s is not confined: %s", vol, strings.Join(problems, "; "))
	}
}

// TestAgentNeverLosesANewerLoginUnderLoad: a container writes ever newer
// logins (1, 2, 3, …, 300) into the copy, each by rename, every few
// milliseconds; meanwhile the host updates the copy over and over to login
// 150 wherever it holds an older one (newest wins). Once the container has
// written 151 or later, finding 150 there would mean a fan-out overwrote a
// newer login: through the agent it never does. (Through helper
// containers, whose read and write are apart, it does: run with
// MC_BROKER_TEST_AGENT_OFF=1 to see it.)
func TestAgentNeverLosesANewerLoginUnderLoad(t *testing.T) {
	neverLosesUnderLoad(t, os.Getenv("MC_BROKER_TEST_AGENT_OFF") == "")
}

// TestOneShotAgentNeverLosesANewerLogin: the same with no watcher's agent
// (a sync before `docker compose up`): each write starts an agent for the
// copy alone, which writes as the resident one does, and leaves nothing
// behind.
func TestOneShotAgentNeverLosesANewerLogin(t *testing.T) {
	neverLosesUnderLoad(t, false)
}

func neverLosesUnderLoad(t *testing.T, follow bool) {
	volumetest.AgentBinary(t)
	sh, e := volumetest.NeedEngine(t)
	vol := volumetest.UniqueVolume(t, e)
	s := volume.New(volume.Options{Volume: vol, FileName: "auth.json", LockDir: t.TempDir(), Shared: sh})
	if err := s.Update(context.Background(), always([]byte("0"))); err != nil {
		t.Fatal(err)
	}
	if follow {
		following(t, s)
	}
	ctr := startContainer(t, vol)
	gen := func(b []byte) int { n, _ := strconv.Atoi(strings.TrimSpace(string(b))); return n }
	stop := make(chan struct{})
	var updates, writes int
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			updates++
			s.Update(context.Background(), func(current []byte, exists bool) ([]byte, bool) {
				if exists && gen(current) >= 150 {
					return nil, false
				}
				writes++
				return []byte("150"), true
			})
		}
	}()
	// Before each write the container reads the copy: it may hold the
	// host's 150 over one of the container's older logins, never over
	// 151 or later.
	out := containerExec(t, ctr, `prev=0; i=1; while [ $i -le 300 ]; do v=$(cat /d/auth.json 2>/dev/null); if [ "$v" = 150 ] && [ $prev -gt 150 ]; then echo LOST after $prev; fi; printf $i > /d/.t && mv /d/.t /d/auth.json; prev=$i; i=$((i+1)); usleep 5000; done; echo end`)
	close(stop)
	<-done
	if strings.Contains(out, "LOST") {
		t.Errorf("a newer login was overwritten by an older one: %s", out)
	}
	t.Logf("%d updates (%d decided to write) while the container wrote 300 logins", updates, writes)
	if got := containerExec(t, ctr, "cat /d/auth.json"); got != "300" {
		t.Errorf("the copy ends with %q, want the container's last, 300", got)
	}
	if !follow {
		if ids := volumetest.Helpers(t, e, volume.LabelVolume+"="+vol); len(ids) != 0 {
			t.Errorf("%d containers left behind", len(ids))
		}
	}
}

// TestAnAgentThatFailsLeavesTheCopyOnHelpers: an agent binary that does not
// speak the protocol (busybox, which answers "applet not found" and exits)
// is reported and restarted with backoff; meanwhile the copy is read and
// written through helper containers as before, without waiting on it, and
// nothing is left behind.
func TestAnAgentThatFailsLeavesTheCopyOnHelpers(t *testing.T) {
	const busybox = "/bin/busybox" // static, from busybox-static (scripts/docker-env.sh)
	if _, err := os.Stat(busybox); err != nil {
		t.Skip("no static busybox")
	}
	sh, e := volumetest.NeedEngine(t)
	t.Setenv(volume.AgentBinaryEnv, busybox)
	vol := volumetest.UniqueVolume(t, e)
	s := volume.New(volume.Options{Volume: vol, FileName: "auth.json", LockDir: t.TempDir(), Shared: sh})
	if err := s.Update(context.Background(), always([]byte("1"))); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errs := make(chan error, 16)
	s.Changes(ctx, func(err error) {
		select {
		case errs <- err:
		default:
		}
	})
	select {
	case err := <-errs:
		if !strings.Contains(err.Error(), "did not start") {
			t.Errorf("error %v, want the agent did not start", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no error reported for an agent that cannot start")
	}
	if s.Pushing() {
		t.Fatal("a copy is pushed by an agent that never started")
	}
	start := time.Now()
	if err := s.Update(context.Background(), always([]byte("2"))); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Read(context.Background()); err != nil || string(got) != "2" {
		t.Fatalf("Read = %q, %v", got, err)
	}
	s.EndPass(context.Background())
	t.Logf("update and read through helpers in %v", time.Since(start))
	cancel()
	s.Close()
	if ids := volumetest.Helpers(t, e, volume.LabelVolume+"="+vol); len(ids) != 0 {
		t.Errorf("%d containers left behind", len(ids))
	}
}
