package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mc-broker/mc-broker/broker/atomicfile"
)

// The tests below run the real binary's `watch` against real files and
// inotify, and check what a user (or a CLI in a container) would see.

// TestWatchRenameStorm replaces the host's login 1,000 times by rename in a
// tight loop, as a CLI refreshing over and over would: every copy ends with
// the last login.
func TestWatchRenameStorm(t *testing.T) {
	w := newWorld(t, "claude", 5)
	p := w.watch()
	const writes = 1000
	for gen := 2; gen <= writes+1; gen++ {
		w.replace(w.source, w.login(gen))
	}
	want := w.forCopy(w.login(writes + 1))
	waitFor(t, 10*time.Second, "every copy to hold the last login", func() (bool, string) {
		return copiesHold(w.copies, want)
	})
	for _, c := range w.copies {
		if left, _ := filepath.Glob(filepath.Join(filepath.Dir(c), atomicfile.TempPattern)); len(left) > 0 {
			t.Errorf("temporary files left in a copy directory: %v", left)
		}
	}
	if n := p.log.count("copy written"); n > 5*writes {
		t.Errorf("%d copy writes for %d changes of the host's login", n, writes)
	}
	t.Logf("%d copy writes for %d host changes over 5 copies", p.log.count("copy written"), writes)
}

// TestWatchInPlaceWrites writes the host's Gemini login the way Gemini CLI
// does, in place: truncate, then small chunks with pauses, some longer than
// the quiet window. A reader polling every copy in a tight loop never sees
// anything but complete JSON, and the watcher logs no warning for it.
func TestWatchInPlaceWrites(t *testing.T) {
	w := newWorld(t, "gemini", 3)
	p := w.watch()

	var reads, bad atomic.Int64
	var firstBad atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			for _, c := range w.copies {
				data, err := os.ReadFile(c)
				reads.Add(1)
				if err != nil || !json.Valid(data) {
					if bad.Add(1) == 1 {
						firstBad.Store(fmt.Sprintf("%s: %v, %d bytes", c, err, len(data)))
					}
				}
			}
		}
	}()

	pauses := []time.Duration{0, time.Millisecond, 4 * time.Millisecond, 25 * time.Millisecond}
	const versions = 12
	for gen := 2; gen <= versions+1; gen++ {
		data := w.login(gen)
		f, err := os.OpenFile(w.source, os.O_WRONLY|os.O_TRUNC, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < len(data); i += 64 {
			if _, err := f.Write(data[i:min(i+64, len(data))]); err != nil {
				t.Fatal(err)
			}
			time.Sleep(pauses[(gen+i/64)%len(pauses)])
		}
		f.Close()
	}
	want := w.login(versions + 1)
	waitFor(t, 10*time.Second, "every copy to hold the last login", func() (bool, string) {
		return copiesHold(w.copies, want)
	})
	close(stop)
	wg.Wait()
	if bad.Load() > 0 {
		t.Errorf("a reader saw %d incomplete copies in %d reads; first: %v", bad.Load(), reads.Load(), firstBad.Load())
	}
	for _, l := range p.log.lines() {
		if lv := l.str("level"); lv == "WARN" || lv == "ERROR" {
			t.Errorf("a half-written source was logged as a problem: %v", l)
		}
	}
	t.Logf("%d reads of the copies, all complete", reads.Load())
}

