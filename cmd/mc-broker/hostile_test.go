package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mc-broker/mc-broker/broker"
	"github.com/mc-broker/mc-broker/broker/kinds"
)

// This file is the hostile-container suite that docs/SECURITY.md names:
// each test plays a container that attacks its own copy (issue 11) against
// the real binary, real files and inotify, and checks what the user would
// notice: the host's login, the other copies, the backups, the log, status
// and exit codes. Each attack worked against mc-broker before the trust
// rules; each must now fail visibly. The harness is watchenv_test.go's.

// refusedMsg is the warning watch logs once for a copy whose login is not
// taken back (or that is not replaced: not a login, another account).
const refusedMsg = "a copy's login is not taken back"

// year9999 is an expiry no server issues.
var year9999 = time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)

// loginExpiring is the host's login at generation gen with its expiry set
// to at (Claude and Gemini worlds).
func (w *world) loginExpiring(gen int, at time.Time) []byte {
	w.t.Helper()
	data := w.login(gen)
	was := fmt.Sprint(w.base + int64(gen)*1000)
	if !bytes.Contains(data, []byte(was)) {
		w.t.Fatalf("login %d has no expiry %s", gen, was)
	}
	return bytes.Replace(data, []byte(was), []byte(fmt.Sprint(at.UnixMilli())), 1)
}

// refusals counts the warnings that name the copy loc with a reason
// containing why.
func (p *proc) refusals(loc, why string) int {
	n := 0
	for _, l := range p.log.lines() {
		if l.str("msg") == refusedMsg && l.str("level") == "WARN" && l.str("copy") == loc && strings.Contains(l.str("reason"), why) {
			n++
		}
	}
	return n
}

// statusJSON is what these tests read of `status --json`.
type statusJSON struct {
	Sources []struct {
		Name   string `json:"name"`
		State  string `json:"state"`
		Copies []struct {
			Location string `json:"location"`
			Outcome  string `json:"outcome"`
			Problem  string `json:"problem"`
			Refused  string `json:"refused"`
		} `json:"copies"`
	} `json:"sources"`
	Watcher struct {
		Running    bool `json:"running"`
		LockMirror *struct {
			Refused int `json:"refused"`
		} `json:"lock_mirror"`
		Sources []struct {
			Name           string     `json:"name"`
			WriteBack      string     `json:"write_back_problem"`
			WriteBackSince *time.Time `json:"write_back_failing_since"`
			Copies         []struct {
				Location     string     `json:"location"`
				Outcome      string     `json:"outcome"`
				Problem      string     `json:"problem"`
				Refused      string     `json:"refused"`
				FailingSince *time.Time `json:"failing_since"`
			} `json:"copies"`
		} `json:"sources"`
	} `json:"watcher"`
	ExitCode int `json:"exit_code"`
}

// status runs `status` and `status --json` and returns both, with their
// exit codes; the JSON's exit_code must be the process's.
func (w *world) status() (text string, code int, js statusJSON) {
	w.t.Helper()
	text, _, code = w.run("status", "--config", w.config)
	out, _, jcode := w.run("status", "--config", w.config, "--json")
	if err := json.Unmarshal([]byte(out), &js); err != nil {
		w.t.Fatalf("status --json is not JSON: %v\n%s", err, out)
	}
	if js.ExitCode != jcode {
		w.t.Errorf("status --json says exit_code %d and exits %d", js.ExitCode, jcode)
	}
	return text, code, js
}

// watcherRefused is what the running watcher's state (status --json) says
// was refused of the copy loc, "" when nothing.
func (js statusJSON) watcherRefused(loc string) string {
	for _, s := range js.Watcher.Sources {
		for _, c := range s.Copies {
			if c.Location == loc {
				return c.Refused
			}
		}
	}
	return ""
}

// statusShowsRefused waits for status (text and --json, written by the
// running watcher within a moment) to show that the login of the copy loc
// was not taken back for why, and to exit 1.
func (w *world) statusShowsRefused(loc, why string) {
	w.t.Helper()
	waitFor(w.t, 5*time.Second, "status to show the refused copy, and exit 1", func() (bool, string) {
		text, code, js := w.status()
		switch {
		case !strings.Contains(text, "not taken back from "+loc+": "+why):
			return false, "status does not show it:\n" + text
		case !strings.Contains(js.watcherRefused(loc), why):
			return false, "status --json: the watcher's copy refused=" + js.watcherRefused(loc)
		case code != 1:
			return false, fmt.Sprintf("status exited %d, want 1", code)
		}
		return true, ""
	})
}

// idsOf is each file's inode and mtime: a rewrite changes them.
func idsOf(paths ...string) string {
	var ids []string
	for _, p := range paths {
		ids = append(ids, fileID(p))
	}
	return strings.Join(ids, " ")
}

