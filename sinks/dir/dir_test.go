package dir_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mc-broker/mc-broker/broker"
	"github.com/mc-broker/mc-broker/broker/credential"
	"github.com/mc-broker/mc-broker/broker/filelock"
	"github.com/mc-broker/mc-broker/broker/testenv"
	"github.com/mc-broker/mc-broker/sinks/dir"
)

const secret = "sk-ant-ort01-SECRET-DO-NOT-LEAK"

var ctx = context.Background()

// setup returns a copy directory path (not created) and a lock directory
// path (not created) under one temp dir.
func setup(t *testing.T) (copyDir, lockDir string) {
	t.Helper()
	root := t.TempDir()
	return filepath.Join(root, "copies", "claude"), filepath.Join(root, "state", "locks")
}

func write(data []byte) broker.Decide {
	return func([]byte, bool) ([]byte, bool) { return data, true }
}

func update(t *testing.T, s *dir.Sink, d broker.Decide) {
	t.Helper()
	if err := s.Update(ctx, d); err != nil {
		t.Fatal(err)
	}
}

func listDir(t *testing.T, d string) []string {
	t.Helper()
	entries, err := os.ReadDir(d)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func owner(t *testing.T, path string) (uid, gid int) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return int(st.Uid), int(st.Gid)
}

func TestWritesNewCopy(t *testing.T) {
	d, locks := setup(t)
	s := dir.New(dir.Options{Dir: d, FileName: ".credentials.json", LockDir: locks})
	if got, want := s.Location(), filepath.Join(d, ".credentials.json"); got != want {
		t.Fatalf("Location = %q, want %q", got, want)
	}
	data := []byte(`{"claudeAiOauth":{"refreshToken":"` + secret + `"}}`)
	var sawExists *bool
	update(t, s, func(cur []byte, exists bool) ([]byte, bool) {
		sawExists = &exists
		if cur != nil {
			t.Errorf("current = %q for a missing copy", cur)
		}
		return data, true
	})
	if sawExists == nil || *sawExists {
		t.Fatal("decide not told the copy is missing")
	}

	fi, err := os.Lstat(d)
	if err != nil {
		t.Fatal(err)
	}
	if !fi.IsDir() || fi.Mode().Perm() != 0o700 {
		t.Fatalf("dir mode = %v, want drwx------", fi.Mode())
	}
	fi, err = os.Lstat(s.Location())
	if err != nil {
		t.Fatal(err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o600 {
		t.Fatalf("file mode = %v, want -rw-------", fi.Mode())
	}
	got, err := os.ReadFile(s.Location())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("content = %q, want %q", got, data)
	}
	if names := listDir(t, d); !slices.Equal(names, []string{".credentials.json"}) {
		t.Fatalf("copy dir holds %v, want only the copy", names)
	}
	fi, err = os.Lstat(locks)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Fatalf("lock dir mode = %v", fi.Mode())
	}

	read, err := s.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(read, data) {
		t.Fatalf("Read = %q", read)
	}
}

func TestDirModeIgnoresUmask(t *testing.T) {
	d, locks := setup(t)
	// Parents exist: with this umask MkdirAll would make them unwritable.
	for _, p := range []string{filepath.Dir(d), filepath.Dir(locks)} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	old := syscall.Umask(0o277)
	defer syscall.Umask(old)
	s := dir.New(dir.Options{Dir: d, FileName: "auth.json", LockDir: locks})
	update(t, s, write([]byte(`{}`)))
	for _, p := range []string{d, locks} {
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o700 {
			t.Fatalf("%s mode = %v, want 0700", p, fi.Mode())
		}
	}
}

func TestReplacesExistingCopy(t *testing.T) {
	d, locks := setup(t)
	s := dir.New(dir.Options{Dir: d, FileName: "auth.json", LockDir: locks})
	update(t, s, write([]byte(`{"a":"a long first login"}`)))
	update(t, s, func(cur []byte, exists bool) ([]byte, bool) {
		if !exists || string(cur) != `{"a":"a long first login"}` {
			t.Errorf("decide got %q, %v", cur, exists)
		}
		return []byte(`{"b":1}`), true
	})
	got, _ := os.ReadFile(s.Location())
	if string(got) != `{"b":1}` {
		t.Fatalf("content = %q", got)
	}
}

type snapshot struct {
	fi           fs.FileInfo
	ctime        unix.Timespec
	dirMtime     time.Time
	dirCtime     unix.Timespec
	names        []string
	uid, gid     int
	content      []byte
	dirUID, dirG int
}

