package volume_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/mc-broker/mc-broker/broker/kinds/claude"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/mc-broker/mc-broker/broker"
	"github.com/mc-broker/mc-broker/broker/credential"
	"github.com/mc-broker/mc-broker/broker/testenv"
	"github.com/mc-broker/mc-broker/sinks/volume"
	"github.com/mc-broker/mc-broker/sinks/volume/engine"
	"github.com/mc-broker/mc-broker/sinks/volume/volumetest"
)

func intp(i int) *int { return &i }

// always is a decide that writes want whatever the copy holds.
func always(want []byte) broker.Decide {
	return func([]byte, bool) ([]byte, bool) { return want, true }
}

func TestWriteIsWhatAContainerReads(t *testing.T) {
	sh, e := volumetest.NeedEngine(t)
	vol := volumetest.UniqueVolume(t, e)
	want := testenv.Fixture(t, "claude/credentials.valid.json")
	s := volume.New(volume.Options{Volume: vol, FileName: ".credentials.json", UID: intp(1000), GID: intp(1000), LockDir: t.TempDir(), Shared: sh})
	if s.Location() != "volume "+vol+":/.credentials.json" {
		t.Errorf("Location = %q", s.Location())
	}
	if _, err := s.Read(context.Background()); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Read before any write = %v, want fs.ErrNotExist", err)
	}
	if err := s.Update(context.Background(), always(want)); err != nil {
		t.Fatal(err)
	}
	// What a container user sees: exactly the bytes, 0600, owned by 1000,
	// in a volume root that is 0700 and owned by 1000 too.
	if got := volumetest.Run(t, vol, "cat /d/.credentials.json"); got != string(want) {
		t.Errorf("container read other bytes than were written (%d bytes, want %d)", len(got), len(want))
	}
	if got := volumetest.Run(t, vol, "stat -c '%a %u %g' /d/.credentials.json /d"); got != "600 1000 1000\n700 1000 1000\n" {
		t.Errorf("file and root: %q, want 600 1000 1000 and 700 1000 1000", got)
	}
	read, err := s.Read(context.Background())
	if err != nil || !bytes.Equal(read, want) {
		t.Errorf("Read after write: err %v, equal %v", err, bytes.Equal(read, want))
	}
	vi, err := e.Client().VolumeInspect(context.Background(), vol, client.VolumeInspectOptions{})
	if err != nil || vi.Volume.Labels[volume.LabelManaged] != "true" {
		t.Errorf("volume not labelled %s: %v %v", volume.LabelManaged, vi.Volume.Labels, err)
	}
	// A Read keeps its helper for the Update that usually follows in a
	// pass; the pass's end takes it away.
	s.EndPass(context.Background())
	assertNoHelpers(t, e)
}

func TestPathInsideVolume(t *testing.T) {
	sh, e := volumetest.NeedEngine(t)
	vol := volumetest.UniqueVolume(t, e)
	want := testenv.Fixture(t, "codex/auth.chatgpt.json")
	s := volume.New(volume.Options{Volume: vol, Path: "/home/.codex", FileName: "auth.json", UID: intp(1001), GID: intp(1002), LockDir: t.TempDir(), Shared: sh})
	if err := s.Update(context.Background(), always(want)); err != nil {
		t.Fatal(err)
	}
	got := volumetest.Run(t, vol, "stat -c '%a %u %g %n' /d/home/.codex/auth.json /d/home/.codex /d/home /d")
	for _, line := range []string{"600 1001 1002 /d/home/.codex/auth.json", "700 1001 1002 /d/home/.codex", "700 1001 1002 /d/home", "700 1001 1002 /d"} {
		if !strings.Contains(got, line) {
			t.Errorf("missing %q in\n%s", line, got)
		}
	}
}

// decideAsBroker mirrors what the broker's decide does, recording calls.
type recorder struct {
	calls   int
	current []byte
	exists  bool
}

func (r *recorder) decide(next []byte, write bool) broker.Decide {
	return func(cur []byte, exists bool) ([]byte, bool) {
		r.calls++
		r.current, r.exists = cur, exists
		return next, write
	}
}