// TestHostileExpiryPoison: a container writes a login of the same account
// that claims to expire in the year 9999 into its copy. Before the trust
// rules it was taken into the host and sent to every copy, it won over the
// user's next /login (older by its expiry) within a second, and 25 of them
// pushed every genuine login out of the backups. Now: the host keeps its
// login, no other copy is touched, the container's copy gets the host's
// login back, the watcher warns naming the copy and the reason, and status
// shows it.
func TestHostileExpiryPoison(t *testing.T) {
	w := newWorld(t, "claude", 3)
	p := w.watch()
	host := read(w.source)
	want := w.forCopy(host)
	others := func() string { return idsOf(w.copies[1], w.copies[2]) }
	before := others()

	w.replace(w.copies[0], w.forCopy(w.loginExpiring(2, year9999)))
	waitFor(t, 10*time.Second, "the poisoned copy to get the host's login back", func() (bool, string) {
		return copiesHold(w.copies[:1], want)
	})
	waitFor(t, 5*time.Second, "a warning naming the copy and the expiry", func() (bool, string) {
		return p.refusals(w.copies[0], "claims to expire at 9999-12-31") == 1, "no such warning"
	})
	if !bytes.Equal(read(w.source), host) {
		t.Fatal("the host's login changed: the poisoned login was taken back")
	}
	if now := others(); now != before {
		t.Errorf("the other copies were rewritten (%s -> %s): the poisoned login was fanned out", before, now)
	}
	w.statusShowsRefused(w.copies[0], "its login claims to expire at 9999-12-31")

	// The container keeps writing its poison back while the user logs in
	// on the host: the user's login stays, and reaches every copy but the
	// container's.
	stop := fight(w.copies[0], w.forCopy(w.loginExpiring(3, year9999)))
	w.replace(w.source, w.login(4))
	fresh := w.forCopy(w.login(4))
	waitFor(t, 10*time.Second, "the user's new login to reach the other copies", func() (bool, string) {
		return copiesHold(w.copies[1:], fresh)
	})
	// The attack used to win within 1.5 s; give it twice that.
	settled(t, 3*time.Second, "the host's login after the user's /login", func() string { return broker.Hash(read(w.source)) })
	writes := stop()
	if !bytes.Equal(read(w.source), w.login(4)) {
		t.Fatal("the user's /login was replaced")
	}
	t.Logf("the container rewrote its poison %d times while the user logged in", writes)

	// 25 more poisons, each a new login: none is taken, so no backup is
	// ever made, and the user's logins stay the only ones the host had.
	for gen := 10; gen < 35; gen++ {
		w.replace(w.copies[0], w.forCopy(w.loginExpiring(gen, year9999.Add(-time.Duration(gen)*time.Hour))))
		waitFor(t, 10*time.Second, "the poisoned copy to be repaired", func() (bool, string) {
			return copiesHold(w.copies[:1], fresh)
		})
	}
	if b := w.backups(); len(b) != 0 {
		t.Errorf("%d backups after poisoned copies, want none (nothing was taken back): %v", len(b), b)
	}
	if n := p.log.count(adoptedMsg); n != 0 {
		t.Errorf("%d take-backs logged, want none", n)
	}
	if !bytes.Equal(read(w.source), w.login(4)) {
		t.Error("the host's login changed")
	}
	// One rule broken 27 times within the hour: one warning.
	if n := p.log.count(refusedMsg); n != 1 {
		t.Errorf("%d warnings for 27 logins refused for one rule, want 1", n)
	}

	// Without a watcher: status shows it, sync repairs it, both exit 1.
	p.signal(syscall.SIGTERM)
	p.wait(2 * time.Second)
	w.replace(w.copies[0], w.forCopy(w.loginExpiring(40, year9999)))
	text, code, js := w.status()
	if code != 1 || !strings.Contains(text, "not taken back: its login claims to expire at 9999-12-31") || !strings.Contains(js.Sources[0].Copies[0].Refused, "claims to expire") {
		t.Errorf("status exited %d, want 1 saying the copy's login is not taken back:\n%s", code, text)
	}
	out, _, code := w.run("sync", "--config", w.config)
	if code != 1 || !regexp.MustCompile(`repaired\s+`+regexp.QuoteMeta(w.copies[0])+`.*not taken back: its login claims to expire at 9999-12-31`).MatchString(out) {
		t.Errorf("sync exited %d, want 1 saying it repaired the copy and why:\n%s", code, out)
	}
	if !bytes.Equal(read(w.source), w.login(4)) || !bytes.Equal(read(w.copies[0]), fresh) {
		t.Error("sync took the poisoned login, or did not repair the copy")
	}
}

// fight plays a container that writes data into path whenever it holds
// anything else, until stop, which returns how many times it wrote.
func fight(path string, data []byte) (stop func() int) {
	quit, done := make(chan struct{}), make(chan struct{})
	n := 0
	go func() {
		defer close(done)
		tmp := filepath.Join(filepath.Dir(path), ".attack.tmp")
		for {
			select {
			case <-quit:
				return
			default:
			}
			if !bytes.Equal(read(path), data) {
				if os.WriteFile(tmp, data, 0o600) == nil && os.Rename(tmp, path) == nil {
					n++
				}
			}
			time.Sleep(time.Millisecond)
		}
	}()
	return func() int {
		close(quit)
		<-done
		return n
	}
}

// TestHostileControlGenuineRefresh is the positive control: a container's
// genuine refresh (same account, plausible expiry, normal size) reaches
// the host and every other copy within 100 ms (the median of ten; each
// within 2 s on a busy machine).
func TestHostileControlGenuineRefresh(t *testing.T) {
	w := newWorld(t, "claude", 4)
	p := w.watch()
	var took []time.Duration
	for gen := 2; gen <= 11; gen++ {
		// Round the copies: each gives a few, well within the hourly limit.
		newer := w.forCopy(w.login(gen))
		token := []byte(fmt.Sprintf("TOKEN-G%06d", gen))
		w.replace(w.copies[gen%len(w.copies)], newer)
		took = append(took, waitFor(t, 2*time.Second, "the refresh to reach the host and every copy", func() (bool, string) {
			if !bytes.Contains(read(w.source), token) {
				return false, "the host does not hold it"
			}
			return copiesHold(w.copies, newer)
		}))
	}
	slices.Sort(took)
	median := took[len(took)/2]
	t.Logf("a container's refresh reached the host and 3 other copies in %v (median), %v (max) of %d", median, took[len(took)-1], len(took))
	if median > 100*time.Millisecond {
		t.Errorf("median %v from a container's refresh to the host and every copy, want at most 100ms", median)
	}
	waitFor(t, 2*time.Second, "every take-back to be logged", func() (bool, string) {
		return p.log.count(adoptedMsg) == 10, fmt.Sprintf("%d take-backs logged", p.log.count(adoptedMsg))
	})
	if n := p.log.count(refusedMsg); n != 0 {
		t.Errorf("%d refusals of genuine refreshes", n)
	}
}