func snap(t *testing.T, s *dir.Sink, d string) snapshot {
	t.Helper()
	var sn snapshot
	var err error
	if sn.fi, err = os.Lstat(s.Location()); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(s.Location(), &st); err != nil {
		t.Fatal(err)
	}
	sn.ctime = st.Ctim
	dfi, err := os.Lstat(d)
	if err != nil {
		t.Fatal(err)
	}
	sn.dirMtime = dfi.ModTime()
	if err := unix.Lstat(d, &st); err != nil {
		t.Fatal(err)
	}
	sn.dirCtime = st.Ctim
	sn.names = listDir(t, d)
	sn.uid, sn.gid = owner(t, s.Location())
	sn.dirUID, sn.dirG = owner(t, d)
	if sn.content, err = os.ReadFile(s.Location()); err != nil {
		t.Fatal(err)
	}
	return sn
}

// TestUnchanged: when decide declines, nothing on disk changes: same inode,
// times, owner, content, and no temp file ever appears (the directory's
// mtime would move).
func TestUnchanged(t *testing.T) {
	d, locks := setup(t)
	o := dir.Options{Dir: d, FileName: "auth.json", LockDir: locks, LockFiles: []string{"auth.lock", "auth.json.lock"}}
	if os.Geteuid() == 0 {
		uid, gid := 1000, 1000
		o.UID, o.GID = &uid, &gid
	}
	s := dir.New(o)
	data := payload(3)
	update(t, s, write(data))
	before := snap(t, s, d)

	for range 3 {
		called := false
		update(t, s, func(cur []byte, exists bool) ([]byte, bool) {
			called = true
			if !exists || !bytes.Equal(cur, data) {
				t.Errorf("decide got %d bytes, exists=%v", len(cur), exists)
			}
			return []byte(`{"other":true}`), false
		})
		if !called {
			t.Fatal("decide not called")
		}
	}
	after := snap(t, s, d)
	if !os.SameFile(before.fi, after.fi) {
		t.Error("copy has a new inode")
	}
	if !before.fi.ModTime().Equal(after.fi.ModTime()) || before.ctime != after.ctime {
		t.Error("copy mtime or ctime changed")
	}
	if !before.dirMtime.Equal(after.dirMtime) || before.dirCtime != after.dirCtime {
		t.Error("copy directory mtime or ctime changed (a temp file was created?)")
	}
	if !slices.Equal(before.names, after.names) {
		t.Errorf("directory was %v, now %v", before.names, after.names)
	}
	if before.uid != after.uid || before.gid != after.gid || before.dirUID != after.dirUID || before.dirG != after.dirG {
		t.Error("owner changed")
	}
	if !bytes.Equal(before.content, after.content) {
		t.Error("content changed")
	}
	for _, n := range after.names {
		if strings.HasSuffix(n, ".tmp") {
			t.Errorf("stray temp file %s", n)
		}
	}
}

