package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mc-broker/mc-broker/broker/watch"
)

// TestRunExitStatus: run exits with its command's status, and refuses to
// start the command when a login is broken.
func TestRunExitStatus(t *testing.T) {
	w := newWorld(t, "claude", 2)
	if _, errOut, code := w.run("run", "--config", w.config, "--", "sh", "-c", "exit 7"); code != 7 {
		t.Errorf("run -- sh -c 'exit 7' exited %d, want 7:\n%s", code, errOut)
	}
	if _, errOut, code := w.run("run", "--config", w.config, "--", "true"); code != 0 {
		t.Errorf("run -- true exited %d, want 0:\n%s", code, errOut)
	}
	want := w.forCopy(w.login(1))
	if ok, why := copiesHold(w.copies, want); !ok {
		t.Errorf("run did not sync before the command: %s", why)
	}

	// A copy that cannot be written is reported; the command still runs.
	writeFile(t, filepath.Join(w.root, "copies", "bad"), []byte("a file where a copy directory belongs"))
	w.copies = append(w.copies, filepath.Join(w.root, "copies", "bad", ".credentials.json"))
	w.writeConfig(w.copies)
	_, errOut, code := w.run("run", "--config", w.config, "--", "sh", "-c", "exit 5")
	if code != 5 || !strings.Contains(errOut, "failed ") {
		t.Errorf("run with a copy that cannot be written exited %d, want the command's 5, with the failure on stderr:\n%s", code, errOut)
	}
	w.copies = w.copies[:2]
	w.writeConfig(w.copies)

	marker := filepath.Join(w.root, "ran")
	_, errOut, code = w.run("run", "--config", w.config, "--min-ttl", "1000000h", "--", "touch", marker)
	if code != 3 || !strings.Contains(errOut, "expires sooner than --min-ttl") {
		t.Errorf("run --min-ttl with a login about to lapse exited %d, want 3 with the reason:\n%s", code, errOut)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Errorf("run started the command although the login expires too soon")
	}

	blanked, err := os.ReadFile(filepath.Join(fixturesDir(t), "claude/credentials.blanked.json"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, w.source, blanked)
	_, errOut, code = w.run("run", "--config", w.config, "--", "touch", marker)
	if code != 3 {
		t.Errorf("run with a broken login exited %d, want 3:\n%s", code, errOut)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Errorf("run started the command although the login is broken")
	}
	if !strings.Contains(errOut, "not running the command") {
		t.Errorf("run does not say why the command did not run:\n%s", errOut)
	}
	if ok, why := copiesHold(w.copies, want); !ok {
		t.Errorf("a broken login reached a copy: %s", why)
	}
}

// TestRunForwardsSIGTERM sends SIGTERM to run (stdin is not a terminal):
// the command gets it, and run exits with the command's status, or 128+15
// when the command dies of it.
func TestRunForwardsSIGTERM(t *testing.T) {
	for _, tt := range []struct {
		name   string
		script string
		code   int
	}{
		{"command handles it", `trap 'exit 42' TERM; touch "$1"; while :; do sleep 0.01; done`, 42},
		{"command dies of it", `touch "$1"; exec sleep 30`, 128 + 15},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t, "claude", 1)
			started := filepath.Join(w.root, "started")
			p := w.start("run", "--config", w.config, "--", "sh", "-c", tt.script, "sh", started)
			waitFor(t, 10*time.Second, "the command to start", func() (bool, string) {
				_, err := os.Stat(started)
				return err == nil, "not started"
			})
			p.signal(syscall.SIGTERM)
			if code := p.wait(5 * time.Second); code != tt.code {
				t.Errorf("run exited %d after SIGTERM, want %d", code, tt.code)
			}
		})
	}
}

// TestRunKeepsCopiesCurrent changes the host's login while run's command
// runs: the copies follow, as under watch.
func TestRunKeepsCopiesCurrent(t *testing.T) {
	w := newWorld(t, "claude", 3)
	stop := filepath.Join(w.root, "stop")
	p := w.start("run", "--config", w.config, "--log-format", "json", "--", "sh", "-c", `while [ ! -e "$1" ]; do sleep 0.01; done`, "sh", stop)
	p.waitReady(w.state)
	w.replace(w.source, w.login(2))
	want := w.forCopy(w.login(2))
	waitFor(t, 5*time.Second, "the copies to follow the host while the command runs", func() (bool, string) {
		return copiesHold(w.copies, want)
	})
	writeFile(t, stop, nil)
	if code := p.wait(5 * time.Second); code != 0 {
		t.Errorf("run exited %d, want 0", code)
	}
}

