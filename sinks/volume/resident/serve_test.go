package resident

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

type client struct {
	t   *testing.T
	in  *io.PipeWriter
	out *bufio.Scanner
	ev  chan Reply
	rep chan Reply
}

func serve(t *testing.T, files []FileSpec, watch bool) *client {
	t.Helper()
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		Serve(ctx, inR, outW, files, ServeOptions{Watch: watch, LockDir: t.TempDir()})
		outW.Close()
	}()
	t.Cleanup(func() { cancel(); inW.Close(); <-done })
	c := &client{t: t, in: inW, ev: make(chan Reply, 64), rep: make(chan Reply, 64)}
	go func() {
		sc := bufio.NewScanner(outR)
		sc.Buffer(nil, MaxLine)
		for sc.Scan() {
			var r Reply
			json.Unmarshal(sc.Bytes(), &r)
			if r.Event != "" {
				c.ev <- r
			} else {
				c.rep <- r
			}
		}
	}()
	if h := <-c.ev; h.Event != "hello" || h.Version != Version || h.Files != len(files) {
		t.Fatalf("hello = %+v", h)
	}
	return c
}

func (c *client) call(req Request) Reply {
	c.t.Helper()
	line, _ := json.Marshal(req)
	c.in.Write(append(line, '\n'))
	select {
	case r := <-c.rep:
		return r
	case <-time.After(5 * time.Second):
		c.t.Fatal("no answer")
	}
	return Reply{}
}

func TestConditionalWrite(t *testing.T) {
	dir := t.TempDir()
	c := serve(t, []FileSpec{{Path: filepath.Join(dir, "auth.json"), LockFiles: []string{"auth.lock"}}}, false)
	if r := c.call(Request{ID: 1, Op: "read"}); r.Exists || r.Err != "" {
		t.Fatalf("read of nothing = %+v", r)
	}
	if r := c.call(Request{ID: 2, Op: "write", Data: []byte("a"), Expect: Absent}); !r.Written {
		t.Fatalf("write to nothing = %+v", r)
	}
	// Someone else wrote meanwhile: no write, and what is there now.
	os.WriteFile(filepath.Join(dir, "auth.json"), []byte("newer"), 0o600)
	if r := c.call(Request{ID: 3, Op: "write", Data: []byte("b"), Expect: Sum([]byte("a"))}); r.Written || !r.Changed || string(r.Data) != "newer" {
		t.Fatalf("write over a changed file = %+v", r)
	}
	if r := c.call(Request{ID: 4, Op: "write", Data: []byte("c"), Expect: Sum([]byte("newer"))}); !r.Written {
		t.Fatalf("write = %+v", r)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "auth.json")); string(got) != "c" {
		t.Fatalf("file holds %q", got)
	}
	if r := c.call(Request{ID: 5, Op: "add", Name: "config.toml", Data: []byte("x")}); !r.Written {
		t.Fatalf("add = %+v", r)
	}
	if r := c.call(Request{ID: 6, Op: "add", Name: "config.toml", Data: []byte("y")}); r.Written {
		t.Fatalf("second add replaced the file: %+v", r)
	}
}

func TestRefusesSymlinkedDirectories(t *testing.T) {
	root := t.TempDir()
	other := t.TempDir()
	os.WriteFile(filepath.Join(other, "auth.json"), []byte("another volume's"), 0o600)
	os.Symlink(other, filepath.Join(root, "home"))
	c := serve(t, []FileSpec{{Path: filepath.Join(root, "home", "auth.json")}}, false)
	if r := c.call(Request{ID: 1, Op: "read"}); r.Err == "" || r.Exists {
		t.Fatalf("read through a symlinked directory = %+v", r)
	}
	if r := c.call(Request{ID: 2, Op: "write", Data: []byte("x"), Expect: Sum([]byte("another volume's"))}); r.Err == "" || r.Written {
		t.Fatalf("write through a symlinked directory = %+v", r)
	}
}

