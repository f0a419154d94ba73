package lockmirror

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// clock is a settable Now.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

// world is a group of Claude config directories and a Mirror over them.
type world struct {
	t    *testing.T
	dirs []string
	clk  *clock
	m    *Mirror
}

func newWorld(t *testing.T, n int) *world {
	t.Helper()
	root := t.TempDir()
	w := &world{t: t, clk: &clock{t: time.Unix(1_800_000_000, 0)}}
	for i := 0; i < n; i++ {
		d := filepath.Join(root, string(rune('a'+i)))
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		w.dirs = append(w.dirs, d)
	}
	w.m = New(Options{Dirs: w.dirs, Bound: 5 * time.Second, Now: w.clk.now})
	return w
}

// take is what Claude Code does first: mkdir of the lock.
func (w *world) take(i int) {
	w.t.Helper()
	if err := os.Mkdir(filepath.Join(w.dirs[i], LockName), 0o755); err != nil {
		w.t.Fatal(err)
	}
}

// release is what Claude Code does last: rmdir of the lock.
func (w *world) release(i int) {
	w.t.Helper()
	if err := os.Remove(filepath.Join(w.dirs[i], LockName)); err != nil {
		w.t.Fatal(err)
	}
}

func (w *world) locked(i int) bool {
	_, err := os.Lstat(filepath.Join(w.dirs[i], LockName))
	return err == nil
}

func (w *world) owner(i int) *Owner {
	w.t.Helper()
	o, err := ReadOwner(w.dirs[i])
	if err != nil {
		w.t.Fatal(err)
	}
	return o
}

// wantLocks checks which directories hold a lock.
func (w *world) wantLocks(want ...bool) {
	w.t.Helper()
	for i, d := range w.dirs {
		if got := w.locked(i); got != want[i] {
			w.t.Errorf("%s: locked = %v, want %v", filepath.Base(d), got, want[i])
		}
	}
}

func TestTakenMirroredReleasedFannedOutRemoved(t *testing.T) {
	w := newWorld(t, 3)
	w.take(0)
	res := w.m.Observe(w.dirs[0])
	if res.Mirrored != 2 || res.Races != 0 || res.Released {
		t.Fatalf("taking the lock in a: %+v, want 2 mirrored", res)
	}
	w.wantLocks(true, true, true)

	self := Self()
	for _, i := range []int{1, 2} {
		o := w.owner(i)
		if o == nil {
			t.Fatalf("%s: no owner file beside the mirrored lock", w.dirs[i])
		}
		if o.PID != os.Getpid() || o.PIDDomain != self.PIDDomain || o.PIDSpace != self.PIDSpace || o.ProcStart != self.ProcStart {
			t.Errorf("owner file does not name this process: %+v, self %+v", o, self)
		}
		id, _, err := lockStat(filepath.Join(w.dirs[i], LockName))
		if err != nil {
			t.Fatal(err)
		}
		if want := float64(id.Born/1e9)*1e3 + float64(id.Born%1e9)/1e6; o.LockBirthtimeMs != want || want <= 0 {
			t.Errorf("lockBirthtimeMs = %v, want the lock's birth time %v", o.LockBirthtimeMs, want)
		}
	}
	// Claude Code's schema: exactly these keys (legacyLockBirthtimeMs is
	// optional and mc-broker takes no legacy lock).
	raw, err := os.ReadFile(filepath.Join(w.dirs[1], OwnerName))
	if err != nil {
		t.Fatal(err)
	}
	var keys map[string]any
	if err := json.Unmarshal(raw, &keys); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"pid", "procStart", "pidDomain", "pidSpace", "lockBirthtimeMs"} {
		if _, ok := keys[k]; !ok {
			t.Errorf("owner file lacks %q: %s", k, raw)
		}
	}
	if len(keys) != 5 {
		t.Errorf("owner file has other keys than Claude Code's: %s", raw)
	}

	// mc-broker's own mkdirs echo back as events: not originals.
	for _, i := range []int{1, 2} {
		if res := w.m.Observe(w.dirs[i]); res != (Result{}) {
			t.Errorf("echo of our own mirror in %s: %+v, want nothing", w.dirs[i], res)
		}
	}
	if !w.m.Deadline().Equal(w.clk.t.Add(5 * time.Second)) {
		t.Errorf("deadline %v, want the bound after the lock was taken", w.m.Deadline())
	}

	w.release(0)
	res = w.m.Observe(w.dirs[0])
	if !res.Released {
		t.Fatalf("releasing a: %+v, want Released", res)
	}
	// Until the caller calls Release (after its pass), the mirrors stay:
	// that is what makes the waiting holders find the new login.
	w.wantLocks(false, true, true)
	if n := w.m.Release(w.m.Round(), w.clk.now()); n != 2 {
		t.Errorf("Release removed %d mirrors, want 2", n)
	}
	w.wantLocks(false, false, false)
	for _, i := range []int{1, 2} {
		if w.owner(i) != nil {
			t.Errorf("%s: owner file left behind", w.dirs[i])
		}
		left, _ := os.ReadDir(w.dirs[i])
		for _, e := range left {
			t.Errorf("%s: left behind: %s", w.dirs[i], e.Name())
		}
	}
	if !w.m.Deadline().IsZero() {
		t.Errorf("deadline %v after release, want none", w.m.Deadline())
	}

	// The next refresh starts a new round.
	w.take(2)
	if res := w.m.Observe(w.dirs[2]); res.Mirrored != 2 || res.Races != 0 {
		t.Errorf("second round: %+v, want 2 mirrored, no race", res)
	}
	w.wantLocks(true, true, true)
	if n := w.m.Close(); n != 2 {
		t.Errorf("Close removed %d, want 2", n)
	}
	w.wantLocks(false, false, true)
}