func TestSymlinkedDirRefused(t *testing.T) {
	root := t.TempDir()
	real := filepath.Join(root, "real")
	if err := os.Mkdir(real, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(real, "auth.json"), []byte("host login"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(root, "link")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	s := dir.New(dir.Options{Dir: link, FileName: "auth.json", LockDir: filepath.Join(root, "locks"), LockFiles: []string{"auth.lock"}})

	called := false
	err := s.Update(ctx, func([]byte, bool) ([]byte, bool) { called = true; return []byte(secret), true })
	var se *dir.SymlinkError
	if !errors.As(err, &se) || se.Path != link || se.File {
		t.Fatalf("Update err = %v, want *SymlinkError for %s", err, link)
	}
	want := "refusing to use " + link + ": it is a symlink; point the config at the real directory"
	if err.Error() != want {
		t.Fatalf("message = %q, want %q", err, want)
	}
	if called {
		t.Fatal("decide called through a symlinked dir")
	}
	if _, err := s.Read(ctx); !errors.As(err, &se) {
		t.Fatalf("Read err = %v, want *SymlinkError", err)
	}
	got, _ := os.ReadFile(filepath.Join(real, "auth.json"))
	if string(got) != "host login" {
		t.Fatalf("target changed to %q", got)
	}
	if names := listDir(t, real); !slices.Equal(names, []string{"auth.json"}) {
		t.Fatalf("target dir now holds %v", names)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		t.Fatalf("symlink replaced: %v", err)
	}
}

func TestSymlinkedFileRefused(t *testing.T) {
	d, locks := setup(t)
	if err := os.MkdirAll(d, 0o700); err != nil {
		t.Fatal(err)
	}
	host := filepath.Join(t.TempDir(), ".credentials.json")
	if err := os.WriteFile(host, []byte("host login"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(d, ".credentials.json")
	if err := os.Symlink(host, link); err != nil {
		t.Fatal(err)
	}
	s := dir.New(dir.Options{Dir: d, FileName: ".credentials.json", LockDir: locks})

	called := false
	err := s.Update(ctx, func([]byte, bool) ([]byte, bool) { called = true; return []byte(secret), true })
	var se *dir.SymlinkError
	if !errors.As(err, &se) || se.Path != link || !se.File {
		t.Fatalf("Update err = %v, want *SymlinkError for %s", err, link)
	}
	if !strings.HasPrefix(err.Error(), "refusing to use "+link+": it is a symlink") {
		t.Fatalf("message = %q", err)
	}
	if called {
		t.Fatal("decide called through a symlinked file")
	}
	if _, err := s.Read(ctx); !errors.As(err, &se) {
		t.Fatalf("Read err = %v, want *SymlinkError", err)
	}
	got, _ := os.ReadFile(host)
	if string(got) != "host login" {
		t.Fatalf("target changed to %q", got)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		t.Fatalf("symlink replaced: %v", err)
	}
}

// TestSymlinkedLockFileRefused: a lock file planted as a symlink (a
// container can write into the copy dir) must not make mc-broker create or
// open the target.
func TestSymlinkedLockFileRefused(t *testing.T) {
	d, locks := setup(t)
	if err := os.MkdirAll(d, 0o700); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(t.TempDir(), "planted")
	if err := os.Symlink(target, filepath.Join(d, "auth.lock")); err != nil {
		t.Fatal(err)
	}
	s := dir.New(dir.Options{Dir: d, FileName: "auth.json", LockDir: locks, LockFiles: []string{"auth.lock"}})
	called := false
	err := s.Update(ctx, func([]byte, bool) ([]byte, bool) { called = true; return []byte(`{}`), true })
	if err == nil || !strings.Contains(err.Error(), "symlink") {
		t.Fatalf("err = %v, want a symlink refusal", err)
	}
	_ = called // decide runs before the locks are taken; nothing is written
	if _, err := os.Lstat(filepath.Join(d, "auth.json")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the copy was written: %v", err)
	}
	if _, err := os.Lstat(target); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("symlink target created: %v", err)
	}
}

func TestOwnerApplied(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown to uid 1000")
	}
	d, locks := setup(t)
	uid, gid := 1000, 1000
	s := dir.New(dir.Options{Dir: d, FileName: "auth.json", UID: &uid, GID: &gid, LockDir: locks, LockFiles: []string{"auth.lock", "auth.json.lock"}})
	update(t, s, write([]byte(`{}`)))
	for _, p := range []string{d, s.Location(), filepath.Join(d, "auth.lock"), filepath.Join(d, "auth.json.lock")} {
		if u, g := owner(t, p); u != uid || g != gid {
			t.Errorf("%s owned by %d:%d, want 1000:1000", p, u, g)
		}
	}
	fi, _ := os.Lstat(s.Location())
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("file mode = %v", fi.Mode())
	}
	fi, _ = os.Lstat(d)
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("dir mode = %v", fi.Mode())
	}
	// The parents MkdirAll made stay root's: only the mounted dir is given away.
	if u, _ := owner(t, filepath.Dir(d)); u != 0 {
		t.Errorf("parent owned by %d", u)
	}

	// An existing root-owned dir (compose's -v creates missing sources so)
	// is given to the user as well.
	d2 := filepath.Join(t.TempDir(), "made-by-compose")
	if err := os.Mkdir(d2, 0o755); err != nil {
		t.Fatal(err)
	}
	s2 := dir.New(dir.Options{Dir: d2, FileName: "auth.json", UID: &uid, GID: &gid, LockDir: locks})
	update(t, s2, write([]byte(`{}`)))
	if u, g := owner(t, d2); u != uid || g != gid {
		t.Errorf("existing dir owned by %d:%d", u, g)
	}
}

// TestChownFailure runs as an unprivileged user (re-executed as nobody when
// the suite runs as root).
func TestChownFailure(t *testing.T) {
	if testenv.RerunAsNobody(t, "TestChownFailure") {
		return
	}
	d, locks := setup(t)
	uid := os.Geteuid() + 1
	s := dir.New(dir.Options{Dir: d, FileName: "auth.json", UID: &uid, LockDir: locks})
	called := false
	err := s.Update(ctx, func([]byte, bool) ([]byte, bool) { called = true; return []byte(secret), true })
	want := fmt.Sprintf("cannot give %s to uid %d: operation not permitted (run as root, or remove uid/gid from the config)", d, uid)
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v, want %q", err, want)
	}
	if !errors.Is(err, fs.ErrPermission) {
		t.Fatalf("err does not match fs.ErrPermission: %v", err)
	}
	if called {
		t.Fatal("decide called although the dir could not be given away")
	}
}