// TestHostileTakeBackFlood: a container gives the host one plausible,
// newer login after another (a script refreshing in a loop). The first
// few are taken back; past the hourly limit the copy is not taken from and
// gets the host's login instead; the host's own login of before stays on
// the backups' host shelf however many come.
func TestHostileTakeBackFlood(t *testing.T) {
	w := newWorld(t, "claude", 3)
	p := w.watch()
	genuine := read(w.source)
	hostChanges := 0
	last := fileID(w.source)
	for gen := 2; gen <= 27; gen++ {
		token := []byte(fmt.Sprintf("TOKEN-G%06d", gen))
		w.replace(w.copies[0], w.forCopy(w.login(gen)))
		waitFor(t, 10*time.Second, "the copy's login to be taken back or refused", func() (bool, string) {
			host := read(w.source)
			if bytes.Contains(host, token) {
				return true, ""
			}
			return bytes.Equal(read(w.copies[0]), w.forCopy(host)), "neither"
		})
		if id := fileID(w.source); id != last {
			hostChanges, last = hostChanges+1, id
		}
	}
	limit := broker.DefaultMaxTakeBacks
	if hostChanges != limit {
		t.Errorf("the host's login was replaced %d times by 26 logins from one copy, want %d (the hourly limit)", hostChanges, limit)
	}
	want := w.forCopy(w.login(1 + limit))
	if !bytes.Equal(w.forCopy(read(w.source)), want) {
		t.Errorf("the host does not hold the last login taken back (%d)", 1+limit)
	}
	if ok, why := copiesHold(w.copies, want); !ok {
		t.Errorf("the copies do not hold the host's login: %s", why)
	}
	waitFor(t, 5*time.Second, "a warning that the copy gave too many logins", func() (bool, string) {
		return p.log.count("a copy gave too many new logins within an hour: no more are taken from it for an hour; it keeps getting the host's login", "copy", w.copies[0]) == 1, "no such warning"
	})
	if n := p.refusals(w.copies[0], "gave too many logins lately"); n != 1 {
		t.Errorf("%d warnings for 20 refused logins, want 1", n)
	}
	w.statusShowsRefused(w.copies[0], "it gave too many logins lately")

	list, err := (&broker.Backups{Dir: filepath.Join(w.state, "backups")}).List("claude")
	if err != nil {
		t.Fatal(err)
	}
	shelves := map[string][]broker.Backup{}
	for _, b := range list {
		shelves[b.Shelf] = append(shelves[b.Shelf], b)
	}
	if h := shelves[broker.ShelfHost]; len(h) != 1 || !bytes.Equal(read(h[0].Path), genuine) {
		t.Errorf("the host shelf holds %d backups, want exactly the user's own login", len(h))
	}
	if n := len(shelves[broker.ShelfTaken]); n != limit-1 {
		t.Errorf("the taken shelf holds %d backups, want %d (the logins taken back and then replaced)", n, limit-1)
	}
	// What a user does about it: stop the watcher, put the login of before
	// back.
	p.signal(syscall.SIGTERM)
	p.wait(2 * time.Second)
	if out, errOut, code := w.run("restore", "claude", "--config", w.config); code != 0 {
		t.Fatalf("restore exited %d:\n%s%s", code, out, errOut)
	}
	if !bytes.Equal(w.forCopy(read(w.source)), w.forCopy(genuine)) {
		t.Error("restore did not put the user's own login back")
	}
	if ok, why := copiesHold(w.copies, w.forCopy(genuine)); !ok {
		t.Errorf("restore did not give the copies the user's own login: %s", why)
	}
}

// codexWorld makes w (a world of n copies) a Codex world whose host holds
// the ChatGPT login of the fixtures.
func codexWorld(t *testing.T, n int) *world {
	w := newWorld(t, "claude", n)
	if err := os.RemoveAll(filepath.Dir(w.source)); err != nil {
		t.Fatal(err)
	}
	w.kind, _ = kinds.ByName("codex")
	w.source = filepath.Join(w.home, ".codex", "auth.json")
	for i, c := range w.copies {
		w.copies[i] = filepath.Join(filepath.Dir(c), "auth.json")
	}
	putFixture(t, "codex/auth.chatgpt.json", w.source)
	w.writeConfig(w.copies)
	return w
}

// refreshedNow is a Codex login whose last_refresh is now: newer than the
// fixtures' host login (same access token expiry).
func refreshedNow(t *testing.T, fixture string) []byte {
	data, err := os.ReadFile(filepath.Join(fixturesDir(t), fixture))
	if err != nil {
		t.Fatal(err)
	}
	was := []byte(`"last_refresh": "2026-11-28T08:00:00.000000Z"`)
	if !bytes.Contains(data, was) {
		t.Fatalf("%s: no %s", fixture, was)
	}
	return bytes.Replace(data, was, []byte(`"last_refresh": "`+time.Now().UTC().Format(time.RFC3339Nano)+`"`), 1)
}

// TestHostileAnotherAccount: a container puts a login of another account
// into its copy: a Codex login of another ChatGPT account (newer than the
// host's), a switch to an API key, a Gemini login of another Google
// account. None reaches the host or another copy; the container's copy is
// left as it is (it may have logged in to its own account), the watcher
// warns naming it, status shows other-account and exits 1, sync exits 1
// and sync --force replaces it.
func TestHostileAnotherAccount(t *testing.T) {
	t.Run("codex", func(t *testing.T) {
		w := codexWorld(t, 3)
		p := w.watch()
		host := read(w.source)
		other := refreshedNow(t, "codex/auth.chatgpt.other-account.json")
		apiKey, err := os.ReadFile(filepath.Join(fixturesDir(t), "codex/auth.apikey.json"))
		if err != nil {
			t.Fatal(err)
		}
		untouched := idsOf(w.source, w.copies[2])
		w.replace(w.copies[0], other)
		w.replace(w.copies[1], apiKey)
		for _, c := range w.copies[:2] {
			waitFor(t, 5*time.Second, "a warning naming the copy of another account", func() (bool, string) {
				return p.refusals(c, "holds a login of another account") == 1, "no such warning"
			})
		}
		// The watcher touches nothing: a file event more, a pass more.
		settled(t, 300*time.Millisecond, "the host, the copies", func() string { return idsOf(append([]string{w.source}, w.copies...)...) })
		if now := idsOf(w.source, w.copies[2]); now != untouched {
			t.Errorf("the host or the third copy was rewritten")
		}
		if !bytes.Equal(read(w.copies[0]), other) || !bytes.Equal(read(w.copies[1]), apiKey) {
			t.Errorf("a copy of another account was replaced")
		}
		if !bytes.Equal(read(w.source), host) {
			t.Fatal("the host's login changed")
		}
		w.anotherAccountIsReported(w.copies[0], w.copies[1])
		if b := w.backups(); len(b) != 0 {
			t.Errorf("backups were made: %v", b)
		}
		p.signal(syscall.SIGTERM)
		p.wait(2 * time.Second)
		w.syncLeavesThenForceReplaces(w.copies[:2], []string{"holds a login of another account"}, 1)
		if !bytes.Equal(read(w.source), host) {
			t.Fatal("the host's login changed")
		}
	})
	t.Run("gemini", func(t *testing.T) {
		w := newWorld(t, "gemini", 2)
		p := w.watch()
		host := read(w.source)
		// The fixture's id_token names dev@example.com; this one another
		// Google account. Newer, plausible.
		payload := base64.RawURLEncoding.EncodeToString([]byte(`{"email":"someone-else@example.com","sub":"1999","exp":4102444800}`))
		other := w.login(2)
		idToken := regexp.MustCompile(`("id_token": "[^.]*\.)[^.]*`)
		other = idToken.ReplaceAll(other, []byte("${1}"+payload))
		if bytes.Equal(other, w.login(2)) {
			t.Fatal("the fixture has no id_token to replace")
		}
		untouched := idsOf(w.source, w.copies[1])
		w.replace(w.copies[0], other)
		waitFor(t, 5*time.Second, "a warning naming the copy of another account", func() (bool, string) {
			return p.refusals(w.copies[0], "holds a login of another account") == 1, "no such warning"
		})
		settled(t, 300*time.Millisecond, "the host, the copies", func() string { return idsOf(append([]string{w.source}, w.copies...)...) })
		if idsOf(w.source, w.copies[1]) != untouched || !bytes.Equal(read(w.source), host) {
			t.Fatal("the host or the other copy was rewritten")
		}
		w.anotherAccountIsReported(w.copies[0])
	})
}

