package atomicfile_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mc-broker/mc-broker/broker/atomicfile"
	"github.com/mc-broker/mc-broker/broker/testenv"
)

const secret = "sk-ant-ort01-SECRET-DO-NOT-LEAK"

func leftovers(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, ".mc-broker-*.tmp"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestWriteNewFile(t *testing.T) {
	dir := t.TempDir()
	data := []byte(`{"token":"` + secret + `"}`)
	if err := atomicfile.Write(dir, "auth.json", data, atomicfile.Options{}); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dir, "auth.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("content = %q, want %q", got, data)
	}
	fi, err := os.Stat(filepath.Join(dir, "auth.json"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode() != 0o600 {
		t.Fatalf("mode = %v, want 0600", fi.Mode())
	}
	if l := leftovers(t, dir); len(l) != 0 {
		t.Fatalf("temp files left: %v", l)
	}
}

func TestWriteEmpty(t *testing.T) {
	dir := t.TempDir()
	if err := atomicfile.Write(dir, "f", nil, atomicfile.Options{}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, "f"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != 0 {
		t.Fatalf("size = %d", fi.Size())
	}
}

func TestWriteModeIgnoresUmask(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	dir := t.TempDir()
	if err := atomicfile.Write(dir, "f", []byte("x"), atomicfile.Options{Mode: 0o644}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, "f"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode() != 0o644 {
		t.Fatalf("mode = %v, want 0644", fi.Mode())
	}
}

// TestReplaceIsAtomic checks that the old file is replaced by a new inode: a
// reader holding the old file open keeps seeing the old content, whole.
func TestReplaceIsAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	if err := os.WriteFile(path, []byte("old content"), 0o644); err != nil {
		t.Fatal(err)
	}
	before, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	if err := atomicfile.Write(dir, "f", []byte("new"), atomicfile.Options{}); err != nil {
		t.Fatal(err)
	}
	after, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if os.SameFile(before, after) {
		t.Fatal("file was rewritten in place, want a new inode")
	}
	if after.Mode() != 0o600 {
		t.Fatalf("mode = %v, want 0600 (the old file's mode must not carry over)", after.Mode())
	}
	old, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	if string(old) != "old content" {
		t.Fatalf("open reader saw %q", old)
	}
	got, _ := os.ReadFile(path)
	if string(got) != "new" {
		t.Fatalf("content = %q", got)
	}
}

// TestReplacesSymlinkNotTarget: a symlink at the target is replaced by a
// regular file; what it pointed at is untouched.
func TestReplacesSymlinkNotTarget(t *testing.T) {
	dir := t.TempDir()
	outside := filepath.Join(t.TempDir(), "host.json")
	if err := os.WriteFile(outside, []byte("host"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "f")); err != nil {
		t.Fatal(err)
	}
	if err := atomicfile.Write(dir, "f", []byte("copy"), atomicfile.Options{}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(filepath.Join(dir, "f"))
	if err != nil {
		t.Fatal(err)
	}
	if !fi.Mode().IsRegular() {
		t.Fatalf("mode = %v, want a regular file", fi.Mode())
	}
	got, _ := os.ReadFile(outside)
	if string(got) != "host" {
		t.Fatalf("symlink target changed to %q", got)
	}
}

func TestInvalidName(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"", ".", "..", "a/b", "../x", "/abs"} {
		err := atomicfile.Write(dir, name, []byte(secret), atomicfile.Options{})
		if err == nil {
			t.Errorf("Write(%q) succeeded", name)
			continue
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("error leaks data: %v", err)
		}
	}
	if l := leftovers(t, dir); len(l) != 0 {
		t.Fatalf("temp files left: %v", l)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(dir), "x")); err == nil {
		t.Fatal("wrote outside dir")
	}
}

func TestMissingDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "missing")
	err := atomicfile.Write(dir, "f", []byte(secret), atomicfile.Options{})
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v, want ErrNotExist", err)
	}
	if strings.Contains(err.Error(), secret) {
		t.Fatalf("error leaks data: %v", err)
	}
	if !strings.Contains(err.Error(), filepath.Join(dir, "f")) {
		t.Fatalf("error does not name the target: %v", err)
	}
}

// TestRenameFailureCleansUp makes the final rename fail (the target is a
// non-empty directory): the temp file must be gone and the error must not
// carry the data.
func TestRenameFailureCleansUp(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "f", "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	err := atomicfile.Write(dir, "f", []byte(secret), atomicfile.Options{})
	if err == nil {
		t.Fatal("Write over a non-empty directory succeeded")
	}
	if strings.Contains(err.Error(), secret) {
		t.Fatalf("error leaks data: %v", err)
	}
	if l := leftovers(t, dir); len(l) != 0 {
		t.Fatalf("temp files left: %v", l)
	}
	if fi, err := os.Stat(filepath.Join(dir, "f", "sub")); err != nil || !fi.IsDir() {
		t.Fatalf("target directory disturbed: %v", err)
	}
}