// TestConcurrentReaders: readers in another process and in a goroutine never
// see a partial copy while the sink rewrites it with payloads of varying
// length.
func TestConcurrentReaders(t *testing.T) {
	d, locks := setup(t)
	s := dir.New(dir.Options{Dir: d, FileName: "oauth_creds.json", LockDir: locks})
	update(t, s, write(payload(0)))

	reader := testenv.StartHelper(t, "read", "HELPER_PATH="+s.Location())
	reader.Expect(t, "ready")

	stop := make(chan struct{})
	var goReads, goBad atomic.Int64
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
			data, err := s.Read(ctx)
			goReads.Add(1)
			if err != nil || !isPayload(data) {
				goBad.Add(1)
			}
		}
	}()

	const writes = 400
	for i := 1; i <= writes; i++ {
		update(t, s, write(payload(i)))
	}
	close(stop)
	wg.Wait()
	reader.CloseStdin(t)
	line := reader.ReadLine(t)
	reader.Wait(t)
	var pReads, pBad int
	if _, err := fmt.Sscanf(line, "reads=%d bad=%d", &pReads, &pBad); err != nil {
		t.Fatalf("reader said %q", line)
	}
	t.Logf("process reads %d, goroutine reads %d", pReads, goReads.Load())
	if pBad != 0 || goBad.Load() != 0 {
		t.Fatalf("partial or invalid reads: process %d of %d, goroutine %d of %d", pBad, pReads, goBad.Load(), goReads.Load())
	}
	if pReads < 2 || goReads.Load() < 2 {
		t.Fatal("readers did not overlap the writes")
	}
	got, _ := s.Read(ctx)
	if !bytes.Equal(got, payload(writes)) {
		t.Fatal("final content is not the last payload")
	}
	for _, n := range listDir(t, d) {
		if n != "oauth_creds.json" {
			t.Errorf("stray file %s", n)
		}
	}
}

// TestWaitsForCLILock: a CLI holding its lock in the copy dir holds
// Update's rename back until it lets go (the new file may be prepared
// meanwhile); with a short LockTimeout Update gives up with
// *filelock.TimeoutError.
func TestWaitsForCLILock(t *testing.T) {
	d, locks := setup(t)
	if err := os.MkdirAll(d, 0o700); err != nil {
		t.Fatal(err)
	}
	cliLock := filepath.Join(d, "auth.lock")
	cliHolder := testenv.HoldLock(t, cliLock)

	s := dir.New(dir.Options{Dir: d, FileName: "auth.json", LockDir: locks, LockFiles: []string{"auth.lock", "auth.json.lock"}, LockTimeout: time.Minute, CLILockTimeout: time.Minute})
	var mu sync.Mutex
	var events []string
	event := func(e string) {
		mu.Lock()
		events = append(events, e)
		mu.Unlock()
	}
	done := make(chan error, 1)
	go func() {
		done <- s.Update(ctx, func([]byte, bool) ([]byte, bool) {
			event("decide")
			return []byte(`{"v":1}`), true
		})
	}()

	// Wait (poll with a deadline) until Update holds mc-broker's own lock:
	// it is then queued on auth.lock.
	ownLock := ownLockPath(locks, d)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if lockedElsewhere(t, ownLock) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Update never took its own lock")
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case err := <-done:
		t.Fatalf("Update finished while the CLI held its lock: %v", err)
	default:
	}
	if _, err := os.Lstat(filepath.Join(d, "auth.json.lock")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("second lock taken before the first: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(d, "auth.json")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the copy was written while the CLI held its lock: %v", err)
	}
	event("released")
	cliHolder.Release(t)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	got := slices.Clone(events)
	mu.Unlock()
	if len(got) == 0 || got[len(got)-1] == "decide" && !slices.Contains(got, "released") {
		t.Fatalf("events = %v, want a decision and the release", got)
	}
	if b, _ := os.ReadFile(s.Location()); string(b) != `{"v":1}` {
		t.Fatalf("content = %q", b)
	}

	// Timeout: the second CLI lock is held this time.
	jsonHolder := testenv.HoldLock(t, filepath.Join(d, "auth.json.lock"))
	defer jsonHolder.Release(t)
	s = dir.New(dir.Options{Dir: d, FileName: "auth.json", LockDir: locks, LockFiles: []string{"auth.lock", "auth.json.lock"}, CLILockTimeout: 50 * time.Millisecond})
	err := s.Update(ctx, func([]byte, bool) ([]byte, bool) { return []byte(`{"v":2}`), true })
	var te *filelock.TimeoutError
	if !errors.As(err, &te) {
		t.Fatalf("err = %v, want *filelock.TimeoutError", err)
	}
	if te.Path != filepath.Join(d, "auth.json.lock") || te.Waited != 50*time.Millisecond {
		t.Fatalf("TimeoutError = %+v", te)
	}
	if b, _ := os.ReadFile(s.Location()); string(b) != `{"v":1}` {
		t.Fatalf("content = %q", b)
	}
	// Locks taken before the timeout were released: auth.lock is free.
	unlock, err := filelock.Lock(ctx, cliLock, 0)
	if err != nil {
		t.Fatalf("auth.lock still held after the failed Update: %v", err)
	}
	unlock()
}