func TestDeclinedUpdateWritesNothingAndDoesNotCreateTheVolume(t *testing.T) {
	sh, e := volumetest.NeedEngine(t)
	vol := volumetest.UniqueVolume(t, e)
	s := volume.New(volume.Options{Volume: vol, FileName: "oauth_creds.json", LockDir: t.TempDir(), Shared: sh})
	var r recorder
	if err := s.Update(context.Background(), r.decide(nil, false)); err != nil {
		t.Fatal(err)
	}
	if r.calls != 1 || r.exists {
		t.Errorf("decide called %d times, exists=%v; want once with no copy", r.calls, r.exists)
	}
	if _, err := e.Client().VolumeInspect(context.Background(), vol, client.VolumeInspectOptions{}); err == nil {
		t.Errorf("a declined update created volume %s", vol)
	}
}

func TestUnchangedCopyWritesNothing(t *testing.T) {
	s, vol, want := writeGemini(t)
	before := volumetest.Run(t, vol, "stat -c '%Y %i' /d/oauth_creds.json")
	var r recorder
	if err := s.Update(context.Background(), r.decide(nil, false)); err != nil {
		t.Fatal(err)
	}
	if !r.exists || !bytes.Equal(r.current, want) {
		t.Errorf("decide did not see the copy")
	}
	if after := volumetest.Run(t, vol, "stat -c '%Y %i' /d/oauth_creds.json"); after != before {
		t.Errorf("unchanged copy was rewritten: %s -> %s", before, after)
	}
}

// A copy whose content is current but readable by others is made private.
func TestKeptCopyIsMadePrivate(t *testing.T) {
	s, vol, want := writeGemini(t)
	volumetest.Run(t, vol, "chmod 644 /d/oauth_creds.json")
	var r recorder
	if err := s.Update(context.Background(), r.decide(nil, false)); err != nil {
		t.Fatal(err)
	}
	if got := volumetest.Run(t, vol, "stat -c %a /d/oauth_creds.json; cat /d/oauth_creds.json | wc -c"); !strings.HasPrefix(got, "600\n") || !strings.Contains(got, fmt.Sprint(len(want))) {
		t.Errorf("after update: %q", got)
	}
}

func TestBrokenAndSpecialFilesInVolume(t *testing.T) {
	sh, e := volumetest.NeedEngine(t)
	vol := volumetest.UniqueVolume(t, e)
	s := volume.New(volume.Options{Volume: vol, FileName: "auth.json", LockDir: t.TempDir(), Shared: sh})
	volumetest.Run(t, vol, "mkdir /d/auth.json")
	_, err := s.Read(context.Background())
	if err == nil || !strings.Contains(err.Error(), "is a directory") {
		t.Errorf("Read of a directory = %v", err)
	}
	volumetest.Run(t, vol, "rmdir /d/auth.json && ln -s /etc/passwd /d/auth.json")
	if _, err := s.Read(context.Background()); err == nil || !strings.Contains(err.Error(), "symlink") {
		t.Errorf("Read of a symlink = %v", err)
	}
	volumetest.Run(t, vol, "rm /d/auth.json && head -c 1100000 /dev/zero > /d/auth.json")
	data, err := s.Read(context.Background())
	if err != nil || len(data) != credential.MaxSize+1 {
		t.Errorf("oversized copy: read %d bytes, err %v; want MaxSize+1", len(data), err)
	}
	s.EndPass(context.Background())
	assertNoHelpers(t, e)
}