func TestStaleBound(t *testing.T) {
	w := newWorld(t, 3)
	w.take(0)
	w.m.Observe(w.dirs[0])
	w.clk.t = w.clk.t.Add(4 * time.Second)
	if n := w.m.Expire(); n != 0 {
		t.Fatalf("Expire before the bound removed %d mirrors", n)
	}
	w.wantLocks(true, true, true)
	w.clk.t = w.clk.t.Add(time.Second)
	if n := w.m.Expire(); n != 2 {
		t.Fatalf("Expire at the bound removed %d mirrors, want 2", n)
	}
	// The original's holder may be dead: its lock is left alone (Claude
	// Code takes a lock over after 60 s), the others are free again.
	w.wantLocks(true, false, false)
	if !w.m.Deadline().IsZero() {
		t.Errorf("deadline %v after expiry, want none", w.m.Deadline())
	}

	// A refresh in b while a's lock is still there is a new round, not a
	// race: a's holder has been silent past the bound.
	w.take(1)
	res := w.m.Observe(w.dirs[1])
	if res.Mirrored != 1 || res.Races != 0 {
		t.Fatalf("refresh after expiry: %+v, want 1 mirrored (into c), no race", res)
	}
	w.wantLocks(true, true, true)
	w.release(0)
	if res := w.m.Observe(w.dirs[0]); res.Released {
		t.Error("Released while b still holds its lock")
	}
	w.release(1)
	if res := w.m.Observe(w.dirs[1]); !res.Released {
		t.Error("not Released once every original is gone")
	}
	w.m.Release(w.m.Round(), w.clk.now())
	w.wantLocks(false, false, false)
}

func TestTwoOriginalsAtOnce(t *testing.T) {
	w := newWorld(t, 4)
	// b takes its lock before the mirror from a lands there.
	w.take(0)
	w.take(1)
	res := w.m.Observe(w.dirs[0])
	if res.Races != 1 || res.Mirrored != 2 {
		t.Fatalf("two originals: %+v, want a race and 2 mirrored (c, d)", res)
	}
	if res := w.m.Observe(w.dirs[1]); res.Races != 0 || res.Mirrored != 0 {
		t.Errorf("b's own event: %+v, want the race counted once", res)
	}
	if o := w.owner(1); o != nil {
		t.Errorf("mc-broker wrote an owner file into b, whose lock is not its own: %+v", o)
	}

	// A third original after the mirrors landed: our mirror in c was
	// removed by someone and c took its own.
	if err := os.Remove(filepath.Join(w.dirs[2], OwnerName)); err != nil {
		t.Fatal(err)
	}
	w.release(2)
	w.take(2)
	if res := w.m.Observe(w.dirs[2]); res.Races != 1 {
		t.Errorf("c's own lock during the round: %+v, want a race", res)
	}

	w.release(0)
	if res := w.m.Observe(w.dirs[0]); res.Released {
		t.Fatal("Released while b and c still hold their locks")
	}
	w.release(1)
	w.m.Observe(w.dirs[1])
	w.release(2)
	if res := w.m.Observe(w.dirs[2]); !res.Released {
		t.Fatal("not Released after the last original")
	}
	if n := w.m.Release(w.m.Round(), w.clk.now()); n != 1 {
		t.Errorf("Release removed %d, want 1 (d)", n)
	}
	w.wantLocks(false, false, false, false)
}

