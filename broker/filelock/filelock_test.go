package filelock_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mc-broker/mc-broker/broker/filelock"
	"github.com/mc-broker/mc-broker/broker/testenv"
)

func TestMain(m *testing.M) {
	testenv.RunHelperIfAsked(nil)
	os.Exit(m.Run())
}

func lockOK(t *testing.T, path string, timeout time.Duration) func() {
	t.Helper()
	unlock, err := filelock.Lock(context.Background(), path, timeout)
	if err != nil {
		t.Fatal(err)
	}
	return unlock
}

func TestCreatesLockFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "auth.lock")
	unlock := lockOK(t, path, time.Second)
	defer unlock()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode() != 0o600 {
		t.Fatalf("mode = %v, want 0600", fi.Mode())
	}
	if fi.Size() != 0 {
		t.Fatalf("size = %d", fi.Size())
	}
}

func TestExistingFileUntouched(t *testing.T) {
	path := filepath.Join(t.TempDir(), "auth.lock")
	if err := os.WriteFile(path, []byte("pid 42"), 0o644); err != nil {
		t.Fatal(err)
	}
	unlock := lockOK(t, path, time.Second)
	unlock()
	got, _ := os.ReadFile(path)
	fi, _ := os.Stat(path)
	if string(got) != "pid 42" || fi.Mode() != 0o644 {
		t.Fatalf("lock file changed: %q %v", got, fi.Mode())
	}
}

// TestExcludesWithinProcess: flock belongs to the open file, so a second
// Lock in the same process waits too.
func TestExcludesWithinProcess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "l")
	unlock := lockOK(t, path, time.Second)
	_, err := filelock.Lock(context.Background(), path, 20*time.Millisecond)
	var te *filelock.TimeoutError
	if !errors.As(err, &te) {
		t.Fatalf("err = %v, want *TimeoutError", err)
	}
	unlock()
	unlock() // idempotent
	lockOK(t, path, 0)()
}

func TestTimeoutError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "auth.lock")
	h := testenv.HoldLock(t, path)

	start := time.Now()
	_, err := filelock.Lock(context.Background(), path, 100*time.Millisecond)
	elapsed := time.Since(start)
	var te *filelock.TimeoutError
	if !errors.As(err, &te) {
		t.Fatalf("err = %v, want *TimeoutError", err)
	}
	if te.Path != path || te.Waited != 100*time.Millisecond {
		t.Fatalf("TimeoutError = %+v", te)
	}
	if want := path + " is locked by another process (waited 100ms)"; err.Error() != want {
		t.Fatalf("message = %q, want %q", err, want)
	}
	if elapsed < 100*time.Millisecond {
		t.Fatalf("gave up after %v, before the timeout", elapsed)
	}

	// A zero timeout tries once.
	_, err = filelock.Lock(context.Background(), path, 0)
	if !errors.As(err, &te) {
		t.Fatalf("err = %v, want *TimeoutError", err)
	}
	h.Release(t)
	lockOK(t, path, 0)()
}

// TestWaitsForRelease: Lock blocks while another process holds the lock and
// returns once it lets go.
func TestWaitsForRelease(t *testing.T) {
	path := filepath.Join(t.TempDir(), "auth.lock")
	h := testenv.HoldLock(t, path)

	type result struct {
		unlock func()
		err    error
	}
	done := make(chan result, 1)
	go func() {
		u, err := filelock.Lock(context.Background(), path, 30*time.Second)
		done <- result{u, err}
	}()
	select {
	case r := <-done:
		t.Fatalf("Lock returned while another process held the lock: %v", r.err)
	default:
	}
	h.Release(t)
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatal(r.err)
		}
		r.unlock()
	case <-time.After(10 * time.Second):
		t.Fatal("Lock did not return after the holder released")
	}
}

// TestReleasedOnProcessDeath: the kernel drops a dead holder's lock.
func TestReleasedOnProcessDeath(t *testing.T) {
	path := filepath.Join(t.TempDir(), "auth.lock")
	h := testenv.HoldLock(t, path)
	if _, err := filelock.Lock(context.Background(), path, 0); err == nil {
		t.Fatal("locked while the helper holds the lock")
	}
	if err := h.Cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = h.Cmd.Wait()
	lockOK(t, path, 5*time.Second)()
}