// TestWatchAdoptsContainerRefresh plays a container's CLI refreshing its
// login in its copy: the host's file and every other copy have the new
// login within a second, the host's previous login is kept as a 0600
// backup, the host keeps its MCP tokens, and nothing is written twice.
func TestWatchAdoptsContainerRefresh(t *testing.T) {
	w := newWorld(t, "claude", 4)
	p := w.watch()
	oldHost := read(w.source)

	newer := w.forCopy(w.login(2)) // a container's copy has no mcpOAuth
	written := p.log.count("copy written")
	start := time.Now()
	w.replace(w.copies[1], newer)
	waitFor(t, time.Second, "the host and every copy to hold the container's login", func() (bool, string) {
		if !bytes.Contains(read(w.source), []byte("TOKEN-G000002")) {
			return false, "the host's file does not hold it yet"
		}
		return copiesHold(w.copies, newer)
	})
	t.Logf("container refresh reached the host and every copy in %v", time.Since(start))
	waitFor(t, time.Second, "the writes and the take-back to be logged", func() (bool, string) {
		return p.log.count("copy written")-written >= 3 && p.log.count(adoptedMsg) == 1, "fewer log lines"
	})

	var host struct {
		ClaudeAiOauth struct{ RefreshToken string } `json:"claudeAiOauth"`
		McpOAuth      map[string]any                `json:"mcpOAuth"`
	}
	if err := json.Unmarshal(read(w.source), &host); err != nil {
		t.Fatalf("the host's file is not JSON after the write-back: %v", err)
	}
	if !strings.HasSuffix(host.ClaudeAiOauth.RefreshToken, "TOKEN-G000002") || len(host.McpOAuth) == 0 {
		t.Errorf("the host's file lost its login or its mcpOAuth member after the write-back")
	}

	settled(t, 500*time.Millisecond, "the copies, the host's file or the watcher's writes", w.snapshot(p))
	backups := w.backups()
	if len(backups) != 1 {
		t.Fatalf("%d backups of the host's login, want exactly 1: %v", len(backups), backups)
	}
	if fi, err := os.Stat(backups[0]); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("backup %s: %v, mode %v, want 0600", backups[0], err, fi.Mode().Perm())
	}
	if !bytes.Equal(read(backups[0]), oldHost) {
		t.Errorf("the backup does not hold the host's previous login")
	}
	if n := w.stateOf().Adoptions; n != 1 {
		t.Errorf("the state file counts %d adoptions, want 1", n)
	}
	// The copy the container wrote already holds the login: one write for
	// each of the three others, and none for it.
	if n := p.log.count("copy written") - written; n != 3 {
		t.Errorf("%d copy writes after the refresh, want 3 (one per other copy)", n)
	}
	if n := p.log.count("copy written", "copy", w.copies[1]); n != 1 {
		t.Errorf("the container's copy was written %d times in all, want once (its creation)", n)
	}
}

// TestWatchRefusesOlderAndBlanked writes an older login into one copy and a
// blanked one (what Claude writes after a failed refresh) into another:
// neither reaches the host, and both copies are repaired.
func TestWatchRefusesOlderAndBlanked(t *testing.T) {
	w := newWorld(t, "claude", 3)
	w.replace(w.source, w.login(5))
	p := w.watch()
	host := read(w.source)
	want := w.forCopy(host)

	w.replace(w.copies[0], w.forCopy(w.login(4)))
	blanked, err := os.ReadFile(filepath.Join(fixturesDir(t), "claude/credentials.blanked.json"))
	if err != nil {
		t.Fatal(err)
	}
	w.replace(w.copies[1], blanked)
	waitFor(t, 5*time.Second, "both copies to be repaired", func() (bool, string) {
		return copiesHold(w.copies, want)
	})
	// The log line follows the write.
	waitFor(t, time.Second, "the log to say the older copy was updated and the blanked one repaired", func() (bool, string) {
		return p.log.count("copy written", "copy", w.copies[0], "outcome", "updated") == 1 &&
			p.log.count("copy written", "copy", w.copies[1], "outcome", "repaired") == 1, p.log.String()
	})
	settled(t, 300*time.Millisecond, "the copies or the host's file", w.snapshot(p))
	if !bytes.Equal(read(w.source), host) {
		t.Errorf("the host's login changed after an older or blanked copy")
	}
	if b := w.backups(); len(b) != 0 {
		t.Errorf("backups kept though nothing was adopted: %v", b)
	}
	if n := w.stateOf().Adoptions; n != 0 {
		t.Errorf("the state file counts %d adoptions, want 0", n)
	}
}

// TestWatchKilledDuringStorm kills the watcher with SIGKILL while the host's
// login changes without pause, then starts it again: no file is ever left
// half-written, and everything converges on the last login.
func TestWatchKilledDuringStorm(t *testing.T) {
	w := newWorld(t, "claude", 5)
	p := w.watch()
	stopStorm := w.storm()
	waitFor(t, 10*time.Second, "the watcher to write copies during the storm", func() (bool, string) {
		return p.log.count("copy written") >= 30, "fewer than 30 writes"
	})
	p.signal(syscall.SIGKILL)
	p.wait(2 * time.Second)
	last := stopStorm()

	w.valid(w.source)
	for _, c := range w.copies {
		w.valid(c)
	}
	left := 0
	for _, c := range w.copies {
		m, _ := filepath.Glob(filepath.Join(filepath.Dir(c), atomicfile.TempPattern))
		left += len(m)
	}
	t.Logf("after kill -9: %d temporary files in copy directories", left)

	w.watch()
	want := w.forCopy(w.login(last))
	waitFor(t, 5*time.Second, "every copy to hold the last login after a restart", func() (bool, string) {
		return copiesHold(w.copies, want)
	})
}

