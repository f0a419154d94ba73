package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/mc-broker/mc-broker/broker/watch/lockmirror"
)

// claudeOwner is the part of Claude Code's .oauth_refresh.lock.owner this
// test reads.
type claudeOwner struct {
	PID             int     `json:"pid"`
	PIDDomain       string  `json:"pidDomain"`
	PIDSpace        string  `json:"pidSpace"`
	LockBirthtimeMs float64 `json:"lockBirthtimeMs"`
}

func readClaudeOwner(dir string) (claudeOwner, bool) {
	data, err := os.ReadFile(filepath.Join(dir, ".oauth_refresh.lock.owner"))
	var o claudeOwner
	if err != nil || json.Unmarshal(data, &o) != nil {
		return o, false
	}
	return o, true
}

// startClaude runs the real claude in dir as a container would, with an
// expired login so that its first request needs a refresh.
func startClaude(t *testing.T, claude, dir string) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, claude, "-p", "hello")
	cmd.Env = []string{"HOME=" + t.TempDir(), "PATH=" + os.Getenv("PATH"), "CLAUDE_CONFIG_DIR=" + dir, "DISABLE_AUTOUPDATER=1"}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return func() {
		cancel()
		_ = cmd.Wait()
	}
}

// TestRealClaudeWaitsOnAMirroredLock points the real claude (installed by
// scripts/test-env.sh; never downloaded here) at a copy directory. Offline,
// a claude with an expired login takes its refresh lock within a second to
// try a refresh (the control). With the host's lock mirrored into the copy
// by mc-broker watch, it neither takes the lock nor takes it over, and
// leaves the login alone; once the host releases, it takes the lock at its
// next retry: it was waiting, as it does for a sibling Claude Code.
// lockWorld is a host config dir and one copy dir kept by the real
// mc-broker watch, with the real claude at hand.
type lockWorld struct {
	claude           string
	hostDir, copyDir string
	watchPID         int
}

func startLockWorld(t *testing.T) *lockWorld {
	t.Helper()
	if testing.Short() {
		t.Skip("runs the real claude for several seconds")
	}
	claude, err := exec.LookPath("claude")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("the real claude is not installed (run scripts/test-env.sh): %v", err)
		}
		t.Skip("claude not on PATH; make test installs it")
	}
	root := t.TempDir()
	home := filepath.Join(root, "home")
	w := &lockWorld{claude: claude, hostDir: filepath.Join(home, ".claude"), copyDir: filepath.Join(root, "copy")}
	putFixture(t, "claude/credentials.expired-refreshable.json", filepath.Join(w.hostDir, ".credentials.json"))
	writeFile(t, filepath.Join(w.hostDir, ".claude.json"), []byte(`{"hasCompletedOnboarding":true}`))
	if err := os.MkdirAll(w.copyDir, 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(root, "config.yaml")
	writeFile(t, cfg, fmt.Appendf(nil, "sources:\n  claude: {}\nsinks:\n  - source: claude\n    dir: %s\n    companions: true\n", w.copyDir))

	state := filepath.Join(root, "state")
	watch := exec.Command(filepath.Join(binDir, "mc-broker"), "watch", "--config", cfg, "--lock-mirror-bound", "30s", "--log-format", "json", "--log-level", "debug")
	watch.Env = []string{"HOME=" + home, "PATH=" + os.Getenv("PATH"), "XDG_STATE_HOME=" + state}
	var logs bytes.Buffer
	watch.Stderr = &logs
	if err := watch.Start(); err != nil {
		t.Fatal(err)
	}
	w.watchPID = watch.Process.Pid
	t.Cleanup(func() {
		_ = watch.Process.Signal(syscall.SIGTERM)
		_ = watch.Wait()
		assertNoSecret(t, "watch log", logs.String())
	})
	waitFor(t, 20*time.Second, "watch has done its first pass", notYet(func() bool {
		_, err := os.Stat(filepath.Join(state, "mc-broker", "watch.json"))
		return err == nil
	}))
	return w
}