func TestLockTakenAndGoneBeforeSeen(t *testing.T) {
	w := newWorld(t, 3)
	// A holder that finds a newer login right after taking the lock
	// releases it within microseconds: by the time the event is handled
	// there is nothing to mirror.
	w.take(0)
	w.release(0)
	if res := w.m.Observe(w.dirs[0]); res != (Result{}) {
		t.Errorf("a lock already gone: %+v, want nothing", res)
	}
	w.wantLocks(false, false, false)

	// Seen, then gone: mirrored, then released.
	w.take(0)
	w.m.Observe(w.dirs[0])
	w.release(0)
	if res := w.m.Observe(w.dirs[0]); !res.Released {
		t.Errorf("release: %+v", res)
	}
	w.m.Release(w.m.Round(), w.clk.now())
	w.wantLocks(false, false, false)

	// A directory that is not one of the group's is none of its business.
	other := t.TempDir()
	if err := os.Mkdir(filepath.Join(other, LockName), 0o755); err != nil {
		t.Fatal(err)
	}
	if res := w.m.Observe(other); res != (Result{}) {
		t.Errorf("lock in a foreign directory: %+v", res)
	}
	w.wantLocks(false, false, false)
}

func TestNeverRemovesAForeignLock(t *testing.T) {
	w := newWorld(t, 4)
	w.take(0)
	w.m.Observe(w.dirs[0])

	// b: the owner file now names another process (as if a Claude Code
	// had written it): the lock is not ours to remove.
	foreign := Owner{PID: 4242, ProcStart: "1", PIDDomain: "linux:other:pid:[1]", PIDSpace: "container#pid:[1]", LockBirthtimeMs: 1}
	if err := writeOwner(w.dirs[1], foreign); err != nil {
		t.Fatal(err)
	}
	// c: our lock was removed and another directory made in its place
	// (another inode and birth time), without an owner file.
	w.release(2)
	_ = os.Remove(filepath.Join(w.dirs[2], OwnerName))
	time.Sleep(2 * time.Millisecond) // a later birth time, whatever the inode
	w.take(2)

	w.release(0)
	w.m.Observe(w.dirs[0])
	if n := w.m.Release(w.m.Round(), w.clk.now()); n != 1 {
		t.Errorf("Release removed %d locks, want 1 (d only)", n)
	}
	w.wantLocks(false, true, true, false)
	if o := w.owner(1); o == nil || o.PID != 4242 {
		t.Errorf("b's foreign owner file was touched: %+v", o)
	}
}

func TestReleaseSeenLateDoesNotBlockTheNextRound(t *testing.T) {
	w := newWorld(t, 3)
	w.take(0)
	w.m.Observe(w.dirs[0])
	w.clk.t = w.clk.t.Add(5 * time.Second)
	w.m.Expire()
	// a releases and b takes the lock at once; b's event is handled
	// before a's release: a is free, so it gets a mirror too.
	w.release(0)
	w.take(1)
	if res := w.m.Observe(w.dirs[1]); res.Mirrored != 2 || res.Races != 0 {
		t.Fatalf("b after a's unseen release: %+v, want 2 mirrored (a, c)", res)
	}
	if res := w.m.Observe(w.dirs[0]); res != (Result{}) {
		t.Errorf("a's late event: %+v, want nothing (it now holds our mirror)", res)
	}
	w.release(1)
	if res := w.m.Observe(w.dirs[1]); !res.Released {
		t.Fatal("not Released")
	}
	w.m.Release(w.m.Round(), w.clk.now())
	w.wantLocks(false, false, false)
}

