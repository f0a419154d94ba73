package file

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mc-broker/mc-broker/broker/kinds/claude"
	"github.com/mc-broker/mc-broker/broker/kinds/codex"

	"github.com/mc-broker/mc-broker/broker/filelock"
)

func TestUpdateReplacesTheLinkTargetAndKeepsTheLink(t *testing.T) {
	real := filepath.Join(t.TempDir(), "auth.json")
	os.WriteFile(real, []byte(`{"old":1}`), 0o600)
	link := filepath.Join(t.TempDir(), "auth.json")
	os.Symlink(real, link)
	s := New("codex", codex.Kind, link)
	var seen string
	err := s.Update(context.Background(), func(cur []byte, exists bool) ([]byte, bool) {
		seen = string(cur)
		return []byte(`{"new":1}`), true
	})
	if err != nil {
		t.Fatal(err)
	}
	if seen != `{"old":1}` {
		t.Errorf("decide saw %q, want the current login", seen)
	}
	if fi, _ := os.Lstat(link); fi.Mode()&os.ModeSymlink == 0 {
		t.Error("the user's symlink was replaced by a file")
	}
	got, _ := os.ReadFile(real)
	fi, _ := os.Stat(real)
	if string(got) != `{"new":1}` || fi.Mode().Perm() != 0o600 {
		t.Errorf("host file = %q mode %v, want the new login, 0600", got, fi.Mode().Perm())
	}
}

func TestUpdateWaitsForTheCLIsLock(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "auth.json")
	os.WriteFile(path, []byte(`{"old":1}`), 0o600)
	unlock, err := filelock.Lock(context.Background(), filepath.Join(dir, "auth.json.lock"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	s := New("codex", codex.Kind, path).WithLockFiles([]string{"auth.lock", "auth.json.lock"})
	done := make(chan error, 1)
	go func() {
		done <- s.Update(context.Background(), func([]byte, bool) ([]byte, bool) { return []byte(`{"new":1}`), true })
	}()
	select {
	case err := <-done:
		t.Fatalf("write-back finished (%v) while codex held auth.json.lock", err)
	case <-time.After(200 * time.Millisecond):
	}
	if got, _ := os.ReadFile(path); string(got) != `{"old":1}` {
		t.Fatalf("host file changed under codex's lock: %q", got)
	}
	unlock()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); string(got) != `{"new":1}` {
		t.Fatalf("after the lock was released: %q", got)
	}
}

func TestUpdateWaitsForClaudesStorageWriteLock(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, ".credentials.json")
	os.WriteFile(path, []byte(`{"old":1}`), 0o600)
	lock := filepath.Join(dir, ".storage-write.lock")
	os.Mkdir(lock, 0o700) // Claude is writing its login
	s := New("claude", claude.Kind, path).WithDirLock(lock)
	done := make(chan error, 1)
	go func() {
		done <- s.Update(context.Background(), func([]byte, bool) ([]byte, bool) { return []byte(`{"new":1}`), true })
	}()
	select {
	case err := <-done:
		t.Fatalf("write-back finished (%v) while claude held its write lock", err)
	case <-time.After(300 * time.Millisecond):
	}
	os.Remove(lock)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); string(got) != `{"new":1}` {
		t.Fatalf("after claude released its lock: %q", got)
	}
	if _, err := os.Stat(lock); err == nil {
		t.Fatal("write-back left claude's lock directory behind")
	}
}

// TestUpdateTakesTheCLIsLocksBesideTheLink: Codex flocks auth.lock and
// auth.json.lock in its own directory ($CODEX_HOME), whatever auth.json
// links to; a write-back through a symlinked auth.json must wait for those,
// not for lock files beside the link's target that nobody takes.
func TestUpdateTakesTheCLIsLocksBesideTheLink(t *testing.T) {
	real := filepath.Join(t.TempDir(), "auth.json")
	os.WriteFile(real, []byte(`{"old":1}`), 0o600)
	home := t.TempDir()
	link := filepath.Join(home, "auth.json")
	os.Symlink(real, link)
	unlock, err := filelock.Lock(context.Background(), filepath.Join(home, "auth.lock"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	s := New("codex", codex.Kind, link).WithLockFiles([]string{"auth.lock", "auth.json.lock"})
	done := make(chan error, 1)
	go func() {
		done <- s.Update(context.Background(), func([]byte, bool) ([]byte, bool) { return []byte(`{"new":1}`), true })
	}()
	select {
	case err := <-done:
		t.Fatalf("write-back finished (%v) while codex held auth.lock in its home", err)
	case <-time.After(200 * time.Millisecond):
	}
	unlock()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(real); string(got) != `{"new":1}` {
		t.Fatalf("after the lock was released: %q", got)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(real), "auth.lock")); err == nil {
		t.Error("lock file made beside the link's target, where codex never looks")
	}
}