// anotherAccountIsReported checks status for copies holding another
// account's login.
func (w *world) anotherAccountIsReported(copies ...string) {
	w.t.Helper()
	text, code, js := w.status()
	for _, c := range copies {
		if !regexp.MustCompile(`other-account\s+` + regexp.QuoteMeta(c)).MatchString(text) {
			w.t.Errorf("status does not show %s as other-account:\n%s", c, text)
		}
		found := false
		for _, s := range js.Sources {
			for _, jc := range s.Copies {
				found = found || jc.Location == c && jc.Outcome == "other-account"
			}
		}
		if !found {
			w.t.Errorf("status --json does not show %s as other-account", c)
		}
	}
	if code != 1 {
		w.t.Errorf("status exited %d with copies of another account, want 1", code)
	}
}

// syncLeavesThenForceReplaces runs sync: it leaves copies as they are,
// names why and exits code; then sync --force replaces them with the
// host's login and exits 0.
func (w *world) syncLeavesThenForceReplaces(copies, why []string, code int) {
	w.t.Helper()
	before := map[string][]byte{}
	for _, c := range copies {
		before[c] = read(c)
	}
	out, errOut, got := w.run("sync", "--config", w.config)
	if got != code {
		w.t.Errorf("sync exited %d, want %d:\n%s%s", got, code, out, errOut)
	}
	for _, y := range why {
		if !strings.Contains(out, y) {
			w.t.Errorf("sync does not say %q:\n%s", y, out)
		}
	}
	for _, c := range copies {
		if !bytes.Equal(read(c), before[c]) {
			w.t.Errorf("sync replaced %s", c)
		}
	}
	out, errOut, got = w.run("sync", "--config", w.config, "--force")
	if got != 0 {
		w.t.Errorf("sync --force exited %d, want 0:\n%s%s", got, out, errOut)
	}
	want := w.forCopy(read(w.source))
	if ok, why := copiesHold(copies, want); !ok {
		w.t.Errorf("sync --force did not replace them: %s", why)
	}
}

// runWithin runs the binary and fails the test if it takes longer than d:
// a command a container can stall is a bug.
func (w *world) runWithin(d time.Duration, args ...string) (stdout string, code int) {
	w.t.Helper()
	p := w.start(args...)
	select {
	case <-p.done:
	case <-time.After(d):
		w.t.Fatalf("%s still running after %v:\n%s", strings.Join(args, " "), d, p.log.String())
	}
	return p.out.String(), p.code
}