// TestUnlockLetsOtherProcessIn: after unlock, a helper process can lock.
func TestUnlockLetsOtherProcessIn(t *testing.T) {
	path := filepath.Join(t.TempDir(), "auth.lock")
	unlock := lockOK(t, path, time.Second)
	unlock()
	h := testenv.HoldLock(t, path) // fails the test if it cannot lock within 10s
	h.Release(t)
}

func TestContextCanceled(t *testing.T) {
	path := filepath.Join(t.TempDir(), "auth.lock")
	h := testenv.HoldLock(t, path)
	defer h.Release(t)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := filelock.Lock(ctx, path, time.Minute)
		done <- err
	}()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
		var te *filelock.TimeoutError
		if errors.As(err, &te) {
			t.Fatal("cancellation reported as a timeout")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Lock ignored the canceled context")
	}

	// Already done: no attempt at all, not even creating the file.
	other := filepath.Join(t.TempDir(), "other.lock")
	if _, err := filelock.Lock(ctx, other, time.Second); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Stat(other); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("lock file created under a canceled context: %v", err)
	}
}

func TestRefusesSymlink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(t.TempDir(), "elsewhere")
	path := filepath.Join(dir, "auth.lock")
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
	_, err := filelock.Lock(context.Background(), path, time.Second)
	if err == nil || !strings.Contains(err.Error(), "symlink") {
		t.Fatalf("err = %v, want a symlink refusal", err)
	}
	if _, err := os.Lstat(target); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("symlink target was created: %v", err)
	}
}

func TestRefusesFIFOAndDirectory(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := filelock.Lock(context.Background(), fifo, time.Second)
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Fatalf("err = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Lock hung on a FIFO")
	}

	if _, err := filelock.Lock(context.Background(), dir, time.Second); err == nil {
		t.Fatal("locked a directory")
	}
}

func TestMissingParent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "no", "such", "l")
	_, err := filelock.Lock(context.Background(), path, time.Second)
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v, want ErrNotExist", err)
	}
}

// A write lock left by an mc-broker killed while it held it (marked: the
// sticky bit) is removed at once by the next one holding mc-broker's own
// lock; the CLI's own lock (not marked) is waited for.
func TestDirLockOwnedRemovesAKilledMCBrokersLock(t *testing.T) {
	dir := t.TempDir()
	lock := filepath.Join(dir, ".storage-write.lock")
	own := filepath.Join(dir, "state", "locks", "x.writelock")
	release, err := filelock.DirLockOwned(context.Background(), lock, own, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(lock); err != nil || fi.Mode()&os.ModeSticky == 0 {
		t.Fatalf("mc-broker's write lock is not marked: %v %v", fi.Mode(), err)
	}
	release()
	if _, err := os.Lstat(lock); !os.IsNotExist(err) {
		t.Fatal("the lock is still there after release")
	}

	// What a killed mc-broker leaves: a marked lock directory, and no one
	// holding mc-broker's own lock.
	if err := os.Mkdir(lock, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(lock, 0o700|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	release, err = filelock.DirLockOwned(context.Background(), lock, own, 5*time.Second)
	if err != nil {
		t.Fatalf("a killed mc-broker's lock blocked: %v", err)
	}
	if waited := time.Since(start); waited > time.Second {
		t.Errorf("waited %v for a killed mc-broker's lock", waited)
	}
	release()

	// The CLI's own lock (proper-lockfile: no sticky bit), fresh: waited
	// for, and left as it is.
	if err := os.Mkdir(lock, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := filelock.DirLockOwned(context.Background(), lock, own, 300*time.Millisecond); err == nil {
		t.Error("took the CLI's fresh lock")
	}
	if _, err := os.Lstat(lock); err != nil {
		t.Errorf("the CLI's lock was removed: %v", err)
	}
}