func TestEachRacingDirectoryCounts(t *testing.T) {
	w := newWorld(t, 4)
	w.take(0)
	w.take(1)
	w.take(2)
	if res := w.m.Observe(w.dirs[0]); res.Races != 2 || res.Mirrored != 1 {
		t.Fatalf("three at once: %+v, want 2 races and 1 mirror (d)", res)
	}
	for _, i := range []int{1, 2} {
		if res := w.m.Observe(w.dirs[i]); res.Races != 0 {
			t.Errorf("%s counted twice: %+v", w.dirs[i], res)
		}
	}
}

// A container that takes its lock again and again without ever bringing a
// new login (a lock hog) loses the right to have it mirrored, and locks
// from containers' directories hold the others for at most the budget's
// share of any minute; the host's own directory (trusted) is never
// limited, and an honest holder that finds the login fresh and lets go at
// once is not penalised.
func TestLockHogLosesMirroring(t *testing.T) {
	w := newWorld(t, 3)
	host, hog, honest := 0, 1, 2
	w.m = New(Options{Dirs: w.dirs, Trusted: []string{w.dirs[host]}, Bound: 5 * time.Second, Now: w.clk.now})

	// The honest holder: takes, finds the login fresh, lets go in 10 ms.
	w.take(honest)
	if res := w.m.Observe(w.dirs[honest]); res.Mirrored != 2 {
		t.Fatalf("honest lock: %+v, want mirrored", res)
	}
	w.clk.t = w.clk.t.Add(10 * time.Millisecond)
	w.release(honest)
	res := w.m.Observe(w.dirs[honest])
	w.m.Release(res.Round, time.Time{}) // no new login
	w.wantLocks(false, false, false)

	// The hog holds it 4.9 s and brings nothing.
	w.clk.t = w.clk.t.Add(time.Second)
	w.take(hog)
	if res := w.m.Observe(w.dirs[hog]); res.Mirrored != 2 {
		t.Fatalf("hog's first lock: %+v, want mirrored", res)
	}
	w.clk.t = w.clk.t.Add(4900 * time.Millisecond)
	w.release(hog)
	res = w.m.Observe(w.dirs[hog])
	w.m.Release(res.Round, time.Time{})
	// Again: not mirrored now; the host stays free.
	w.clk.t = w.clk.t.Add(100 * time.Millisecond)
	w.take(hog)
	res = w.m.Observe(w.dirs[hog])
	if res.Mirrored != 0 || res.Refused == "" {
		t.Fatalf("hog's second lock: %+v, want refused", res)
	}
	w.wantLocks(false, true, false)
	w.release(hog)
	if res := w.m.Observe(w.dirs[hog]); res.Released {
		t.Errorf("an unmirrored lock's release asks for a fan-out: %+v", res)
	}

	// The honest holder was not penalised, and the host never is.
	w.take(honest)
	if res := w.m.Observe(w.dirs[honest]); res.Mirrored != 2 {
		t.Errorf("honest holder's next lock: %+v, want mirrored", res)
	}
	w.release(honest)
	res = w.m.Observe(w.dirs[honest])
	w.m.Release(res.Round, w.clk.t)

	// The budget: rounds from containers' directories that each bring a
	// login still stop being mirrored once they have held the others for a
	// quarter of the last minute; the host's are always mirrored.
	held := time.Duration(0)
	for i := 0; held < 20*time.Second; i++ {
		w.clk.t = w.clk.t.Add(10 * time.Millisecond)
		w.take(honest)
		res := w.m.Observe(w.dirs[honest])
		if res.Refused != "" {
			break
		}
		w.clk.t = w.clk.t.Add(900 * time.Millisecond)
		held += 900 * time.Millisecond
		w.release(honest)
		res = w.m.Observe(w.dirs[honest])
		w.m.Release(res.Round, w.clk.t) // each brought a login
	}
	if held > 16*time.Second {
		t.Errorf("containers' locks held the others for %v within a minute, want at most 15s", held)
	}
	w.release(honest)
	w.m.Observe(w.dirs[honest])
	w.take(host)
	if res := w.m.Observe(w.dirs[host]); res.Mirrored != 2 || res.Refused != "" {
		t.Errorf("the host's lock with the budget spent: %+v, want mirrored", res)
	}
}