// TestHostileFIFO: a container replaces its copy with a FIFO, puts FIFOs
// where Claude's write lock and the refresh lock's owner file belong. Before,
// watch blocked for good on the first open: no login synced any more and
// SIGTERM was ignored. Now the copies with FIFOs are reported, every other
// copy and login goes on syncing, sync finishes, and SIGTERM stops watch
// within 2 s, also when it starts with the FIFOs in place.
func TestHostileFIFO(t *testing.T) {
	w := newWorld(t, "claude", 4)
	hostDir := filepath.Dir(w.source)
	// A second login whose copy is untouched.
	gemSource := filepath.Join(w.home, ".gemini", "oauth_creds.json")
	gemCopy := filepath.Join(w.root, "copies", "gemini", "oauth_creds.json")
	putFixture(t, "gemini/oauth_creds.json", gemSource)
	cfg := fmt.Sprintf("sources:\n  claude:\n    path: %s\n  gemini:\n    path: %s\nsinks:\n", w.source, gemSource)
	for _, c := range w.copies {
		cfg += fmt.Sprintf("  - {source: claude, dir: %s}\n", filepath.Dir(c))
	}
	cfg += fmt.Sprintf("  - {source: gemini, dir: %s}\n", filepath.Dir(gemCopy))
	writeFile(t, w.config, []byte(cfg))
	p := w.watch()

	mkfifo := func(path string) {
		t.Helper()
		if err := os.RemoveAll(path); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Mkfifo(path, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// The host's Claude refreshes: its lock is mirrored into every copy.
	// The container of copy 1 replaces the owner file of the mirrored lock
	// with a FIFO (or puts one there, when the file system records no
	// birth time and mc-broker writes no owner file).
	if err := os.Mkdir(filepath.Join(hostDir, ".oauth_refresh.lock"), 0o755); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the host's refresh lock to be mirrored into copy 1", func() (bool, string) {
		_, err := os.Lstat(filepath.Join(filepath.Dir(w.copies[1]), ".oauth_refresh.lock"))
		return err == nil, fmt.Sprint(err)
	})
	mkfifo(filepath.Join(filepath.Dir(w.copies[1]), ".oauth_refresh.lock.owner"))
	mkfifo(w.copies[0])
	mkfifo(filepath.Join(filepath.Dir(w.copies[2]), ".storage-write.lock"))
	if err := os.Remove(filepath.Join(hostDir, ".oauth_refresh.lock")); err != nil {
		t.Fatal(err)
	}

	// The host's login changes, and so does the other login's.
	w.replace(w.source, w.login(2))
	want := w.forCopy(w.login(2))
	gem := bytes.Replace(read(gemSource), []byte("TOKEN-0001"), []byte("TOKEN-0002"), 1)
	gem = bytes.Replace(gem, []byte("4102444800000"), []byte("4102444900000"), 1)
	writeFile(t, gemSource+".tmp", gem)
	if err := os.Rename(gemSource+".tmp", gemSource); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the copies without a FIFO, and the other login's copy, to follow", func() (bool, string) {
		if !bytes.Equal(read(gemCopy), gem) {
			return false, "the gemini copy does not hold the new login"
		}
		return copiesHold([]string{w.copies[1], w.copies[3]}, want)
	})
	w.fifoWarnings(p)
	waitFor(t, 5*time.Second, "status to show the FIFO copy failing", func() (bool, string) {
		text, code, _ := w.status()
		return strings.Contains(text, w.copies[0]) && strings.Contains(text, "not a regular file") && code == 1, text
	})

	start := time.Now()
	p.signal(syscall.SIGTERM)
	if code := p.wait(2 * time.Second); code != 0 {
		t.Errorf("watch exited %d on SIGTERM, want 0", code)
	}
	t.Logf("watch stopped %v after SIGTERM with FIFOs in its copies", time.Since(start).Round(time.Millisecond))

	out, code := w.runWithin(15*time.Second, "sync", "--config", w.config)
	if code != 1 || !strings.Contains(out, "not a regular file") {
		t.Errorf("sync with FIFOs exited %d, want 1 naming the FIFO:\n%s", code, out)
	}
	// A watcher starting with the FIFOs in place (the refresh lock's
	// leftovers are looked at first) is ready and stops as quickly.
	p = w.watch()
	w.fifoWarnings(p)
	start = time.Now()
	p.signal(syscall.SIGTERM)
	if code := p.wait(2 * time.Second); code != 0 {
		t.Errorf("watch exited %d on SIGTERM, want 0", code)
	}
	t.Logf("a watch started with the FIFOs in place stopped %v after SIGTERM", time.Since(start).Round(time.Millisecond))
}

// fifoWarnings waits for the warnings that name the copy that is a FIFO
// and the one whose write lock is, the first once.
func (w *world) fifoWarnings(p *proc) {
	w.t.Helper()
	const unreadable, failed = "copy failed; retrying with backoff", "copy failed; retrying with backoff"
	waitFor(w.t, 10*time.Second, "warnings naming the copy that is a FIFO and the one whose write lock is", func() (bool, string) {
		return p.log.count(unreadable, "copy", w.copies[0]) > 0 && p.log.count(failed, "copy", w.copies[2]) > 0, "no such warnings"
	})
	for _, l := range p.log.lines() {
		if l.str("msg") == unreadable && l.str("copy") == w.copies[0] && !strings.Contains(l.str("error"), "not a regular file") {
			w.t.Errorf("the warning does not say the copy is not a regular file: %v", l)
		}
	}
	if n := p.log.count(unreadable, "copy", w.copies[0]); n != 1 {
		w.t.Errorf("%d warnings about the FIFO copy, want 1", n)
	}
}

// procStat is a process's CPU time (user+system) and bytes written by
// write calls (/proc/PID/io wchar; -1 when not readable).
func procStat(t *testing.T, pid int) (cpu time.Duration, wchar int64) {
	t.Helper()
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// The fields after the command name (which may hold spaces).
	f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+2:]))
	var utime, stime int64
	fmt.Sscan(f[11], &utime)
	fmt.Sscan(f[12], &stime)
	cpu = time.Duration(utime+stime) * time.Second / 100 // USER_HZ
	wchar = -1
	if io, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid)); err == nil {
		for _, line := range strings.Split(string(io), "\n") {
			if v, ok := strings.CutPrefix(line, "wchar: "); ok {
				fmt.Sscan(v, &wchar)
			}
		}
	}
	return cpu, wchar
}

// TestHostileSizeBomb: a container writes 1 MB "newer" logins of the same
// account (plausible expiry) into its copy, one after another. Before,
// each was taken into the host and fanned out: 8 MiB/s of host writes and
// 80% of a core. Now none is taken, the host and the other copies are not
// written, the copy is repaired with a login of normal size, one warning
// says why, and the watcher's own writes stay small.
func TestHostileSizeBomb(t *testing.T) {
	w := newWorld(t, "claude", 3)
	p := w.watch()
	host := read(w.source)
	want := w.forCopy(host)
	untouched := idsOf(w.source, w.copies[1], w.copies[2])
	bomb := func(gen int, size int) []byte {
		login := w.forCopy(w.login(gen))
		pad := `"padding": "` + strings.Repeat("A", size) + `",`
		return bytes.Replace(login, []byte("{"), []byte("{"+pad), 1)
	}
	pid := p.cmd.Process.Pid
	cpu0, w0 := procStat(t, pid)
	start := time.Now()
	bombs := 0
	for gen := 2; time.Since(start) < 3*time.Second; gen++ {
		w.replace(w.copies[0], bomb(gen, 1_000_000))
		waitFor(t, 10*time.Second, "the bomb to be replaced by the host's login", func() (bool, string) {
			return copiesHold(w.copies[:1], want)
		})
		bombs++
	}
	elapsed := time.Since(start)
	cpu1, w1 := procStat(t, pid)
	if now := idsOf(w.source, w.copies[1], w.copies[2]); now != untouched {
		t.Errorf("the host or another copy was written during %d bombs", bombs)
	}
	if !bytes.Equal(read(w.source), host) {
		t.Fatal("the host's login changed")
	}
	if n := p.refusals(w.copies[0], "more than a login ever is"); n != 1 {
		t.Errorf("%d warnings for %d bombs, want 1", n, bombs)
	}
	t.Logf("%d bombs of 1 MB in %v: the watcher used %v of CPU (%.0f%% of a core), wrote %d bytes in all (%d per bomb)",
		bombs, elapsed.Round(time.Millisecond), cpu1-cpu0, 100*float64(cpu1-cpu0)/float64(elapsed), w1-w0, (w1-w0)/int64(bombs))
	if w0 >= 0 && (w1-w0)/int64(bombs) > 16<<10 {
		t.Errorf("the watcher wrote %d bytes per bomb, want at most 16 KiB (a repaired copy and a log line)", (w1-w0)/int64(bombs))
	}

	// Larger than any file is read: judged broken without being read whole.
	w.replace(w.copies[0], bomb(100, 3<<20))
	waitFor(t, 10*time.Second, "a 3 MB bomb to be repaired", func() (bool, string) {
		return copiesHold(w.copies[:1], want)
	})
	if !bytes.Equal(read(w.source), host) || idsOf(w.source, w.copies[1], w.copies[2]) != untouched {
		t.Fatal("the host or another copy was written")
	}
	w.statusShowsRefused(w.copies[0], "it is 1000")
}

