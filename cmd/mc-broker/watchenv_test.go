package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mc-broker/mc-broker/broker"
	"github.com/mc-broker/mc-broker/broker/kinds"

	"github.com/mc-broker/mc-broker/broker/credential"
	"github.com/mc-broker/mc-broker/broker/watch"
)

// This file is the harness of the watch and run end-to-end tests: a world
// (a host login, N copy directories, a config naming them) and the real
// binary running `watch` in it with JSON logs.

// nobody is the unprivileged uid/gid a world can be run as, so that
// permission tests mean something when the suite runs as root.
const nobody = 65534

// world is one user's machine in a temporary directory.
type world struct {
	t      *testing.T
	kind   credential.Kind
	root   string
	home   string
	config string
	source string   // the host's login file
	copies []string // each copy's login file
	state  string   // the watcher's state directory ($XDG_STATE_HOME/mc-broker)
	env    []string
	// fixture is the login all generations are made from; expiry is its
	// expiry member as it appears there.
	fixture, expiry []byte
	// base is generation 0's expiry: a few hours from now, so that every
	// generation is a login the broker takes back (expiring within what
	// the CLI ever issues).
	base int64
	// asNobody runs every command of the world as uid/gid 65534 (when the
	// tests run as root); the whole tree is then owned by it.
	asNobody bool
}

// newWorld makes a host login of kind ("claude" or "gemini") at generation
// 1 and a config with n directory copies of it (not written yet).
func newWorld(t *testing.T, kind string, n int) *world {
	t.Helper()
	// Not t.TempDir: its parent is 0700, which uid 65534 cannot enter.
	root, err := os.MkdirTemp("", "mc-broker-watch-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
			if err == nil && fi.IsDir() {
				_ = os.Chmod(p, 0o700)
			}
			return nil
		})
		os.RemoveAll(root)
	})
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	k, ok := kinds.ByName(kind)
	if !ok {
		t.Fatalf("unknown kind %s", kind)
	}
	w := &world{t: t, kind: k, root: root, home: filepath.Join(root, "home"), base: time.Now().Add(3 * time.Hour).UnixMilli()}
	w.state = filepath.Join(root, "state", "mc-broker")
	w.env = []string{"XDG_STATE_HOME=" + filepath.Join(root, "state")}
	var fixture string
	switch kind {
	case "claude":
		w.source = filepath.Join(w.home, ".claude", ".credentials.json")
		fixture, w.expiry = "claude/credentials.valid.json", []byte(`"expiresAt": 4102444800000`)
	case "gemini":
		w.source = filepath.Join(w.home, ".gemini", "oauth_creds.json")
		fixture, w.expiry = "gemini/oauth_creds.json", []byte(`"expiry_date": 4102444800000`)
	}
	if w.fixture, err = os.ReadFile(filepath.Join(fixturesDir(t), fixture)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(w.fixture, w.expiry) {
		t.Fatalf("%s: no %s", fixture, w.expiry)
	}
	writeFile(t, w.source, w.login(1))
	for i := range n {
		w.copies = append(w.copies, filepath.Join(root, "copies", fmt.Sprintf("%02d", i), k.FileName()))
	}
	w.config = filepath.Join(root, "config.yaml")
	w.writeConfig(w.copies)
	return w
}

// writeConfig makes the config name these copy files' directories.
func (w *world) writeConfig(copies []string) {
	var y strings.Builder
	fmt.Fprintf(&y, "sources:\n  %s:\n    path: %s\nsinks:\n", w.kind.Name(), w.source)
	for _, c := range copies {
		fmt.Fprintf(&y, "  - source: %s\n    dir: %s\n", w.kind.Name(), filepath.Dir(c))
	}
	writeFile(w.t, w.config, []byte(y.String()))
	w.chown()
}

// runAsNobody makes the world belong to uid 65534 and its commands run as
// it. It reports false when the tests do not run as root (they then run as
// the current user, for whom permissions already count).
func (w *world) runAsNobody() bool {
	if os.Geteuid() != 0 {
		return false
	}
	if fi, err := os.Stat(filepath.Join(binDir, "mc-broker")); err != nil || fi.Mode().Perm()&0o005 != 0o005 {
		w.t.Fatalf("the built binary is not usable by others: %v", err)
	}
	w.asNobody = true
	w.chown()
	return true
}

func (w *world) chown() {
	if !w.asNobody {
		return
	}
	err := filepath.Walk(w.root, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, nobody, nobody)
	})
	if err != nil {
		w.t.Fatal(err)
	}
}