// ownLockPath mirrors the sink's naming of its own lock file.
func ownLockPath(lockDir, d string) string {
	sum := sha256.Sum256([]byte(filepath.Clean(d)))
	return filepath.Join(lockDir, hex.EncodeToString(sum[:])[:16]+".lock")
}

// lockedElsewhere says whether someone holds a flock on path (false when the
// file does not exist yet).
func lockedElsewhere(t *testing.T, path string) bool {
	t.Helper()
	if _, err := os.Lstat(path); err != nil {
		return false
	}
	unlock, err := filelock.Lock(ctx, path, 0)
	if err == nil {
		unlock()
		return false
	}
	var te *filelock.TimeoutError
	if !errors.As(err, &te) {
		t.Fatal(err)
	}
	return true
}

// TestOwnLockSerializes: mc-broker's own lock alone (no CLI lock files)
// keeps two Updates of the same copy apart, including when the two sinks
// spell the directory differently.
func TestOwnLockSerializes(t *testing.T) {
	d, locks := setup(t)
	a := dir.New(dir.Options{Dir: d, FileName: "auth.json", LockDir: locks})
	b := dir.New(dir.Options{Dir: d + "/./", FileName: "auth.json", LockDir: locks, LockTimeout: 20 * time.Millisecond})
	err := a.Update(ctx, func([]byte, bool) ([]byte, bool) {
		berr := b.Update(ctx, write([]byte(`{"b":1}`)))
		var te *filelock.TimeoutError
		if !errors.As(berr, &te) {
			t.Errorf("nested Update err = %v, want *filelock.TimeoutError", berr)
		}
		return []byte(`{"a":1}`), true
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(a.Location()); string(got) != `{"a":1}` {
		t.Fatalf("content = %q", got)
	}
}

// TestNoLostUpdates: goroutines and separate processes increment one
// counter; with every read-decide-write under the locks none is lost.
func TestNoLostUpdates(t *testing.T) {
	d, locks := setup(t)
	const (
		procs      = 4
		goroutines = 8
		each       = 25
	)
	var helpers []*testenv.Helper
	for range procs {
		h := testenv.StartHelper(t, "increment", "HELPER_DIR="+d, "HELPER_LOCKDIR="+locks, fmt.Sprintf("HELPER_COUNT=%d", each))
		h.Expect(t, "ready")
		helpers = append(helpers, h)
	}
	s := counterSink(d, locks)
	var inDecide atomic.Int32
	var wg sync.WaitGroup
	errs := make(chan error, goroutines*each)
	start := make(chan struct{})
	for range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for range each {
				if err := increment(s, &inDecide); err != nil {
					errs <- err
				}
			}
		}()
	}
	for _, h := range helpers {
		h.Send(t, "go")
	}
	close(start)
	wg.Wait()
	for _, h := range helpers {
		h.Wait(t)
	}
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	got, err := s.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := counter((procs + goroutines) * each)
	if !bytes.Equal(got, want) {
		t.Fatalf("final = %s, want %s", got, want)
	}
}

// TestMaxWins: writers each offer increasing values and write only when
// theirs is greater than the copy's; the copy ends at the maximum.
func TestMaxWins(t *testing.T) {
	d, locks := setup(t)
	s := counterSink(d, locks)
	const writers, top = 8, 400
	var wg sync.WaitGroup
	errs := make(chan error, top)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for v := w + 1; v <= top; v += writers {
				err := s.Update(ctx, func(cur []byte, exists bool) ([]byte, bool) {
					c, err := counterValue(cur, exists)
					if err != nil {
						errs <- err
						return nil, false
					}
					return counter(v), v > c
				})
				if err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	got, _ := s.Read(ctx)
	if !bytes.Equal(got, counter(top)) {
		t.Fatalf("final = %s, want %s", got, counter(top))
	}
}

func TestReadMissing(t *testing.T) {
	d, locks := setup(t)
	s := dir.New(dir.Options{Dir: d, FileName: "auth.json", LockDir: locks})
	if _, err := s.Read(ctx); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing dir: err = %v, want fs.ErrNotExist", err)
	}
	if err := os.MkdirAll(d, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Read(ctx); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing file: err = %v, want fs.ErrNotExist", err)
	}
	// Read never creates anything.
	if names := listDir(t, d); len(names) != 0 {
		t.Fatalf("Read created %v", names)
	}
	if _, err := os.Lstat(locks); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("Read created the lock dir")
	}
}