// TestWatchDirectoriesComeAndGo deletes the host's login directory and
// creates it again, and deletes a copy directory: the copies follow.
func TestWatchDirectoriesComeAndGo(t *testing.T) {
	w := newWorld(t, "claude", 3)
	w.watch()
	dir := filepath.Dir(w.source)
	for gen := 2; gen <= 3; gen++ {
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		// Written in place into the new directory, so the watcher must have
		// seen the directory come back (or look at it when it does).
		writeFile(t, w.source, w.login(gen))
		want := w.forCopy(w.login(gen))
		waitFor(t, 5*time.Second, fmt.Sprintf("the copies to follow a re-created source directory (round %d)", gen-1), func() (bool, string) {
			return copiesHold(w.copies, want)
		})
	}

	// A copy directory deleted (a `docker compose down -v` of a bind mount
	// source, a cleanup script) is written again. The watcher may be
	// writing there at that moment (a lock, a temporary file): remove
	// until it is gone, as a person would run rm again.
	waitFor(t, 5*time.Second, "the copy directory to be removed", func() (bool, string) {
		err := os.RemoveAll(filepath.Dir(w.copies[2]))
		return err == nil, fmt.Sprint(err)
	})
	want := w.forCopy(w.login(3))
	waitFor(t, 5*time.Second, "the deleted copy directory to be written again", func() (bool, string) {
		return copiesHold(w.copies, want)
	})
}

// TestWatchReadOnlyCopy makes one copy directory read-only while the host's
// login changes: the failure shows in the log and in status, the other
// copies are updated, and once the directory is writable again the copy
// catches up by itself and status no longer shows it failing. The watcher
// runs as uid 65534 when the tests run as root, since root ignores modes.
func TestWatchReadOnlyCopy(t *testing.T) {
	w := newWorld(t, "claude", 3)
	w.runAsNobody()
	p := w.watch()
	roDir := filepath.Dir(w.copies[1])
	if err := os.Chmod(roDir, 0o500); err != nil {
		t.Fatal(err)
	}
	w.replace(w.source, w.login(2))
	want := w.forCopy(w.login(2))
	waitFor(t, 5*time.Second, "the writable copies to be updated", func() (bool, string) {
		return copiesHold([]string{w.copies[0], w.copies[2]}, want)
	})
	waitFor(t, 5*time.Second, "the log to report the read-only copy", func() (bool, string) {
		return p.log.count("copy failed; retrying with backoff", "copy", w.copies[1]) > 0, "no such log line"
	})
	var status string
	waitFor(t, 5*time.Second, "status to show the read-only copy failing", func() (bool, string) {
		status, _, _ = w.run("status", "--config", w.config)
		return strings.Contains(status, "failing since ") && strings.Contains(status, w.copies[1]), status
	})
	if strings.Count(status, "failing since") != 1 {
		t.Errorf("status shows more than the one failing copy:\n%s", status)
	}
	w.valid(w.copies[1])

	if err := os.Chmod(roDir, 0o700); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "the copy to catch up once writable", func() (bool, string) {
		return copiesHold(w.copies, want)
	})
	waitFor(t, time.Second, "the log to say the copy recovered", func() (bool, string) {
		return p.log.count("copy recovered", "copy", w.copies[1]) == 1, "no such log line"
	})
	waitFor(t, 5*time.Second, "status to stop showing the copy failing", func() (bool, string) {
		status, _, _ = w.run("status", "--config", w.config)
		return !strings.Contains(status, "failing since"), status
	})
}