// TestHostileLockHog: a container takes Claude's refresh lock in its copy
// over and over and brings no new login. Before, the lock mirrored into
// the host's directory was held all the time, and the host's Claude
// waited. Sampled every 10 ms for a minute, the host's lock is held at
// most about a quarter of it: a 4.9 s hold costs the container its right
// to be mirrored for 5 minutes, and short holds run out of the minute's
// budget. Two worlds, one hog each, sampled side by side.
func TestHostileLockHog(t *testing.T) {
	if testing.Short() {
		t.Skip("samples for a minute")
	}
	t.Parallel()
	type hog struct {
		hold     time.Duration
		w        *world
		p        *proc
		hostLock string
		held     int
	}
	hogs := []*hog{{hold: 4900 * time.Millisecond}, {hold: 900 * time.Millisecond}}
	quit := make(chan struct{})
	var running sync.WaitGroup
	for _, h := range hogs {
		h.w = newWorld(t, "claude", 2)
		h.p = h.w.watch()
		h.hostLock = filepath.Join(filepath.Dir(h.w.source), ".oauth_refresh.lock")
		lock := filepath.Join(filepath.Dir(h.w.copies[0]), ".oauth_refresh.lock")
		running.Go(func() {
			for {
				_ = os.Mkdir(lock, 0o755)
				select {
				case <-quit:
					_ = os.Remove(lock)
					return
				case <-time.After(h.hold):
				}
				_ = os.Remove(lock)
				select {
				case <-quit:
					return
				case <-time.After(100 * time.Millisecond):
				}
			}
		})
	}
	samples := 0
	for end := time.Now().Add(time.Minute); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		for _, h := range hogs {
			if _, err := os.Lstat(h.hostLock); err == nil {
				h.held++
			}
		}
		samples++
	}
	close(quit)
	running.Wait()
	for _, h := range hogs {
		share := float64(h.held) / float64(samples)
		t.Logf("a container holding its lock for %v, re-taking it after 100 ms: the host's lock was held in %d of %d samples (%.1f%%) over a minute", h.hold, h.held, samples, 100*share)
		if share > 0.30 {
			t.Errorf("holding for %v: the host's lock was held %.1f%% of a minute by a container's locks, want at most about 25%%", h.hold, 100*share)
		}
		if n := h.p.log.count("a refresh lock is not mirrored", "dir", filepath.Dir(h.w.copies[0])); n == 0 {
			t.Errorf("holding for %v: no warning that the container's lock is not mirrored", h.hold)
		}
		waitFor(t, 5*time.Second, "status to show locks not mirrored", func() (bool, string) {
			text, _, js := h.w.status()
			lm := js.Watcher.LockMirror
			return strings.Contains(text, " not mirrored (") && lm != nil && lm.Refused > 0, text
		})
		waitFor(t, 5*time.Second, "the host's lock to be gone", func() (bool, string) {
			_, err := os.Lstat(h.hostLock)
			return err != nil, "still there"
		})
	}
}