func TestReadOversized(t *testing.T) {
	d, locks := setup(t)
	if err := os.MkdirAll(d, 0o700); err != nil {
		t.Fatal(err)
	}
	s := dir.New(dir.Options{Dir: d, FileName: "auth.json", LockDir: locks})
	if err := os.WriteFile(s.Location(), bytes.Repeat([]byte("a"), credential.MaxSize+100), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := s.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != credential.MaxSize+1 {
		t.Fatalf("Read returned %d bytes, want MaxSize+1", len(got))
	}
	update(t, s, func(cur []byte, exists bool) ([]byte, bool) {
		if !exists || len(cur) != credential.MaxSize+1 {
			t.Errorf("decide got %d bytes, exists=%v", len(cur), exists)
		}
		return []byte(`{}`), true
	})
	if b, _ := os.ReadFile(s.Location()); string(b) != `{}` {
		t.Fatal("oversized copy not replaced")
	}
}

func TestNotARegularFile(t *testing.T) {
	d, locks := setup(t)
	s := dir.New(dir.Options{Dir: d, FileName: "auth.json", LockDir: locks})
	if err := os.MkdirAll(s.Location(), 0o700); err != nil {
		t.Fatal(err)
	}
	want := s.Location() + " is a directory, not a file"
	if _, err := s.Read(ctx); err == nil || err.Error() != want {
		t.Fatalf("Read err = %v, want %q", err, want)
	}
	called := false
	err := s.Update(ctx, func([]byte, bool) ([]byte, bool) { called = true; return []byte(`{}`), true })
	if err == nil || err.Error() != want {
		t.Fatalf("Update err = %v, want %q", err, want)
	}
	if called {
		t.Fatal("decide called")
	}

	// A FIFO is refused without blocking.
	d2, _ := setup(t)
	s2 := dir.New(dir.Options{Dir: d2, FileName: "auth.json", LockDir: locks})
	if err := os.MkdirAll(d2, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(s2.Location(), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s2.Read(ctx); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("FIFO: err = %v", err)
	}

	// Dir is a file.
	f := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s3 := dir.New(dir.Options{Dir: f, FileName: "auth.json", LockDir: locks})
	if _, err := s3.Read(ctx); err == nil || err.Error() != f+" is not a directory" {
		t.Fatalf("Read err = %v", err)
	}
	if err := s3.Update(ctx, write([]byte(`{}`))); err == nil || err.Error() != f+" is not a directory" {
		t.Fatalf("Update err = %v", err)
	}
}

// TestWriteFailureKeepsSecret: when the write itself fails the error names
// paths, never the content, and leaves no temp file.
func TestWriteFailureKeepsSecret(t *testing.T) {
	d, locks := setup(t)
	s := dir.New(dir.Options{Dir: d, FileName: "auth.json", LockDir: locks})
	update(t, s, write([]byte(`{"old":"`+secret+`"}`)))
	err := s.Update(ctx, func([]byte, bool) ([]byte, bool) {
		// Something else puts a non-empty directory where the copy goes,
		// so the final rename fails.
		if err := os.Remove(s.Location()); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(s.Location(), "x"), 0o700); err != nil {
			t.Fatal(err)
		}
		return []byte(`{"new":"` + secret + `"}`), true
	})
	if err == nil {
		t.Fatal("Update succeeded")
	}
	if strings.Contains(err.Error(), secret) {
		t.Fatalf("error leaks content: %v", err)
	}
	if !strings.Contains(err.Error(), s.Location()) {
		t.Fatalf("error does not name the copy: %v", err)
	}
	if names := listDir(t, d); !slices.Equal(names, []string{"auth.json"}) {
		t.Fatalf("dir holds %v", names)
	}
}

func TestBadOptions(t *testing.T) {
	abs := t.TempDir()
	for _, c := range []struct {
		name string
		o    dir.Options
	}{
		{"relative dir", dir.Options{Dir: "copies/claude", FileName: "auth.json", LockDir: abs}},
		{"empty dir", dir.Options{FileName: "auth.json", LockDir: abs}},
		{"empty file name", dir.Options{Dir: abs, LockDir: abs}},
		{"file name with dir", dir.Options{Dir: abs, FileName: "../auth.json", LockDir: abs}},
		{"lock file with dir", dir.Options{Dir: abs, FileName: "auth.json", LockFiles: []string{"../x.lock"}, LockDir: abs}},
		{"lock file is the copy", dir.Options{Dir: abs, FileName: "auth.json", LockFiles: []string{"auth.json"}, LockDir: abs}},
		{"no lock dir", dir.Options{Dir: abs, FileName: "auth.json"}},
	} {
		s := dir.New(c.o)
		if err := s.Update(ctx, write([]byte(`{}`))); err == nil {
			t.Errorf("%s: Update succeeded", c.name)
		}
	}
	if names := listDir(t, abs); len(names) != 0 {
		t.Fatalf("bad options wrote %v", names)
	}
}

func TestCanceledContext(t *testing.T) {
	d, locks := setup(t)
	s := dir.New(dir.Options{Dir: d, FileName: "auth.json", LockDir: locks})
	c, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.Update(c, write([]byte(`{}`))); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Lstat(d); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("canceled Update created the dir")
	}
}