func TestRealClaudeWaitsOnAMirroredLock(t *testing.T) {
	w := startLockWorld(t)
	claude, hostDir, copyDir := w.claude, w.hostDir, w.copyDir
	login, err := os.ReadFile(filepath.Join(copyDir, ".credentials.json"))
	if err != nil {
		t.Fatal(err)
	}

	// Control: nothing held, claude takes the lock to refresh. Its owner
	// record is computed as mc-broker computes its own: same pid domain
	// and space here (one machine, one pid namespace), and the lock's
	// birth time to the last bit.
	stop := startClaude(t, claude, copyDir)
	var theirs claudeOwner
	birth, haveBirth := 0.0, false
	waitFor(t, 15*time.Second, "claude takes its refresh lock in the copy (control)", notYet(func() bool {
		o, ok := readClaudeOwner(copyDir)
		if ok && o.PID != w.watchPID {
			theirs = o
			birth, haveBirth = lockBirthMs(filepath.Join(copyDir, ".oauth_refresh.lock"))
		}
		return ok && o.PID != w.watchPID
	}))
	if self := lockmirror.Self(); theirs.PIDDomain != self.PIDDomain || theirs.PIDSpace != self.PIDSpace {
		t.Errorf("claude names its pid domain %q and space %q, mc-broker %q and %q", theirs.PIDDomain, theirs.PIDSpace, self.PIDDomain, self.PIDSpace)
	}
	if haveBirth && theirs.LockBirthtimeMs != birth {
		t.Errorf("claude's lockBirthtimeMs %v, mc-broker's formula %v", theirs.LockBirthtimeMs, birth)
	}
	// Offline its refresh request fails at once and it releases the lock
	// (killing it would leave the lock behind, as a dead holder does).
	waitFor(t, 10*time.Second, "claude releases its lock (control)", notYet(func() bool {
		_, err := os.Lstat(filepath.Join(copyDir, ".oauth_refresh.lock"))
		return err != nil
	}))
	stop()

	// The host's Claude refreshes: mc-broker mirrors its lock into the copy.
	if err := os.Mkdir(filepath.Join(hostDir, ".oauth_refresh.lock"), 0o755); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the host's lock is mirrored into the copy", notYet(func() bool {
		o, ok := readClaudeOwner(copyDir)
		return ok && o.PID == w.watchPID
	}))
	stop = startClaude(t, claude, copyDir)
	defer stop()
	// Within the ~7.5 s claude retries for: it must neither take the lock
	// nor take it over, nor touch the login.
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		o, ok := readClaudeOwner(copyDir)
		if !ok || o.PID != w.watchPID {
			t.Fatalf("claude took the mirrored lock or its owner record (owner %+v, present %v): it did not wait", o, ok)
		}
	}
	if now, _ := os.ReadFile(filepath.Join(copyDir, ".credentials.json")); !bytes.Equal(now, login) {
		t.Error("claude changed the copy's login while the lock was mirrored")
	}

	// The host releases: the mirror goes, and claude, which was waiting,
	// takes the lock at its next retry (1-2 s).
	released := time.Now()
	if err := os.Remove(filepath.Join(hostDir, ".oauth_refresh.lock")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 6*time.Second, "claude, still waiting, takes the lock once the mirror is gone", notYet(func() bool {
		o, ok := readClaudeOwner(copyDir)
		return ok && o.PID != w.watchPID
	}))
	t.Logf("claude took the lock %v after the host released its own", time.Since(released).Round(time.Millisecond))
}

// TestRealClaudeOnTheHostKeepsOffAMirroredLock: in the host's own config
// directory the mirror's owner is in claude's own pid domain, so claude
// checks, after waiting about 7.5 s, whether the owner (mc-broker) is still
// running and is the process the owner file names (pid and start time).
// Were the owner file wrong, claude would take the lock over here.
func TestRealClaudeOnTheHostKeepsOffAMirroredLock(t *testing.T) {
	w := startLockWorld(t)
	// A container refreshes: its lock is mirrored into the host's dir.
	if err := os.Mkdir(filepath.Join(w.copyDir, ".oauth_refresh.lock"), 0o755); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the copy's lock is mirrored into the host's dir", notYet(func() bool {
		o, ok := readClaudeOwner(w.hostDir)
		return ok && o.PID == w.watchPID
	}))
	stop := startClaude(t, w.claude, w.hostDir)
	defer stop()
	for end := time.Now().Add(11 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if o, ok := readClaudeOwner(w.hostDir); !ok || o.PID != w.watchPID {
			t.Fatalf("claude took over the mirrored lock on the host (owner %+v, present %v)", o, ok)
		}
	}
	if err := os.Remove(filepath.Join(w.copyDir, ".oauth_refresh.lock")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the mirror is removed", notYet(func() bool {
		_, err := os.Lstat(filepath.Join(w.hostDir, ".oauth_refresh.lock"))
		return err != nil
	}))
}

// notYet adapts a plain condition to waitFor.
func notYet(cond func() bool) func() (bool, string) {
	return func() (bool, string) { return cond(), "not yet" }
}