// login is the host's login at generation gen: its own tokens (all with
// FAKE in them) and an expiry that grows with gen, so a higher generation
// is newer. Claude logins keep the fixture's mcpOAuth member. Safe to call
// from any goroutine.
func (w *world) login(gen int) []byte {
	data := bytes.ReplaceAll(w.fixture, []byte("TOKEN-0001"), []byte(fmt.Sprintf("TOKEN-G%06d", gen)))
	// The first expiry is the login's (Claude's mcpOAuth has a second).
	return bytes.Replace(data, w.expiry, []byte(fmt.Sprintf("%s%d", w.expiry[:bytes.IndexByte(w.expiry, ' ')+1], w.base+int64(gen)*1000)), 1)
}

// forCopy is what a copy holds of a login: Claude's without mcpOAuth.
func (w *world) forCopy(data []byte) []byte {
	w.t.Helper()
	out, err := w.kind.ForCopy(data, credential.CopyOptions{})
	if err != nil {
		w.t.Fatal(err)
	}
	return out
}

// replace writes data to path the way Claude and Codex do: a temporary
// file in the same directory, then a rename over the file.
func (w *world) replace(path string, data []byte) {
	w.t.Helper()
	tmp := filepath.Join(filepath.Dir(path), ".test-write.tmp")
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		w.t.Fatal(err)
	}
	if w.asNobody {
		_ = os.Lchown(tmp, nobody, nobody)
	}
	if err := os.Rename(tmp, path); err != nil {
		w.t.Fatal(err)
	}
}

// storm replaces the host's login without pause, one generation after
// another, until the returned stop is called; stop returns the last
// generation written.
func (w *world) storm() (stop func() int) {
	quit, done := make(chan struct{}), make(chan struct{})
	last := 1
	go func() {
		defer close(done)
		for gen := 2; ; gen++ {
			select {
			case <-quit:
				return
			default:
			}
			// Not w.replace: t.Fatal must not be called off the test goroutine.
			tmp := w.source + ".storm"
			if os.WriteFile(tmp, w.login(gen), 0o600) != nil || os.Rename(tmp, w.source) != nil {
				return
			}
			last = gen
		}
	}()
	return func() int {
		close(quit)
		<-done
		return last
	}
}

func read(path string) []byte {
	data, _ := os.ReadFile(path)
	return data
}

// copiesHold reports whether every listed copy holds want, and names the
// first that does not.
func copiesHold(copies []string, want []byte) (bool, string) {
	for _, c := range copies {
		if !bytes.Equal(read(c), want) {
			return false, c + " does not hold it yet"
		}
	}
	return true, ""
}

// command builds a run of the binary in the world.
func (w *world) command(args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(binDir, "mc-broker"), args...)
	cmd.Env = append([]string{"HOME=" + w.home, "PATH=" + os.Getenv("PATH")}, w.env...)
	if w.asNobody {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	}
	return cmd
}

// run runs the binary to completion.
func (w *world) run(args ...string) (stdout, stderr string, code int) {
	w.t.Helper()
	cmd := w.command(args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		w.t.Fatal(err)
	}
	assertNoSecret(w.t, strings.Join(args, " ")+" stdout", out.String())
	assertNoSecret(w.t, strings.Join(args, " ")+" stderr", errb.String())
	return out.String(), errb.String(), code
}

// logBuffer collects a process's stderr; safe for concurrent use.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// logLine is one JSON log line.
type logLine map[string]any

func (l logLine) str(key string) string { s, _ := l[key].(string); return s }

// lines parses every complete JSON line so far; other lines are skipped.
func (b *logBuffer) lines() []logLine {
	var out []logLine
	sc := bufio.NewScanner(strings.NewReader(b.String()))
	for sc.Scan() {
		var l logLine
		if json.Unmarshal(sc.Bytes(), &l) == nil {
			out = append(out, l)
		}
	}
	return out
}

// count is how many log lines have message msg and every key=value in kv.
func (b *logBuffer) count(msg string, kv ...string) int {
	n := 0
next:
	for _, l := range b.lines() {
		if l.str("msg") != msg {
			continue
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if l.str(kv[i]) != kv[i+1] {
				continue next
			}
		}
		n++
	}
	return n
}

// proc is the binary running in the background.
type proc struct {
	t    *testing.T
	cmd  *exec.Cmd
	log  *logBuffer
	out  *logBuffer
	done chan struct{}
	code int
}