func TestChangedPollsWithoutCreatingContainers(t *testing.T) {
	sh, e := volumetest.NeedEngine(t)
	vol := volumetest.UniqueVolume(t, e)
	s := volume.New(volume.Options{Volume: vol, FileName: "auth.json", LockDir: t.TempDir(), Shared: sh})
	t.Cleanup(func() { s.Close() })
	ctx := context.Background()
	if changed, err := s.Changed(ctx); err != nil || !changed {
		t.Fatalf("first Changed = %v, %v; want true", changed, err)
	}
	if err := s.Update(ctx, always(testenv.Fixture(t, "codex/auth.chatgpt.json"))); err != nil {
		t.Fatal(err)
	}
	if changed, err := s.Changed(ctx); err != nil || !changed {
		t.Fatalf("Changed after the volume appeared = %v, %v; want true", changed, err)
	}
	creates := volumetest.CountCreates(t, e, []string{vol}, func() {
		for i := 0; i < 5; i++ {
			if changed, err := s.Changed(ctx); err != nil || changed {
				t.Errorf("Changed with nothing changed = %v, %v", changed, err)
			}
		}
	})
	if creates != 0 {
		t.Errorf("polling created %d containers, want 0", creates)
	}
	volumetest.Run(t, vol, "echo '{}' > /d/auth.json")
	if changed, err := s.Changed(ctx); err != nil || !changed {
		t.Errorf("Changed after a container wrote = %v, %v; want true", changed, err)
	}
	volumetest.Run(t, vol, "rm /d/auth.json")
	if changed, err := s.Changed(ctx); err != nil || !changed {
		t.Errorf("Changed after removal = %v, %v; want true", changed, err)
	}
	if changed, _ := s.Changed(ctx); changed {
		t.Errorf("Changed again with the file still missing = true")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	assertNoHelpers(t, e)
}

func TestCancelledUpdateLeavesNoHelper(t *testing.T) {
	sh, e := volumetest.NeedEngine(t)
	vol := volumetest.UniqueVolume(t, e)
	s := volume.New(volume.Options{Volume: vol, FileName: "auth.json", LockDir: t.TempDir(), Shared: sh})
	if err := s.Update(context.Background(), always([]byte(`{"a":1}`))); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	err := s.Update(ctx, func([]byte, bool) ([]byte, bool) {
		cancel() // interrupted between the read and the write
		return []byte(`{"a":2}`), true
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Update = %v, want context.Canceled", err)
	}
	assertNoHelpers(t, e)
}

func TestLeftoversAreRemovedAtStart(t *testing.T) {
	_, e := volumetest.NeedEngine(t)
	vol := volumetest.UniqueVolume(t, e)
	c := e.Client()
	ctx := context.Background()
	// A crashed run on this host: its pid is gone. Another host's live
	// watcher: left alone.
	host, _ := os.Hostname()
	dead := deadPID(t)
	mk := func(labels map[string]string) string {
		t.Helper()
		sh := volume.NewShared(engine.NewLazy(os.Getenv, os.Getenv("HOME")))
		defer sh.Close()
		// Make sure the helper image exists, through a real read.
		volume.New(volume.Options{Volume: vol, FileName: "x", Shared: sh}).Read(ctx)
		res, err := c.ContainerCreate(ctx, client.ContainerCreateOptions{Image: volume.HelperImage, Config: &container.Config{Cmd: []string{"/x"}, Labels: labels}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.ContainerRemove(ctx, res.ID, client.ContainerRemoveOptions{Force: true}) })
		return res.ID
	}
	crashed := mk(map[string]string{volume.LabelManaged: "true", volume.LabelHelper: "copy", volume.LabelHost: host, volume.LabelPID: fmt.Sprint(dead)})
	other := mk(map[string]string{volume.LabelManaged: "true", volume.LabelHelper: "poll", volume.LabelHost: "elsewhere.example", volume.LabelPID: "1"})

	sh := volume.NewShared(engine.NewLazy(os.Getenv, os.Getenv("HOME")))
	defer sh.Close()
	s := volume.New(volume.Options{Volume: vol, FileName: "auth.json", LockDir: t.TempDir(), Shared: sh})
	if _, err := s.Read(ctx); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	if _, err := c.ContainerInspect(ctx, crashed, client.ContainerInspectOptions{}); err == nil {
		t.Errorf("the crashed run's helper is still there")
	}
	if _, err := c.ContainerInspect(ctx, other, client.ContainerInspectOptions{}); err != nil {
		t.Errorf("another host's poll helper was removed: %v", err)
	}
}

// deadPID returns the pid of a process that has exited.
func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

func TestUnreachableEngineIsAClearError(t *testing.T) {
	getenv := func(k string) string {
		if k == "DOCKER_HOST" {
			return "unix:///nonexistent/docker.sock"
		}
		return ""
	}
	sh := volume.NewShared(engine.NewLazy(getenv, t.TempDir()))
	s := volume.New(volume.Options{Volume: "mc-claude-auth", FileName: ".credentials.json", LockDir: t.TempDir(), Shared: sh})
	start := time.Now()
	err := s.Update(context.Background(), always([]byte("{}")))
	var ue *engine.UnreachableError
	if !errors.As(err, &ue) {
		t.Fatalf("Update = %v, want *engine.UnreachableError", err)
	}
	if err.Error() != "docker engine not reachable at unix:///nonexistent/docker.sock: is Docker Desktop / colima running?" {
		t.Errorf("message: %q", err)
	}
	if _, err := s.Read(context.Background()); !errors.As(err, &ue) || errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Read = %v: want unreachable, not 'no copy'", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("took %v", d)
	}
}

// assertNoHelpers fails when a helper container of this process is left.
func assertNoHelpers(t *testing.T, e *engine.Engine) {
	t.Helper()
	if left := volumetest.Helpers(t, e, volume.LabelPID+"="+fmt.Sprint(os.Getpid())); len(left) != 0 {
		t.Errorf("%d helper containers left behind", len(left))
	}
}

// writeGemini writes the Gemini fixture into a fresh volume.
func writeGemini(t *testing.T) (s *volume.Sink, vol string, want []byte) {
	t.Helper()
	sh, e := volumetest.NeedEngine(t)
	vol = volumetest.UniqueVolume(t, e)
	want = testenv.Fixture(t, "gemini/oauth_creds.json")
	s = volume.New(volume.Options{Volume: vol, FileName: "oauth_creds.json", LockDir: t.TempDir(), Shared: sh})
	if err := s.Update(context.Background(), always(want)); err != nil {
		t.Fatal(err)
	}
	return s, vol, want
}

func TestCompanionsAreAddedOnceAndNeverReplaced(t *testing.T) {
	sh, e := volumetest.NeedEngine(t)
	vol := volumetest.UniqueVolume(t, e)
	login := testenv.Fixture(t, "claude/credentials.valid.json")
	companions := claude.Kind.Facts().Companions
	s := volume.New(volume.Options{Volume: vol, FileName: ".credentials.json", LockDir: t.TempDir(), Shared: sh, Companions: companions})
	if err := s.Update(context.Background(), always(login)); err != nil {
		t.Fatal(err)
	}
	if got := volumetest.Run(t, vol, "cat /d/.claude.json"); got != string(companions[".claude.json"]) {
		t.Fatalf("companion in the volume = %q", got)
	}
	// The container's Claude rewrites its config; the next pass keeps it.
	volumetest.Run(t, vol, `echo '{"theme":"dark"}' > /d/.claude.json`)
	if err := s.Update(context.Background(), always(login)); err != nil {
		t.Fatal(err)
	}
	if got := volumetest.Run(t, vol, "cat /d/.claude.json"); got != "{\"theme\":\"dark\"}\n" {
		t.Fatalf("the container's .claude.json became %q", got)
	}
	// Deleted by the user: added again, even when the login is unchanged.
	volumetest.Run(t, vol, "rm /d/.claude.json")
	var r recorder
	if err := s.Update(context.Background(), r.decide(nil, false)); err != nil {
		t.Fatal(err)
	}
	if got := volumetest.Run(t, vol, "stat -c '%a' /d/.claude.json"); got != "600\n" {
		t.Fatalf("re-added companion: %q", got)
	}
	assertNoHelpers(t, e)
}

// `docker image prune -a` (or `docker system prune -a`) removes the helper
// image whenever no container uses it, which is most of the time. A
// long-running watcher made it once at start; its next copy must make it
// again rather than fail until restarted.
func TestPrunedHelperImageIsMadeAgain(t *testing.T) {
	sh, e := volumetest.NeedEngine(t)
	image := fmt.Sprintf("mc-broker-helper-test-%d:empty", os.Getpid())
	t.Cleanup(volume.UseHelperImage(image))
	t.Cleanup(func() {
		e.Client().ImageRemove(context.Background(), image, client.ImageRemoveOptions{Force: true})
	})
	vol := volumetest.UniqueVolume(t, e)
	s := volume.New(volume.Options{Volume: vol, FileName: "auth.json", LockDir: t.TempDir(), Shared: sh})
	if err := s.Update(context.Background(), always([]byte(`{"a":1}`))); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Client().ImageRemove(context.Background(), image, client.ImageRemoveOptions{}); err != nil {
		t.Fatalf("removing the helper image as a prune would: %v", err)
	}
	if err := s.Update(context.Background(), always([]byte(`{"a":2}`))); err != nil {
		t.Fatalf("Update after the helper image was pruned: %v", err)
	}
	if got := volumetest.Run(t, vol, "cat /d/auth.json"); got != `{"a":2}` {
		t.Errorf("volume holds %q", got)
	}
	assertNoHelpers(t, e)
}

// When the engine connection is dropped (the engine restarted, Docker
// Desktop woke from sleep) the watcher reconnects; the poll helper made on
// the old connection still exists on the engine and must not be left
// beside the new one, holding the volume in use.
func TestReconnectKeepsOnePollHelper(t *testing.T) {
	sh, e := volumetest.NeedEngine(t)
	vol := volumetest.UniqueVolume(t, e)
	s := volume.New(volume.Options{Volume: vol, FileName: "auth.json", LockDir: t.TempDir(), Shared: sh})
	t.Cleanup(func() { s.Close() })
	ctx := context.Background()
	if err := s.Update(ctx, always([]byte(`{"a":1}`))); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Changed(ctx); err != nil {
		t.Fatal(err)
	}
	first, err := sh.Lazy().Engine(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sh.Lazy().Forget(first) // what a failed call does when the engine went away
	if _, err := s.Changed(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(volumetest.Helpers(t, e, volumetest.VolumeLabels(vol)...)); n != 1 {
		t.Errorf("%d poll helpers for %s after a reconnect, want 1", n, vol)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	assertNoHelpers(t, e)
}

// TestErase: revoke takes the login out of a volume copy (the file then
// holds {}), leaves the volume, and creates nothing where there is none.
func TestErase(t *testing.T) {
	sh, e := volumetest.NeedEngine(t)
	vol := volumetest.UniqueVolume(t, e)
	login := testenv.Fixture(t, "claude/credentials.valid.json")
	s := volume.New(volume.Options{Volume: vol, FileName: ".credentials.json", LockDir: t.TempDir(), Shared: sh})
	yes := func([]byte) bool { return true }
	if erased, err := s.Erase(context.Background(), yes); erased || err != nil {
		t.Fatalf("no volume: erased %v, %v", erased, err)
	}
	if _, err := e.Client().VolumeInspect(context.Background(), vol, client.VolumeInspectOptions{}); err == nil {
		t.Fatal("Erase created the volume")
	}
	if err := s.Update(context.Background(), always(login)); err != nil {
		t.Fatal(err)
	}
	var saw []byte
	if erased, err := s.Erase(context.Background(), func(cur []byte) bool { saw = cur; return true }); !erased || err != nil || !bytes.Equal(saw, login) {
		t.Fatalf("erased %v, %v (saw the login: %v)", erased, err, bytes.Equal(saw, login))
	}
	if got := volumetest.Run(t, vol, "cat /d/.credentials.json; stat -c '%a' /d/.credentials.json"); got != volume.ErasedContent+"600\n" {
		t.Errorf("a container now reads %q", got)
	}
	if erased, err := s.Erase(context.Background(), yes); erased || err != nil {
		t.Errorf("erasing again: erased %v, %v; want nothing to do", erased, err)
	}
	assertNoHelpers(t, e)
}