// TestWatchReload changes the config under a running watcher and sends
// SIGHUP: an added copy is written, a removed one is left alone, and an
// invalid config is reported while the running one goes on.
func TestWatchReload(t *testing.T) {
	w := newWorld(t, "claude", 3)
	p := w.watch()
	removed, added := w.copies[0], filepath.Join(w.root, "copies", "new", ".credentials.json")
	w.copies = []string{w.copies[1], w.copies[2], added}
	w.writeConfig(w.copies)
	p.signal(syscall.SIGHUP)
	want := w.forCopy(w.login(1))
	waitFor(t, 5*time.Second, "the added copy to be written after SIGHUP", func() (bool, string) {
		return copiesHold(w.copies, want)
	})

	w.replace(w.source, w.login(2))
	want = w.forCopy(w.login(2))
	waitFor(t, 5*time.Second, "the configured copies to follow the host", func() (bool, string) {
		return copiesHold(w.copies, want)
	})
	if bytes.Equal(read(removed), want) {
		t.Errorf("a copy removed from the config was still written")
	}

	writeFile(t, w.config, []byte("sources:\n  claude: {paht: /nowhere}\n"))
	p.signal(syscall.SIGHUP)
	waitFor(t, 5*time.Second, "the log to report the invalid config", func() (bool, string) {
		return p.log.count("config reload failed; the running config stays in use") == 1, "no such log line"
	})
	w.replace(w.source, w.login(3))
	want = w.forCopy(w.login(3))
	waitFor(t, 5*time.Second, "the old config to keep working", func() (bool, string) {
		return copiesHold(w.copies, want)
	})
}

// TestWatchStopsOnSIGTERM sends SIGTERM while the host's login changes
// without pause: the watcher exits 0 within 2 s and leaves every copy valid.
func TestWatchStopsOnSIGTERM(t *testing.T) {
	w := newWorld(t, "claude", 10)
	p := w.watch()
	defer w.storm()()
	waitFor(t, 10*time.Second, "the watcher to be busy", func() (bool, string) {
		return p.log.count("copy written") >= 20, "fewer than 20 writes"
	})
	start := time.Now()
	p.signal(syscall.SIGTERM)
	if code := p.wait(2 * time.Second); code != 0 {
		t.Errorf("watch exited %d on SIGTERM, want 0", code)
	}
	t.Logf("stopped %v after SIGTERM", time.Since(start))
	for _, c := range w.copies {
		w.valid(c)
	}
	if st := w.stateOf(); st.PID != p.cmd.Process.Pid {
		t.Errorf("the state file was not left by the stopped watcher")
	}
}

// TestWatchNoPingPong changes the host's login once: each copy is written
// exactly once, and then nothing more happens (no echo of the watcher's
// own writes, no rewrite of a current copy).
func TestWatchNoPingPong(t *testing.T) {
	w := newWorld(t, "claude", 5)
	p := w.watch()
	if n := p.log.count("copy written"); n != 5 {
		t.Fatalf("%d copy writes at start, want 5", n)
	}
	settled(t, 300*time.Millisecond, "the copies after the first pass", w.snapshot(p))
	for gen := 2; gen <= 4; gen++ {
		w.replace(w.source, w.login(gen))
		want := w.forCopy(w.login(gen))
		waitFor(t, 5*time.Second, "the copies to follow", func() (bool, string) {
			return copiesHold(w.copies, want)
		})
		// The log line follows the write.
		waitFor(t, time.Second, "the writes to be logged", func() (bool, string) {
			return p.log.count("copy written") >= 5*gen, "fewer log lines"
		})
		settled(t, 300*time.Millisecond, "the copies after a change", w.snapshot(p))
		for _, c := range w.copies {
			if n := p.log.count("copy written", "copy", c); n != gen {
				t.Errorf("%s written %d times after %d changes, want once per change", c, n, gen)
			}
		}
	}
}