// start starts the binary with args; its stderr is collected as logs.
func (w *world) start(args ...string) *proc {
	w.t.Helper()
	p := &proc{t: w.t, cmd: w.command(args...), log: &logBuffer{}, out: &logBuffer{}, done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.log
	// A command run by `run` may outlive a killed mc-broker and hold its
	// output pipes: Wait must not hang the test on them.
	p.cmd.WaitDelay = 5 * time.Second
	if err := p.cmd.Start(); err != nil {
		w.t.Fatal(err)
	}
	go func() {
		err := p.cmd.Wait()
		p.code = 0
		if ee, ok := err.(*exec.ExitError); ok {
			p.code = ee.ExitCode()
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				p.code = 128 + int(ws.Signal())
			}
		}
		close(p.done)
	}()
	w.t.Cleanup(func() {
		p.kill()
		assertNoSecret(w.t, strings.Join(args, " ")+" logs", p.log.String())
		assertNoSecret(w.t, strings.Join(args, " ")+" stdout", p.out.String())
		if w.t.Failed() {
			w.t.Logf("%s logs:\n%s", strings.Join(args, " "), p.log.String())
		}
	})
	return p
}

// watch starts `mc-broker watch` on the world's config with JSON logs and
// returns once its first full pass is done and its watches are in place
// (the state file names its pid).
func (w *world) watch(extra ...string) *proc {
	w.t.Helper()
	p := w.start(append([]string{"watch", "--config", w.config, "--log-format", "json", "--log-level", "debug"}, extra...)...)
	p.waitReady(w.state)
	return p
}

func (p *proc) waitReady(stateDir string) {
	p.t.Helper()
	waitFor(p.t, 10*time.Second, "the watcher to finish its first pass", func() (bool, string) {
		select {
		case <-p.done:
			p.t.Fatalf("the watcher exited %d before it was ready:\n%s", p.code, p.log.String())
		default:
		}
		st, err := watch.ReadState(stateDir)
		if err != nil || st == nil {
			return false, fmt.Sprintf("no state file yet (%v)", err)
		}
		return st.PID == p.cmd.Process.Pid && !st.UpdatedAt.IsZero(), fmt.Sprintf("state file of pid %d", st.PID)
	})
}

func (p *proc) signal(s syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(s); err != nil {
		p.t.Fatal(err)
	}
}

// wait waits at most d for the process to exit and returns its exit code.
func (p *proc) wait(d time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
		return p.code
	case <-time.After(d):
		p.t.Fatalf("still running after %v:\n%s", d, p.log.String())
		return -1
	}
}

func (p *proc) kill() {
	select {
	case <-p.done:
	default:
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// waitFor polls cond every millisecond until it holds, and fails the test
// with cond's last word if it does not within timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(timeout)
	for {
		ok, why := cond()
		if ok {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s: %s", timeout, what, why)
		}
		time.Sleep(time.Millisecond)
	}
}

// fileID is a file's inode and mtime: a rewrite changes them, and raises an
// inotify event in every container watching the file.
func fileID(path string) string {
	fi, err := os.Stat(path)
	if err != nil {
		return "missing"
	}
	return fmt.Sprintf("%d/%d", fi.Sys().(*syscall.Stat_t).Ino, fi.ModTime().UnixNano())
}

// settled asserts that what snapshot returns does not change for d: the
// watcher does no more work once a change is handled. It is the one place
// these tests watch the clock instead of an event: "nothing happens" has no
// event to wait for.
func settled(t *testing.T, d time.Duration, what string, snapshot func() string) {
	t.Helper()
	first := snapshot()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if now := snapshot(); now != first {
			t.Fatalf("%s changed while nothing happened:\nbefore: %s\nafter:  %s", what, first, now)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// snapshot is every copy's and the source's identity, plus the number of
// writes the watcher logged.
func (w *world) snapshot(p *proc) func() string {
	return func() string {
		ids := []string{fileID(w.source)}
		for _, c := range w.copies {
			ids = append(ids, fileID(c))
		}
		return fmt.Sprintf("%v written=%d adopted=%d", ids, p.log.count("copy written"), p.log.count(adoptedMsg))
	}
}

const adoptedMsg = "took a newer login back from a copy into the host's store"

// stateOf reads the watcher's state file.
func (w *world) stateOf() *watch.State {
	w.t.Helper()
	st, err := watch.ReadState(w.state)
	if err != nil || st == nil {
		w.t.Fatalf("cannot read the watcher state: %v", err)
	}
	return st
}

// backups lists the backups of the host's login kept for the source,
// oldest first, both shelves.
func (w *world) backups() []string {
	list, _ := (&broker.Backups{Dir: filepath.Join(w.state, "backups")}).List(w.kind.Name())
	var out []string
	for _, b := range list {
		out = append(out, b.Path)
	}
	return out
}

// valid fails unless path holds a complete, valid login.
func (w *world) valid(path string) {
	w.t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		w.t.Errorf("%s: %v", path, err)
		return
	}
	if _, err := w.kind.Inspect(data); err != nil {
		w.t.Errorf("%s does not hold a valid login: %v", path, err)
	}
}