// A copy directory reached through a symlinked parent that is in fact the
// host's own config directory must not replace the host's login.
func TestProtectedFileNeverReplaced(t *testing.T) {
	root := t.TempDir()
	host := filepath.Join(root, "home", ".claude")
	hostFile := filepath.Join(host, ".credentials.json")
	if err := os.MkdirAll(host, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(hostFile, []byte(`{"host":true}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(root, "home"), filepath.Join(root, "alias")); err != nil {
		t.Fatal(err)
	}
	s := dir.New(dir.Options{
		Dir: filepath.Join(root, "alias", ".claude"), FileName: ".credentials.json",
		LockDir: filepath.Join(root, "locks"), Protect: []string{hostFile},
	})
	err := s.Update(ctx, write([]byte(`{"copy":true}`)))
	if err == nil || !strings.Contains(err.Error(), "host's own login file") {
		t.Fatalf("Update = %v, want a refusal naming the host's login file", err)
	}
	if got, _ := os.ReadFile(hostFile); string(got) != `{"host":true}` {
		t.Errorf("the host's login was replaced (%d bytes now)", len(got))
	}
}

// A copy left as it is still gets the mode it would have been written with.
func TestUnchangedCopyMadePrivate(t *testing.T) {
	d, locks := setup(t)
	s := dir.New(dir.Options{Dir: d, FileName: "auth.json", LockDir: locks})
	update(t, s, write([]byte(`{"a":1}`)))
	path := filepath.Join(d, "auth.json")
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	before, _ := os.Stat(path)
	update(t, s, func([]byte, bool) ([]byte, bool) { return nil, false })
	after, _ := os.Stat(path)
	if after.Mode().Perm() != 0o600 {
		t.Errorf("mode %o, want 0600", after.Mode().Perm())
	}
	if !os.SameFile(before, after) || !before.ModTime().Equal(after.ModTime()) {
		t.Error("fixing the mode rewrote the file")
	}
}

func TestWriteIfAbsentNeverReplacesTheContainersFile(t *testing.T) {
	d := filepath.Join(t.TempDir(), "claude")
	s := dir.New(dir.Options{Dir: d, FileName: ".credentials.json", LockDir: t.TempDir()})
	os.MkdirAll(d, 0o700)
	ctx := context.Background()
	wrote, err := s.WriteIfAbsent(ctx, ".claude.json", []byte(`{"hasCompletedOnboarding":true}`))
	if err != nil || !wrote {
		t.Fatalf("first write: %v, %v", wrote, err)
	}
	fi, _ := os.Stat(filepath.Join(d, ".claude.json"))
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("companion mode %v, want 0600", fi.Mode().Perm())
	}
	// The container's CLI rewrites its config: mc-broker leaves it alone.
	os.WriteFile(filepath.Join(d, ".claude.json"), []byte(`{"theme":"dark"}`), 0o600)
	wrote, err = s.WriteIfAbsent(ctx, ".claude.json", []byte(`{"hasCompletedOnboarding":true}`))
	if err != nil || wrote {
		t.Fatalf("second write: %v, %v; want nothing written", wrote, err)
	}
	if got, _ := os.ReadFile(filepath.Join(d, ".claude.json")); string(got) != `{"theme":"dark"}` {
		t.Fatalf("container's file became %q", got)
	}
	if _, err := s.WriteIfAbsent(ctx, ".credentials.json", []byte(`{}`)); err == nil {
		t.Fatal("a companion may not be the login file")
	}
	entries, _ := os.ReadDir(d)
	if len(entries) != 1 {
		t.Fatalf("left behind %d entries, want only .claude.json", len(entries))
	}
}

// TestErase: revoke takes the login file out of the copy directory under
// the CLI's locks, never creates the directory, never follows a symlink
// put there, never removes the host's own file, and leaves what erase
// declines.
func TestErase(t *testing.T) {
	d, locks := setup(t)
	s := dir.New(dir.Options{Dir: d, FileName: "auth.json", LockFiles: []string{"auth.lock"}, LockDir: locks})
	yes := func([]byte) bool { return true }

	if erased, err := s.Erase(ctx, yes); erased || err != nil {
		t.Fatalf("missing directory: erased %v, %v", erased, err)
	}
	if _, err := os.Lstat(d); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("Erase created the copy directory")
	}

	update(t, s, write([]byte(secret)))
	var saw []byte
	if erased, err := s.Erase(ctx, func(cur []byte) bool { saw = cur; return false }); erased || err != nil || string(saw) != secret {
		t.Fatalf("declined: erased %v, %v, saw %d bytes", erased, err, len(saw))
	}
	if _, err := os.Stat(s.Location()); err != nil {
		t.Fatal("a declined erase removed the file")
	}
	// A crashed write's temporary file holds the login too.
	stale := filepath.Join(d, ".mc-broker-crashed.tmp")
	os.WriteFile(stale, []byte(secret), 0o600)
	if erased, err := s.Erase(ctx, yes); !erased || err != nil {
		t.Fatalf("erased %v, %v", erased, err)
	}
	for _, name := range listDir(t, d) {
		if data, _ := os.ReadFile(filepath.Join(d, name)); bytes.Contains(data, []byte(secret)) {
			t.Errorf("%s still holds the login", name)
		}
	}

	// A container puts a symlink where the login was: the link goes, its
	// target stays.
	target := filepath.Join(t.TempDir(), "elsewhere")
	os.WriteFile(target, []byte(secret), 0o600)
	if err := os.Symlink(target, s.Location()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Erase(ctx, yes); err == nil {
		t.Error("a symlink in place of the copy was read through")
	}
	if data, err := os.ReadFile(target); err != nil || string(data) != secret {
		t.Errorf("the symlink's target was changed: %v", err)
	}

	// A CLI holding its lock in the copy directory is waited for.
	os.Remove(s.Location())
	update(t, s, write([]byte(secret)))
	lock, err := filelock.Lock(ctx, filepath.Join(d, "auth.lock"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := s.Erase(ctx, yes); done <- err }()
	select {
	case err := <-done:
		t.Fatalf("erased while the CLI held its lock (%v)", err)
	case <-time.After(200 * time.Millisecond):
	}
	lock()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.Location()); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("still there after the lock was let go: %v", err)
	}
}

func TestEraseNeverRemovesTheHostsLogin(t *testing.T) {
	root := t.TempDir()
	host := filepath.Join(root, ".codex")
	hostFile := filepath.Join(host, "auth.json")
	os.MkdirAll(host, 0o700)
	os.WriteFile(hostFile, []byte(secret), 0o600)
	s := dir.New(dir.Options{Dir: host, FileName: "auth.json", LockDir: filepath.Join(root, "locks"), Protect: []string{hostFile}})
	if _, err := s.Erase(ctx, func([]byte) bool { return true }); err == nil || !strings.Contains(err.Error(), "host's own login file") {
		t.Fatalf("Erase = %v, want a refusal", err)
	}
	if _, err := os.Stat(hostFile); err != nil {
		t.Fatal("the host's login was removed")
	}
}

// A copy directory someone made readable by others (0755, as mkdir or
// compose's short -v syntax make it) is made private, as the README
// promises; permissions are only ever taken away, so a directory the user
// made read-only stays read-only.
func TestCopyDirectoryIsMadePrivate(t *testing.T) {
	d, locks := setup(t)
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(d, 0o755); err != nil {
		t.Fatal(err)
	}
	s := dir.New(dir.Options{Dir: d, FileName: ".credentials.json", LockDir: locks})
	update(t, s, write([]byte(`{"v":1}`)))
	if fi, _ := os.Stat(d); fi.Mode().Perm() != 0o700 {
		t.Errorf("copy directory mode %v after a write, want 0700", fi.Mode().Perm())
	}
	if err := os.Chmod(d, 0o555); err != nil {
		t.Fatal(err)
	}
	_ = s.Update(ctx, write([]byte(`{"v":2}`)))
	if fi, _ := os.Stat(d); fi.Mode().Perm() != 0o500 {
		t.Errorf("read-only copy directory mode %v, want 0500 (others' bits taken away, nothing added)", fi.Mode().Perm())
	}
	os.Chmod(d, 0o700)
}
