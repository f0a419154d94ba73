package watch

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mc-broker/mc-broker/cmd/wire"

	"github.com/mc-broker/mc-broker/broker/kinds/claude"

	"github.com/mc-broker/mc-broker/broker"
	"github.com/mc-broker/mc-broker/broker/config"
	"github.com/mc-broker/mc-broker/broker/credential"
	"github.com/mc-broker/mc-broker/broker/testenv"
	"github.com/mc-broker/mc-broker/broker/watch/lockmirror"
	"github.com/mc-broker/mc-broker/sinks/dir"
)

// mirrorLogin is a Claude login whose tokens carry n, so that a leak of
// any of them into logs or state is easy to find.
func mirrorLogin(n int, expiresAt int64) []byte {
	return fmt.Appendf(nil, `{"claudeAiOauth":{"accessToken":"sk-ant-oat01-SECRET-ACCESS-%04d","refreshToken":"sk-ant-ort01-SECRET-REFRESH-%04d","expiresAt":%d,"scopes":["user:inference"],"subscriptionType":"max"}}`, n, n, expiresAt)
}

// hoursAhead is an expiresAt h hours from now: a login is taken back from
// a copy only when it expires within what Claude ever issues.
func hoursAhead(h int) int64 { return time.Now().Add(time.Duration(h) * time.Hour).UnixMilli() }

// mirrorWorld is a host config dir and n copy dirs with one watcher.
type mirrorWorld struct {
	host   string
	copies []string
	state  string
	log    *testenv.Buffer
	stop   func()
}

func startMirrorWorld(t *testing.T, n int, o Options) *mirrorWorld {
	t.Helper()
	root := t.TempDir()
	w := &mirrorWorld{host: filepath.Join(root, "home/.claude"), state: filepath.Join(root, "state"), log: &testenv.Buffer{}}
	if err := os.MkdirAll(w.host, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(w.host, ".credentials.json"), mirrorLogin(1, hoursAhead(4)), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := &config.Config{Sources: []config.Source{{Name: "claude", Kind: "claude", Path: filepath.Join(w.host, ".credentials.json"), Store: "auto"}}}
	for i := 0; i < n; i++ {
		d := filepath.Join(root, "copies", fmt.Sprint(i))
		// The copy directories exist before the watcher starts, as they do
		// once compose has created them.
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		w.copies = append(w.copies, d)
		cfg.Sinks = append(cfg.Sinks, config.Sink{Source: "claude", Dir: d})
	}
	env := config.Env{Home: filepath.Join(root, "home"), Getenv: func(k string) string {
		if k == "XDG_STATE_HOME" {
			return w.state
		}
		return ""
	}}
	ready := make(chan struct{})
	o.Load = func() (*broker.Broker, error) { return wire.Build(cfg, env, nil) }
	o.StateDir = env.StateDir()
	o.Log = slog.New(slog.NewTextHandler(w.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	o.Ready = ready
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, o) }()
	w.stop = func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("watch: %v", err)
		}
	}
	t.Cleanup(func() {
		if ctx.Err() == nil {
			w.stop()
		}
	})
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("watch ended: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("watch not ready after 10s")
	}
	return w
}

func (w *mirrorWorld) dirs() []string { return append([]string{w.host}, w.copies...) }

// waitFor polls cond until it holds or 5 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func lockIn(dir string) bool {
	_, err := os.Lstat(filepath.Join(dir, lockmirror.LockName))
	return err == nil
}

// writeLogin writes like Claude Code: temp file, then rename.
func writeLogin(t *testing.T, dir string, data []byte) {
	t.Helper()
	tmp := filepath.Join(dir, ".credentials.json.tmp")
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, ".credentials.json")); err != nil {
		t.Fatal(err)
	}
}