func TestReportsChanges(t *testing.T) {
	dir := t.TempDir()
	c := serve(t, []FileSpec{{Path: filepath.Join(dir, ".credentials.json")}}, true)
	<-c.ev // the first: watching started
	tmp := filepath.Join(dir, ".tmp")
	os.WriteFile(tmp, []byte("x"), 0o600)
	os.Rename(tmp, filepath.Join(dir, ".credentials.json"))
	select {
	case r := <-c.ev:
		if r.Event != "changed" || r.File != 0 {
			t.Fatalf("event %+v", r)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("no changed event for a rename over the file")
	}
}

func TestLockRequestsAndEvents(t *testing.T) {
	dir := t.TempDir()
	c := serve(t, []FileSpec{{Path: filepath.Join(dir, ".credentials.json")}}, true)
	<-c.ev
	if r := c.call(Request{ID: 1, Op: "lockstat"}); r.Lock != nil || r.Err != "" {
		t.Fatalf("lockstat of nothing = %+v", r)
	}
	if r := c.call(Request{ID: 2, Op: "lockmk"}); !r.Written {
		t.Fatalf("lockmk = %+v", r)
	}
	if r := c.call(Request{ID: 3, Op: "lockmk"}); !r.Exist {
		t.Fatalf("second lockmk = %+v", r)
	}
	if r := c.call(Request{ID: 4, Op: "lockstat"}); r.Lock == nil || !r.Lock.IsDir || r.Lock.Ino == 0 {
		t.Fatalf("lockstat = %+v", r)
	}
	if r := c.call(Request{ID: 5, Op: "ownerw", Data: []byte(`{"pid":7,"pidDomain":"d","pidSpace":"s","lockBirthtimeMs":1}`)}); !r.Written {
		t.Fatalf("ownerw = %+v", r)
	}
	if r := c.call(Request{ID: 6, Op: "ownerr"}); !r.Exists || !strings.Contains(string(r.Data), `"pid":7`) {
		t.Fatalf("ownerr = %+v", r)
	}
	for i, op := range []string{"ownerrm", "lockrm"} {
		if r := c.call(Request{ID: 7 + i, Op: op}); !r.Written {
			t.Fatalf("%s = %+v", op, r)
		}
	}
	// A Claude Code in the container takes its lock: the agent says so.
	drainEvents(c)
	os.Mkdir(filepath.Join(dir, ".oauth_refresh.lock"), 0o755)
	select {
	case r := <-c.ev:
		if r.Event != "lock" {
			t.Fatalf("event %+v, want lock", r)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("no lock event")
	}
}

func drainEvents(c *client) {
	for {
		select {
		case <-c.ev:
		case <-time.After(100 * time.Millisecond):
			return
		}
	}
}

// A container removes the copy's directory (rm -rf ~/.codex) and its CLI
// logs in again there, or renames a parent away and puts another in its
// place: the agent must watch the new directory, or a refresh made there
// would never be told while the host believes the agent watches it.
func TestWatchesADirectoryRemovedOrSwappedAgain(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "home", ".codex")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	c := serve(t, []FileSpec{{Path: filepath.Join(dir, "auth.json")}}, true)
	<-c.ev // the first: watching started
	writeAndWait := func(what string) {
		t.Helper()
		tmp := filepath.Join(dir, ".tmp")
		if err := os.WriteFile(tmp, []byte(what), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "auth.json")); err != nil {
			t.Fatal(err)
		}
		// Events the removal raised come first; the write's must follow.
		deadline := time.After(5 * time.Second)
		for {
			select {
			case r := <-c.ev:
				if r.Event != "changed" || r.File != 0 {
					t.Fatalf("event %+v", r)
				}
				if got, _ := os.ReadFile(filepath.Join(dir, "auth.json")); string(got) == what {
					if rep := c.call(Request{ID: 9, Op: "read"}); string(rep.Data) == what {
						return
					}
				}
			case <-deadline:
				t.Fatalf("%s: no changed event within 5 s", what)
			}
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	writeAndWait("after the directory was removed and made again")

	// The parent renamed away and another put in its place: no event on
	// the watched directory itself.
	if err := os.Rename(filepath.Join(root, "home"), filepath.Join(root, "old-home")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	writeAndWait("after the parent was swapped")
}

// A container holds its CLI's lock on its copy (a Codex in the middle of
// a write, or one holding it on purpose): the agent's write to that copy
// waits for it, but a read, a refresh-lock request, or anything for
// another file is answered at once, not queued behind the write. (The
// watcher makes refresh-lock requests on its one goroutine.)
func TestALockedCopyDelaysOnlyItsOwnWrites(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	files := []FileSpec{
		{Path: filepath.Join(a, "auth.json"), LockFiles: []string{"auth.lock"}},
		{Path: filepath.Join(b, "auth.json"), LockFiles: []string{"auth.lock"}},
	}
	c := serve(t, files, false)
	held, err := os.OpenFile(filepath.Join(a, "auth.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	// Released before the agent is stopped, should the test fail first.
	t.Cleanup(func() { held.Close() })
	if err := syscall.Flock(int(held.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	send := func(req Request) {
		line, _ := json.Marshal(req)
		c.in.Write(append(line, '\n'))
	}
	start := time.Now()
	send(Request{ID: 1, Op: "write", File: 0, Data: []byte("x"), Expect: Absent})
	send(Request{ID: 2, Op: "read", File: 0})
	send(Request{ID: 3, Op: "lockstat", File: 0})
	send(Request{ID: 4, Op: "write", File: 1, Data: []byte("y"), Expect: Absent})
	var order []int
	for len(order) < 4 {
		select {
		case r := <-c.rep:
			order = append(order, r.ID)
			if r.ID != 1 && time.Since(start) > time.Second {
				t.Errorf("request %d answered after %v, behind the locked write", r.ID, time.Since(start))
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("answers %v within 15 s, want 4", order)
		}
		if len(order) == 3 {
			// The rest are in: let the container's CLI finish.
			syscall.Flock(int(held.Fd()), syscall.LOCK_UN)
		}
	}
	if order[3] != 1 {
		t.Errorf("answers in order %v: the locked copy's write should come last", order)
	}
	if got, _ := os.ReadFile(files[1].Path); string(got) != "y" {
		t.Errorf("the other copy holds %q", got)
	}
}