// TestWatchStopsWithinGraceWhenBlocked holds mc-broker's lock on every copy
// (as a stuck `mc-broker sync` elsewhere would) while the host's login
// changes, so the watcher is stuck waiting to write: SIGTERM still ends it
// with exit 0 within 2 s.
func TestWatchStopsWithinGraceWhenBlocked(t *testing.T) {
	w := newWorld(t, "claude", 2)
	p := w.watch()
	holdCopyLocks(t, w)
	w.replace(w.source, w.login(2))
	// The watcher is stuck once it has a copy lock open (and cannot take it).
	waitFor(t, 5*time.Second, "the watcher to wait for a copy lock", func() (bool, string) {
		fds, _ := filepath.Glob(filepath.Join("/proc", strconv.Itoa(p.cmd.Process.Pid), "fd", "*"))
		for _, fd := range fds {
			if target, err := os.Readlink(fd); err == nil && filepath.Dir(target) == filepath.Join(w.state, "locks") {
				return true, ""
			}
		}
		return false, "no copy lock open"
	})
	start := time.Now()
	p.signal(syscall.SIGTERM)
	if code := p.wait(2 * time.Second); code != 0 {
		t.Errorf("watch exited %d on SIGTERM while blocked, want 0", code)
	}
	t.Logf("stopped %v after SIGTERM while blocked on a lock", time.Since(start))
	for _, c := range w.copies {
		w.valid(c)
	}
}

// TestRunSaysAtOnceWhenItCannotWatch: a watcher that cannot start (here its
// lock file is a directory) is reported while the command runs, not only
// after it ends: otherwise `run -- docker compose up` runs for hours with
// copies nobody keeps current and nothing said.
func TestRunSaysAtOnceWhenItCannotWatch(t *testing.T) {
	w := newWorld(t, "claude", 1)
	if err := os.MkdirAll(filepath.Join(w.state, watch.LockFile), 0o700); err != nil {
		t.Fatal(err)
	}
	stop := filepath.Join(w.root, "stop")
	p := w.start("run", "--config", w.config, "--log-format", "json", "--", "sh", "-c", `while [ ! -e "$1" ]; do sleep 0.01; done`, "sh", stop)
	t.Cleanup(func() { os.WriteFile(stop, nil, 0o600) }) // ends the command if the test fails
	waitFor(t, 5*time.Second, "run to say that it is not watching", func() (bool, string) {
		return p.log.count("the watcher stopped early; copies are not kept current while the command runs") == 1, p.log.String()
	})
	writeFile(t, stop, nil)
	if code := p.wait(5 * time.Second); code != 0 {
		t.Errorf("run exited %d, want the command's 0", code)
	}
	if n := p.log.count("the watcher stopped early; copies are not kept current while the command runs"); n != 1 {
		t.Errorf("the failure was logged %d times, want once:\n%s", n, p.log.String())
	}
}

// TestRunDoesNotStartTheCommandAfterASignal: a signal that arrives while
// run is still syncing (here blocked on a copy lock, as on a slow engine)
// means the user wants out: the command must not be started afterwards.
func TestRunDoesNotStartTheCommandAfterASignal(t *testing.T) {
	w := newWorld(t, "claude", 1)
	if _, errOut, code := w.run("sync", "--config", w.config); code != 0 {
		t.Fatalf("sync exited %d:\n%s", code, errOut)
	}
	w.replace(w.source, w.login(2))
	held := holdCopyLocks(t, w)
	marker := filepath.Join(w.root, "ran")
	p := w.start("run", "--config", w.config, "--", "touch", marker)
	// Until exec completes the child still has this test's lock files
	// open: a lock seen open twice, 10 ms apart, is mc-broker's own.
	seen := 0
	waitFor(t, 5*time.Second, "run to wait for a copy lock in its first sync", func() (bool, string) {
		fds, _ := filepath.Glob(filepath.Join("/proc", strconv.Itoa(p.cmd.Process.Pid), "fd", "*"))
		for _, fd := range fds {
			if target, err := os.Readlink(fd); err == nil && filepath.Dir(target) == filepath.Join(w.state, "locks") {
				if seen++; seen == 2 {
					return true, ""
				}
				time.Sleep(10 * time.Millisecond)
				return false, "a copy lock open once"
			}
		}
		seen = 0
		return false, "no copy lock open"
	})
	p.signal(syscall.SIGTERM)
	for _, f := range held {
		unix.Flock(int(f.Fd()), unix.LOCK_UN)
	}
	if code := p.wait(10 * time.Second); code != 128+int(syscall.SIGTERM) {
		t.Errorf("run exited %d after SIGTERM during its sync, want %d", code, 128+int(syscall.SIGTERM))
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("run started the command after it was told to stop")
	}
	if !strings.Contains(p.log.String(), "touch was not started") {
		t.Errorf("run does not say that the command was not started:\n%s", p.log.String())
	}
}

// holdCopyLocks takes mc-broker's lock on every copy, as a stuck `mc-broker
// sync` elsewhere would; they are let go when the test ends.
func holdCopyLocks(t *testing.T, w *world) []*os.File {
	t.Helper()
	locks, _ := filepath.Glob(filepath.Join(w.state, "locks", "*"))
	if len(locks) == 0 {
		t.Fatal("no copy locks in the state directory")
	}
	var held []*os.File
	for _, l := range locks {
		f, err := os.OpenFile(l, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
			t.Fatal(err)
		}
		held = append(held, f)
	}
	return held
}