func TestChown(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown to another user")
	}
	dir := t.TempDir()
	uid, gid := 1000, 1001
	if err := atomicfile.Write(dir, "f", []byte("x"), atomicfile.Options{UID: &uid, GID: &gid}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, "f"))
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if int(st.Uid) != uid || int(st.Gid) != gid {
		t.Fatalf("owner = %d:%d, want %d:%d", st.Uid, st.Gid, uid, gid)
	}
	if fi.Mode() != 0o600 {
		t.Fatalf("mode = %v", fi.Mode())
	}

	// Only the uid: the gid stays the creator's.
	if err := atomicfile.Write(dir, "g", []byte("x"), atomicfile.Options{UID: &uid}); err != nil {
		t.Fatal(err)
	}
	fi, err = os.Stat(filepath.Join(dir, "g"))
	if err != nil {
		t.Fatal(err)
	}
	st = fi.Sys().(*syscall.Stat_t)
	if int(st.Uid) != uid || int(st.Gid) != os.Getegid() {
		t.Fatalf("owner = %d:%d, want %d:%d", st.Uid, st.Gid, uid, os.Getegid())
	}
}

func TestChownFailure(t *testing.T) {
	if testenv.RerunAsNobody(t, "TestChownFailure") {
		return
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	other := os.Geteuid() + 1
	err := atomicfile.Write(dir, "f", []byte(secret), atomicfile.Options{UID: &other})
	var ce *atomicfile.ChownError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v, want *ChownError", err)
	}
	want := fmt.Sprintf("cannot give %s to uid %d: operation not permitted", filepath.Join(dir, "f"), other)
	if err.Error() != want {
		t.Fatalf("err = %q, want %q", err, want)
	}
	if l := leftovers(t, dir); len(l) != 0 {
		t.Fatalf("temp files left: %v", l)
	}
	got, _ := os.ReadFile(filepath.Join(dir, "f"))
	if string(got) != "old" {
		t.Fatalf("target changed to %q", got)
	}
}

func TestOwner(t *testing.T) {
	u, g := 1000, 20
	for _, c := range []struct {
		uid, gid *int
		want     string
	}{
		{&u, nil, "uid 1000"},
		{nil, &g, "gid 20"},
		{&u, &g, "uid 1000, gid 20"},
	} {
		if got := atomicfile.Owner(c.uid, c.gid); got != c.want {
			t.Errorf("Owner = %q, want %q", got, c.want)
		}
	}
}

// TestConcurrentWriters: many writers racing on one name leave exactly one
// of their payloads and no temp files.
func TestConcurrentWriters(t *testing.T) {
	dir := t.TempDir()
	payloads := map[string]bool{}
	for i := range 16 {
		payloads[strings.Repeat(fmt.Sprint(i%10), 100+i*37)] = true
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(payloads)*10)
	for p := range payloads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 10 {
				if err := atomicfile.Write(dir, "f", []byte(p), atomicfile.Options{}); err != nil {
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
	got, err := os.ReadFile(filepath.Join(dir, "f"))
	if err != nil {
		t.Fatal(err)
	}
	if !payloads[string(got)] {
		t.Fatalf("final content (%d bytes) is not one of the payloads", len(got))
	}
	if l := leftovers(t, dir); len(l) != 0 {
		t.Fatalf("temp files left: %v", l)
	}
}

func TestRemoveStaleRemovesOnlyOldTemporaryFiles(t *testing.T) {
	dir := t.TempDir()
	old := filepath.Join(dir, ".mc-broker-123.tmp")
	fresh := filepath.Join(dir, ".mc-broker-456.tmp")
	other := filepath.Join(dir, "auth.json")
	for _, p := range []string{old, fresh, other} {
		os.WriteFile(p, []byte(`{"token":"left by a crash"}`), 0o600)
	}
	long := time.Now().Add(-2 * time.Minute)
	os.Chtimes(old, long, long)
	os.Chtimes(other, long, long)
	if n := atomicfile.RemoveStale(dir, time.Minute); n != 1 {
		t.Fatalf("removed %d, want 1", n)
	}
	if _, err := os.Stat(old); err == nil {
		t.Error("a crashed run's temporary file is still there")
	}
	for _, p := range []string{fresh, other} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s was removed: %v", filepath.Base(p), err)
		}
	}
}