func TestWatchMirrorsARefreshLockAndReleasesItAfterFanOut(t *testing.T) {
	w := startMirrorWorld(t, 3, Options{})
	from := w.copies[1]
	if err := os.Mkdir(filepath.Join(from, lockmirror.LockName), 0o755); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the lock is mirrored into every other directory", func() bool {
		for _, d := range w.dirs() {
			if !lockIn(d) {
				return false
			}
		}
		return true
	})

	// The holder refreshes, writes the new login, releases its lock.
	fresh := mirrorLogin(2, hoursAhead(8))
	writeLogin(t, from, fresh)
	if err := os.Remove(filepath.Join(from, lockmirror.LockName)); err != nil {
		t.Fatal(err)
	}
	// Wherever a mirror is gone, the new login must already be there: a
	// Claude Code waiting on the mirror re-reads its login as soon as it
	// can take the lock.
	for _, d := range w.dirs() {
		if d == from {
			continue
		}
		waitFor(t, "the mirror in "+d+" is removed", func() bool { return !lockIn(d) })
		got, err := os.ReadFile(filepath.Join(d, ".credentials.json"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(got, []byte("SECRET-ACCESS-0002")) {
			t.Errorf("%s: mirror removed before the new login arrived", d)
		}
		if _, err := os.Lstat(filepath.Join(d, lockmirror.OwnerName)); err == nil {
			t.Errorf("%s: owner file left behind", d)
		}
	}

	w.stop()
	st, err := ReadState(w.state + "/mc-broker")
	if err != nil || st == nil || st.LockMirror == nil {
		t.Fatalf("state: %+v, %v", st, err)
	}
	if st.LockMirror.Mirrored != 3 || st.LockMirror.Directories != 4 || st.LockMirror.Races != 0 {
		t.Errorf("lock mirror state %+v, want 3 mirrored across 4 directories, no race", *st.LockMirror)
	}
	stateFile, _ := os.ReadFile(filepath.Join(w.state, "mc-broker", StateFile))
	for _, out := range []string{w.log.String(), string(stateFile)} {
		if strings.Contains(out, "SECRET") {
			t.Errorf("a token leaked:\n%s", out)
		}
	}
}

func TestWatchMirrorBoundAndStop(t *testing.T) {
	w := startMirrorWorld(t, 2, Options{LockMirrorBound: 300 * time.Millisecond})
	// A holder that dies with its lock held: the mirrors go at the bound.
	if err := os.Mkdir(filepath.Join(w.host, lockmirror.LockName), 0o755); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "mirrored", func() bool { return lockIn(w.copies[0]) && lockIn(w.copies[1]) })
	start := time.Now()
	waitFor(t, "mirrors removed at the bound", func() bool { return !lockIn(w.copies[0]) && !lockIn(w.copies[1]) })
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("mirrors held %v, bound 300ms", took)
	}
	if !lockIn(w.host) {
		t.Error("the original lock was removed; it is not mc-broker's")
	}
	if err := os.Remove(filepath.Join(w.host, lockmirror.LockName)); err != nil {
		t.Fatal(err)
	}

	// Stopping the watcher takes its mirrors down with it.
	if err := os.Mkdir(filepath.Join(w.copies[0], lockmirror.LockName), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { t.Log(w.log.String()) })
	waitFor(t, "mirrored", func() bool { return lockIn(w.host) && lockIn(w.copies[1]) })
	w.stop()
	if lockIn(w.host) || lockIn(w.copies[1]) {
		t.Error("mirrors left behind after the watcher stopped")
	}
	if !lockIn(w.copies[0]) {
		t.Error("the original lock was removed on stop")
	}
	st, _ := ReadState(filepath.Join(w.state, "mc-broker"))
	if st == nil || st.LockMirror == nil || st.LockMirror.Expired != 1 {
		t.Errorf("state %+v, want one round expired at the bound", st)
	}
}

func TestWatchWithoutMirroring(t *testing.T) {
	w := startMirrorWorld(t, 2, Options{NoLockMirror: true})
	if err := os.Mkdir(filepath.Join(w.copies[0], lockmirror.LockName), 0o755); err != nil {
		t.Fatal(err)
	}
	// Something the watcher does see after the lock: a new login.
	writeLogin(t, w.copies[0], mirrorLogin(2, hoursAhead(8)))
	waitFor(t, "fan-out", func() bool {
		got, _ := os.ReadFile(filepath.Join(w.copies[1], ".credentials.json"))
		return bytes.Contains(got, []byte("SECRET-ACCESS-0002"))
	})
	if lockIn(w.host) || lockIn(w.copies[1]) {
		t.Error("lock mirrored with mirroring off")
	}
}

// keychainLikeSource is a Claude source whose login is not in its config
// directory (the macOS Keychain): the watcher watches another file for it,
// and its CLI takes the refresh lock in RefreshLockDir.
type keychainLikeSource struct {
	configDir, keychainDB string
}

func (s keychainLikeSource) Name() string          { return "claude" }
func (s keychainLikeSource) Kind() credential.Kind { return claude.Kind }
func (s keychainLikeSource) Location() string      { return "Keychain item" }
func (s keychainLikeSource) Read(context.Context) ([]byte, error) {
	return mirrorLogin(1, hoursAhead(4)), nil
}
func (s keychainLikeSource) WatchedFiles() []string  { return []string{s.keychainDB} }
func (s keychainLikeSource) RefreshLockDir() string  { return s.configDir }
func (s keychainLikeSource) MirrorRefreshLock() bool { return true }

func TestWatchMirrorsIntoAKeychainSourcesConfigDirNotTheKeychains(t *testing.T) {
	root := t.TempDir()
	src := keychainLikeSource{configDir: filepath.Join(root, "home/.claude"), keychainDB: filepath.Join(root, "home/Library/Keychains/login.keychain-db")}
	copyDir := filepath.Join(root, "copies/0")
	for _, d := range []string{src.configDir, filepath.Dir(src.keychainDB), copyDir} {
		os.MkdirAll(d, 0o700)
	}
	os.WriteFile(src.keychainDB, []byte("db"), 0o600)
	b := &broker.Broker{
		Sources: []broker.Source{src},
		Copies: []broker.Copy{{Source: "claude", Sink: dir.New(dir.Options{
			Dir: copyDir, FileName: ".credentials.json", LockDir: filepath.Join(root, "locks")})}},
	}
	ready := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{Load: func() (*broker.Broker, error) { return b, nil }, StateDir: filepath.Join(root, "state"), Ready: ready})
	}()
	defer func() { cancel(); <-done }()
	<-ready

	// A container's Claude takes the lock in its copy directory: the host's
	// Claude must see it in its config directory.
	if err := os.Mkdir(filepath.Join(copyDir, lockmirror.LockName), 0o700); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the lock in the host's config directory", func() bool { return lockIn(src.configDir) })
	if lockIn(filepath.Dir(src.keychainDB)) {
		t.Fatal("a refresh lock was created in the Keychain's directory")
	}
	os.Remove(filepath.Join(copyDir, lockmirror.LockName))
	waitFor(t, "the mirror to be removed", func() bool { return !lockIn(src.configDir) })
}