// TestHostileWriteBackBlocked: containers refresh while the host's store
// cannot take the login: a Claude write lock left behind on the host
// (fresh for 15 s, as Claude counts it), a read-only or a full host
// directory. Before, a container's refresh reached the other copies only
// after the write-back: 14 s late, or never. Now the copies have it at
// once, status shows WRITE-BACK FAILING (and exits 1) while it fails, and
// the host gets it once it can.
func TestHostileWriteBackBlocked(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for a lock to go stale")
	}
	t.Parallel()
	cases := []struct {
		name string
		// setup runs before watch starts, block after; block returns what
		// unblocks the host.
		setup func(w *world)
		block func(w *world) (unblock func())
	}{
		{"write lock left behind", nil, func(w *world) func() {
			lock := filepath.Join(filepath.Dir(w.source), ".storage-write.lock")
			if err := os.Mkdir(lock, 0o700); err != nil {
				w.t.Fatal(err)
			}
			// Goes stale by itself after 15 s.
			return func() {}
		}},
		{"read-only host directory", func(w *world) {
			w.runAsNobody() // root ignores a read-only directory
		}, func(w *world) func() {
			dir := filepath.Dir(w.source)
			if err := os.Chmod(dir, 0o500); err != nil {
				w.t.Fatal(err)
			}
			return func() {
				if err := os.Chmod(dir, 0o700); err != nil {
					w.t.Fatal(err)
				}
			}
		}},
		{"full host disk", func(w *world) {
			dir := filepath.Dir(w.source)
			unmount, err := mountSmallFS(dir)
			if err != nil {
				w.t.Skipf("cannot mount a small file system to fill (%v): run as root with CAP_SYS_ADMIN", err)
			}
			w.t.Cleanup(unmount)
			writeFile(w.t, w.source, w.login(1))
		}, func(w *world) func() {
			filler := filepath.Join(filepath.Dir(w.source), "filler")
			f, err := os.Create(filler)
			if err != nil {
				w.t.Fatal(err)
			}
			for {
				if _, err := f.Write(make([]byte, 4096)); err != nil {
					break
				}
			}
			f.Close()
			return func() {
				if err := os.Remove(filler); err != nil {
					w.t.Fatal(err)
				}
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, "claude", 3)
			if tc.setup != nil {
				tc.setup(w)
			}
			p := w.watch()
			unblock := tc.block(w)
			// Refreshes in turn from each container: each reaches the
			// others at once.
			var took []time.Duration
			const last = 6
			for gen := 2; gen <= last; gen++ {
				newer := w.forCopy(w.login(gen))
				w.replace(w.copies[gen%len(w.copies)], newer)
				took = append(took, waitFor(t, 2*time.Second, "the other copies to get the container's refresh", func() (bool, string) {
					return copiesHold(w.copies, newer)
				}))
			}
			slices.Sort(took)
			t.Logf("with the host blocked, a container's refresh reached the other copies in %v (median), %v (max) of %d", took[len(took)/2], took[len(took)-1], len(took))
			if took[len(took)/2] > 100*time.Millisecond {
				t.Errorf("median %v for a refresh to reach the other copies, want at most 100ms: the blocked host delays the fan-out", took[len(took)/2])
			}
			if !bytes.Equal(read(w.source), w.login(1)) {
				t.Fatal("the host took a login although it is blocked: the test blocks nothing")
			}
			waitFor(t, 20*time.Second, "status to show WRITE-BACK FAILING and exit 1", func() (bool, string) {
				text, code, js := w.status()
				failing := len(js.Watcher.Sources) == 1 && js.Watcher.Sources[0].WriteBackSince != nil && js.Watcher.Sources[0].WriteBack != ""
				return strings.Contains(text, "WRITE-BACK FAILING since ") && failing && code == 1, text
			})
			if n := p.log.count("cannot write a newer login back into the host's store; every copy has it, and the write-back is retried"); n != 1 {
				t.Errorf("%d warnings about the failing write-back, want 1", n)
			}
			unblock()
			token := []byte(fmt.Sprintf("TOKEN-G%06d", last))
			waitFor(t, 40*time.Second, "the host to get the last login once it can", func() (bool, string) {
				return bytes.Contains(read(w.source), token), "not yet"
			})
			waitFor(t, 5*time.Second, "the log to say the write-back works again", func() (bool, string) {
				return p.log.count("writing back into the host's store works again") == 1, "no such line"
			})
			waitFor(t, 5*time.Second, "status to stop showing WRITE-BACK FAILING", func() (bool, string) {
				text, code, _ := w.status()
				return !strings.Contains(text, "WRITE-BACK") && code == 0, text
			})
		})
	}
}

// TestHostileSymlinkSwap: the copy directory belongs to the container's
// user (uid/gid in the config) and holds the current login readable by
// others; while root's sync makes it private again, the container swaps it
// for a symlink to a file outside the copy, over and over. Before, sync
// checked the file, then chmod'ed and chown'ed the path, following the
// symlink. The file outside must never change mode or owner.
func TestHostileSymlinkSwap(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the attack is on root's chmod and chown: run as root (CI does)")
	}
	w := newWorld(t, "claude", 1)
	copyDir := filepath.Dir(w.copies[0])
	writeFile(t, w.config, fmt.Appendf(nil, "sources:\n  claude:\n    path: %s\nsinks:\n  - {source: claude, dir: %s, uid: %d, gid: %d}\n", w.source, copyDir, nobody, nobody))
	if _, _, code := w.run("sync", "--config", w.config); code != 0 {
		t.Fatalf("the first sync exited %d", code)
	}
	victim := filepath.Join(w.root, "outside", "precious")
	writeFile(t, victim, []byte("not the container's\n"))
	if err := os.Chmod(victim, 0o644); err != nil {
		t.Fatal(err)
	}
	current := read(w.copies[0])
	quit, done := make(chan struct{}), make(chan struct{})
	swaps := 0
	go func() {
		defer close(done)
		link, file := filepath.Join(copyDir, ".link"), filepath.Join(copyDir, ".file")
		for {
			select {
			case <-quit:
				return
			default:
			}
			// The login, readable by others: sync makes it private.
			if os.WriteFile(file, current, 0o600) == nil && os.Chmod(file, 0o644) == nil {
				_ = os.Rename(file, w.copies[0])
			}
			_ = os.Remove(link)
			if os.Symlink(victim, link) == nil && os.Rename(link, w.copies[0]) == nil {
				swaps++
			}
		}
	}()
	p := w.start("watch", "--config", w.config, "--log-format", "json")
	runs := 0
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); runs++ {
		w.run("sync", "--config", w.config)
	}
	close(quit)
	<-done
	p.signal(syscall.SIGTERM)
	p.wait(2 * time.Second)
	fi, err := os.Lstat(victim)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	t.Logf("%d syncs and a watcher against %d symlink swaps", runs, swaps)
	if fi.Mode().Perm() != 0o644 || st.Uid != 0 || st.Gid != 0 || string(read(victim)) != "not the container's\n" {
		t.Errorf("the file outside the copy changed: mode %v, owner %d:%d", fi.Mode().Perm(), st.Uid, st.Gid)
	}

	// The control: with no symlink in play, sync makes the copy private
	// and the container's without rewriting it.
	if err := os.Remove(w.copies[0]); err != nil {
		t.Fatal(err)
	}
	writeFile(t, w.copies[0], current)
	if err := os.Chmod(w.copies[0], 0o644); err != nil {
		t.Fatal(err)
	}
	id := fileID(w.copies[0])
	if out, errOut, code := w.run("sync", "--config", w.config); code != 0 {
		t.Fatalf("sync exited %d:\n%s%s", code, out, errOut)
	}
	fi, err = os.Lstat(w.copies[0])
	if err != nil {
		t.Fatal(err)
	}
	st = fi.Sys().(*syscall.Stat_t)
	if fi.Mode().Perm() != 0o600 || st.Uid != nobody || st.Gid != nobody || fileID(w.copies[0]) != id {
		t.Errorf("sync left the copy mode %v, owner %d:%d (rewritten: %v), want 0600, %d:%d, not rewritten", fi.Mode().Perm(), st.Uid, st.Gid, fileID(w.copies[0]) != id, nobody, nobody)
	}
}