// TestWatchStatusAndSingleInstance checks what status says about a running
// watcher, and that a second watcher on the same state directory refuses
// to start.
func TestWatchStatusAndSingleInstance(t *testing.T) {
	w := newWorld(t, "claude", 2)
	p := w.watch()
	out, _, _ := w.run("status", "--config", w.config)
	if !strings.Contains(out, "watcher: running since ") || !strings.Contains(out, fmt.Sprintf("(pid %d,", p.cmd.Process.Pid)) {
		t.Errorf("status does not show the running watcher:\n%s", out)
	}
	out, _, _ = w.run("status", "--config", w.config, "--json")
	var st struct {
		Watcher struct {
			Running bool `json:"running"`
			PID     int  `json:"pid"`
		} `json:"watcher"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil || !st.Watcher.Running || st.Watcher.PID != p.cmd.Process.Pid {
		t.Errorf("status --json: watcher.running=%v pid=%d (%v):\n%s", st.Watcher.Running, st.Watcher.PID, err, out)
	}

	_, errOut, code := w.run("watch", "--config", w.config)
	if code != 2 || !strings.Contains(errOut, "already running") || !strings.Contains(errOut, fmt.Sprintf("pid %d", p.cmd.Process.Pid)) {
		t.Errorf("a second watch exited %d, want 2 with an 'already running' error naming the pid:\n%s", code, errOut)
	}

	p.signal(syscall.SIGTERM)
	p.wait(2 * time.Second)
	out, _, _ = w.run("status", "--config", w.config, "--json")
	if err := json.Unmarshal([]byte(out), &st); err != nil || st.Watcher.Running {
		t.Errorf("status --json says a stopped watcher runs (%v):\n%s", err, out)
	}
	out, _, _ = w.run("status", "--config", w.config)
	if !strings.Contains(out, "watcher: not running (last one stopped ") {
		t.Errorf("status does not say the watcher stopped:\n%s", out)
	}
}

// writeInPlace writes data into path as Gemini CLI does: truncate, then
// chunks of 64 bytes with the given pauses between them in turn.
func writeInPlace(t *testing.T, path string, data []byte, pauses ...time.Duration) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for i := 0; i < len(data); i += 64 {
		if _, err := f.Write(data[i:min(i+64, len(data))]); err != nil {
			t.Fatal(err)
		}
		if len(pauses) > 0 {
			time.Sleep(pauses[(i/64)%len(pauses)])
		}
	}
}

// TestWatchAdoptsInPlaceRefresh plays Gemini CLI refreshing inside a
// container: it writes its copy in place, slowly. The half-written copy is
// not "repaired" under the CLI's feet (that would throw the new login
// away); once complete, it is adopted by the host and every other copy.
func TestWatchAdoptsInPlaceRefresh(t *testing.T) {
	w := newWorld(t, "gemini", 3)
	p := w.watch()
	writeInPlace(t, w.copies[0], w.login(2), 25*time.Millisecond)
	want := w.login(2)
	waitFor(t, 5*time.Second, "the host and every copy to hold the container's login", func() (bool, string) {
		if !bytes.Equal(read(w.source), want) {
			return false, "the host does not hold it"
		}
		return copiesHold(w.copies, want)
	})
	if n := p.log.count("copy written", "outcome", "repaired"); n != 0 {
		t.Errorf("a copy being written by its CLI was repaired %d times", n)
	}
}

// TestWatchRepairsBlankedHost: a failed refresh on the host blanks its
// login; a copy still holds a valid one, which is taken back (after a
// backup of the blanked file). A host with no login at all (logged out) is
// left alone.
func TestWatchRepairsBlankedHost(t *testing.T) {
	w := newWorld(t, "claude", 2)
	p := w.watch()
	putFixture(t, "claude/credentials.blanked.json", w.source)
	// The copies hold the login the host had before its refresh failed:
	// its refresh token is the one whose use blanked the host, so it is
	// not brought back. The host stays broken (reported) and the copies
	// keep what they have.
	old := w.forCopy(w.login(1))
	waitFor(t, 5*time.Second, "the watcher to report the blanked host", func() (bool, string) {
		return p.log.count("source unusable; its copies are left as they are") == 1, "no such log line"
	})
	settled(t, 300*time.Millisecond, "the blanked host and its copies", w.snapshot(p))
	if ok, why := copiesHold(w.copies, old); !ok {
		t.Errorf("a copy lost its login: %s", why)
	}
	if n := len(w.backups()); n != 0 {
		t.Errorf("%d backups, want none: nothing was written back", n)
	}
	// A container refreshed: its newer login rescues the host.
	w.replace(w.copies[0], w.forCopy(w.login(2)))
	want := w.forCopy(w.login(2))
	waitFor(t, 5*time.Second, "the host's blanked login to be replaced by the container's newer one", func() (bool, string) {
		return bytes.Equal(w.forCopy(read(w.source)), want), "the host still holds something else"
	})
	waitFor(t, 5*time.Second, "every copy to get the rescued login, and the take-back to be logged", func() (bool, string) {
		if p.log.count(adoptedMsg) != 1 {
			return false, "no take-back logged"
		}
		return copiesHold(w.copies, want)
	})
	if n := len(w.backups()); n != 1 {
		t.Errorf("%d backups, want 1 (of the blanked login)", n)
	}

	if err := os.Remove(w.source); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the watcher to notice the logout", func() (bool, string) {
		return p.log.count("source not logged in; its copies are left as they are") == 1, "no such log line"
	})
	settled(t, 300*time.Millisecond, "the host's file and the copies after a logout", w.snapshot(p))
	if _, err := os.Stat(w.source); err == nil {
		t.Errorf("a logged-out host was given a login back from a copy")
	}
}