// TestHostileForeignFiles: a copy path names a file that is not a login of
// the CLI. Before, it was overwritten, reported repaired, exit 0, with no
// backup. Now a config naming a system file or another CLI's own login is
// refused (exit 2), and a file that is not a login in an ordinary copy
// directory (notes, a JSON settings file, another CLI's login) is left
// byte for byte: sync and status exit 2 naming it, watch warns, and only
// sync --force replaces it.
func TestHostileForeignFiles(t *testing.T) {
	t.Run("config", func(t *testing.T) {
		w := newWorld(t, "claude", 1)
		w.runAsNobody() // so that a bug cannot write /etc/passwd
		passwd := read("/etc/passwd")
		codexLogin := filepath.Join(w.home, ".codex", "auth.json")
		putFixture(t, "codex/auth.chatgpt.json", codexLogin)
		w.chown()
		theirs := read(codexLogin)
		for _, tc := range []struct{ sink, why string }{
			{"{source: claude, dir: /etc, file_name: passwd}", "a system directory"},
			{fmt.Sprintf("{source: claude, dir: %s, file_name: auth.json}", filepath.Dir(codexLogin)), "codex's own config directory"},
		} {
			writeFile(t, w.config, fmt.Appendf(nil, "sources:\n  claude:\n    path: %s\nsinks:\n  - %s\n", w.source, tc.sink))
			w.chown()
			for _, cmd := range []string{"sync", "status", "watch"} {
				_, errOut, code := w.run(cmd, "--config", w.config)
				if code != 2 || !strings.Contains(errOut, tc.why) {
					t.Errorf("%s with %s exited %d, want 2 saying %q:\n%s", cmd, tc.sink, code, tc.why, errOut)
				}
			}
		}
		if !bytes.Equal(read("/etc/passwd"), passwd) || !bytes.Equal(read(codexLogin), theirs) {
			t.Fatal("a refused copy path was written")
		}
	})
	t.Run("copies", func(t *testing.T) {
		w := newWorld(t, "claude", 4)
		codexAuth, err := os.ReadFile(filepath.Join(fixturesDir(t), "codex/auth.chatgpt.json"))
		if err != nil {
			t.Fatal(err)
		}
		foreign := map[string][]byte{
			w.copies[0]: []byte("my notes, not a login\n"),
			w.copies[1]: []byte("{\n  \"theme\": \"dark\"\n}\n"),
			w.copies[2]: codexAuth,
		}
		for c, data := range foreign {
			writeFile(t, c, data)
		}
		out, _, code := w.run("sync", "--config", w.config)
		if code != 2 {
			t.Errorf("sync exited %d with files that are not logins at copy paths, want 2:\n%s", code, out)
		}
		for c := range foreign {
			if !regexp.MustCompile(`refused\s+` + regexp.QuoteMeta(c)).MatchString(out) {
				t.Errorf("sync does not say it refused %s:\n%s", c, out)
			}
		}
		text, code, js := w.status()
		if code != 2 || js.ExitCode != 2 || strings.Count(text, "foreign ") != 3 {
			t.Errorf("status exited %d, want 2 showing three foreign copies:\n%s", code, text)
		}
		p := w.watch()
		w.replace(w.source, w.login(2))
		want := w.forCopy(w.login(2))
		waitFor(t, 5*time.Second, "the ordinary copy to follow", func() (bool, string) {
			return copiesHold(w.copies[3:], want)
		})
		for c := range foreign {
			if p.refusals(c, "not a Claude Code login file") == 0 && p.refusals(c, "not JSON") == 0 {
				t.Errorf("no warning naming %s", c)
			}
		}
		for c, data := range foreign {
			if !bytes.Equal(read(c), data) {
				t.Errorf("%s was changed", c)
			}
		}
		if b := w.backups(); len(b) != 0 {
			t.Errorf("backups: %v", b)
		}
		p.signal(syscall.SIGTERM)
		p.wait(2 * time.Second)
		copies := []string{w.copies[0], w.copies[1], w.copies[2]}
		w.syncLeavesThenForceReplaces(copies, []string{"not JSON", "not a Claude Code login file"}, 2)
	})
}

// TestHostileExtraMembers: a container's genuine refresh carries members
// of its own: MCP server tokens and an API key. Only the login is taken
// back: the host keeps its own MCP tokens and gains nothing else, and
// every copy, the container's too, ends with the host's login as a copy
// holds it.
func TestHostileExtraMembers(t *testing.T) {
	w := newWorld(t, "claude", 3)
	p := w.watch()
	var before map[string]json.RawMessage
	if err := json.Unmarshal(read(w.source), &before); err != nil {
		t.Fatal(err)
	}
	newer := w.forCopy(w.login(2))
	injected := bytes.Replace(newer, []byte("{"), []byte(`{"mcpOAuth": {"attacker|1": {"accessToken": "FAKE-EVIL-MCP"}}, "primaryApiKey": "sk-ant-api03-FAKE-EVIL",`), 1)
	w.replace(w.copies[0], injected)
	waitFor(t, 5*time.Second, "the refresh to be taken back", func() (bool, string) {
		return bytes.Contains(read(w.source), []byte("TOKEN-G000002")), "not yet"
	})
	want := w.forCopy(read(w.source))
	waitFor(t, 5*time.Second, "every copy, the container's too, to hold the host's login as a copy holds it", func() (bool, string) {
		return copiesHold(w.copies, want)
	})
	var after map[string]json.RawMessage
	if err := json.Unmarshal(read(w.source), &after); err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) || !bytes.Equal(after["mcpOAuth"], before["mcpOAuth"]) {
		t.Errorf("the host's file gained or changed members other than the login: %d members, was %d", len(after), len(before))
	}
	if bytes.Contains(read(w.source), []byte("EVIL")) || bytes.Contains(want, []byte("EVIL")) {
		t.Error("what the container added reached the host or the copies")
	}
	// The copies get the login before the host's write-back is logged
	// (fan-out first), and the log comes through a pipe: wait for the line.
	waitFor(t, 5*time.Second, "the take-back to be logged", func() (bool, string) {
		return p.log.count(adoptedMsg) >= 1, "not logged yet"
	})
	if n := p.log.count(adoptedMsg); n != 1 {
		t.Errorf("%d take-backs, want 1", n)
	}
}
