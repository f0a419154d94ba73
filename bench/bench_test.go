package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mc-broker/mc-broker/cmd/wire"

	"github.com/mc-broker/mc-broker/broker"
	"github.com/mc-broker/mc-broker/broker/config"
)

// copyCounts are the numbers of copy directories every benchmark is run
// with: one project, a handful of worktrees, a fleet.
var copyCounts = []int{1, 10, 100}

const (
	fixture = "../testdata/fixtures/claude/credentials.valid.json"
	// fixtureExpiry is the login's expiresAt in the fixture; its first
	// occurrence is claudeAiOauth's (the second is in mcpOAuth).
	fixtureExpiry = 4102444800000
	copyFile      = ".credentials.json"
)

// env is one benchmark's temporary world: a host login and n copy
// directories under root.
type env struct {
	root   string
	home   string
	state  string // XDG_STATE_HOME for in-process syncs
	source string // the host's login file
	dirs   []string
	// before and after surround the login's expiresAt in the fixture.
	before, after []byte
	expiry        int64 // the expiresAt the source holds now
}

func newEnv(tb testing.TB, n int) *env {
	tb.Helper()
	data, err := os.ReadFile(fixture)
	if err != nil {
		tb.Fatal(err)
	}
	key := []byte(`"expiresAt": ` + strconv.FormatInt(fixtureExpiry, 10))
	i := bytes.Index(data, key)
	if i < 0 {
		tb.Fatalf("%s: no %s", fixture, key)
	}
	root := tb.TempDir()
	e := &env{
		root:   root,
		home:   filepath.Join(root, "home"),
		state:  filepath.Join(root, "state"),
		source: filepath.Join(root, "home", ".claude", copyFile),
		before: data[:i+len(`"expiresAt": `)],
		after:  data[i+len(key):],
		// A few hours ahead, as real logins are: a copy's login is taken
		// back only when it expires within what Claude ever issues.
		expiry: time.Now().Add(4 * time.Hour).UnixMilli(),
	}
	if err := os.MkdirAll(filepath.Dir(e.source), 0o700); err != nil {
		tb.Fatal(err)
	}
	e.writeSource(tb)
	for i := range n {
		d := filepath.Join(root, "copies", fmt.Sprintf("%03d", i), "claude")
		if err := os.MkdirAll(d, 0o700); err != nil {
			tb.Fatal(err)
		}
		e.dirs = append(e.dirs, d)
	}
	return e
}

func (e *env) writeSource(tb testing.TB) {
	tb.Helper()
	var buf bytes.Buffer
	buf.Write(e.before)
	buf.WriteString(strconv.FormatInt(e.expiry, 10))
	buf.Write(e.after)
	if err := os.WriteFile(e.source, buf.Bytes(), 0o600); err != nil {
		tb.Fatal(err)
	}
}

// refresh plays the host CLI refreshing its login: the source gets a later
// expiresAt, so every copy is now older than the host.
func (e *env) refresh(tb testing.TB) {
	e.expiry++
	e.writeSource(tb)
}

// config is one claude source and one directory copy per dir.
func (e *env) config() *config.Config {
	c := &config.Config{Sources: []config.Source{{Name: "claude", Kind: "claude", Path: e.source, Store: "file"}}, Trust: config.Trust{TakeBacksPerHour: 10000}}
	for _, d := range e.dirs {
		c.Sinks = append(c.Sinks, config.Sink{Source: "claude", Dir: d})
	}
	return c
}

func (e *env) broker(tb testing.TB) *broker.Broker {
	tb.Helper()
	b, err := wire.Build(e.config(), config.Env{Home: e.home, Getenv: func(k string) string {
		if k == "XDG_STATE_HOME" {
			return e.state
		}
		return ""
	}, GOOS: "linux"}, nil) // files, as on Linux, on a Mac too
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// configFile writes the same config as YAML, for the binary.
func (e *env) configFile(tb testing.TB) string {
	tb.Helper()
	var y strings.Builder
	// Benchmarks take a login back from one copy hundreds of times an hour.
	fmt.Fprintf(&y, "trust:\n  take_backs_per_hour: 10000\nsources:\n  claude:\n    path: %s\nsinks:\n", e.source)
	for _, d := range e.dirs {
		fmt.Fprintf(&y, "  - source: claude\n    dir: %s\n", d)
	}
	path := filepath.Join(e.root, "config.yaml")
	if err := os.WriteFile(path, []byte(y.String()), 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}

// identities records each copy's inode and mtime: a copy that was not
// rewritten keeps both (and raises no inotify event in a container).
func (e *env) identities(tb testing.TB) []string {
	tb.Helper()
	var ids []string
	for _, d := range e.dirs {
		fi, err := os.Stat(filepath.Join(d, copyFile))
		if err != nil {
			tb.Fatal(err)
		}
		ids = append(ids, fmt.Sprintf("%d/%d", fi.Sys().(*syscall.Stat_t).Ino, fi.ModTime().UnixNano()))
	}
	return ids
}

// checkCopies fails unless every copy holds the source's current login.
func (e *env) checkCopies(tb testing.TB) {
	tb.Helper()
	want := []byte(`"expiresAt": ` + strconv.FormatInt(e.expiry, 10))
	for _, d := range e.dirs {
		got, err := os.ReadFile(filepath.Join(d, copyFile))
		if err != nil {
			tb.Fatal(err)
		}
		if !bytes.Contains(got, want) {
			tb.Fatalf("%s does not hold the login with %s", d, want)
		}
	}
}

// checkReport returns an error unless the pass found a valid login and
// gave every one of its n copies the outcome want.
func checkReport(r *broker.Report, n int, want broker.Outcome) error {
	if len(r.Sources) != 1 {
		return fmt.Errorf("report has %d sources, want 1", len(r.Sources))
	}
	s := r.Sources[0]
	if s.State != broker.SourceValid {
		return fmt.Errorf("source %s: %s (%s)", s.Name, s.State, s.Problem)
	}
	if len(s.Copies) != n {
		return fmt.Errorf("report has %d copies, want %d", len(s.Copies), n)
	}
	for _, c := range s.Copies {
		if c.Outcome != want {
			return fmt.Errorf("%s: %s, want %s (%s)", c.Location, c.Outcome, want, c.Problem)
		}
	}
	return nil
}

// A scenario is what one benchmark measures. The benchmark runs step once
// per iteration and times only it; prepare, when set, runs untimed before
// each step; verify, when set, runs after the last one.
type scenario struct {
	prepare func(tb testing.TB)
	step    func() error
	verify  func(tb testing.TB)
}

func run(b *testing.B, sc scenario) {
	for b.Loop() {
		if sc.prepare != nil {
			b.StopTimer()
			sc.prepare(b)
			b.StartTimer()
		}
		if err := sc.step(); err != nil {
			b.Fatal(err)
		}
	}
	if sc.verify != nil {
		sc.verify(b)
	}
}

// syncScenario is Broker.Sync, built through the config package, over n
// copies that are already in sync (changed false) or that are all behind
// a login the host has just refreshed (changed true).
func syncScenario(tb testing.TB, n int, changed bool) scenario {
	e := newEnv(tb, n)
	b := e.broker(tb)
	ctx := context.Background()
	if err := checkReport(b.Sync(ctx, broker.Options{}), n, broker.Created); err != nil {
		tb.Fatal(err)
	}
	if changed {
		return scenario{
			prepare: e.refresh,
			step:    func() error { return checkReport(b.Sync(ctx, broker.Options{}), n, broker.Updated) },
			verify:  e.checkCopies,
		}
	}
	ids := e.identities(tb)
	return scenario{
		step: func() error { return checkReport(b.Sync(ctx, broker.Options{}), n, broker.Unchanged) },
		verify: func(tb testing.TB) {
			if got := e.identities(tb); strings.Join(got, " ") != strings.Join(ids, " ") {
				tb.Fatal("an unchanged sync rewrote a copy")
			}
			e.checkCopies(tb)
		},
	}
}

// The user's alternatives: one sh process copying the login into each
// directory, as a pre-run script would.
const (
	// cpLoop overwrites each copy in place with cp.
	cpLoop = `set -e; src=$1; shift; for d in "$@"; do cp "$src" "$d/.credentials.json"; done`
	// cpLoopInstallAtomic writes a temporary file and renames it over the
	// copy, so that a CLI reading the copy never sees half a file.
	cpLoopInstallAtomic = `set -e; src=$1; shift; for d in "$@"; do cp "$src" "$d/.credentials.json.tmp"; mv -f "$d/.credentials.json.tmp" "$d/.credentials.json"; done`
)

func shellScenario(tb testing.TB, n int, script string) scenario {
	e := newEnv(tb, n)
	args := append([]string{"-c", script, "sh", e.source}, e.dirs...)
	return scenario{
		step: func() error {
			out, err := exec.Command("sh", args...).CombinedOutput()
			if err != nil {
				return fmt.Errorf("sh: %v\n%s", err, out)
			}
			return nil
		},
		verify: e.checkCopies,
	}
}

// binaryScenario runs the built binary, `mc-broker sync --config FILE`,
// with HOME in the temporary directory: what a pre-run hook costs.
func binaryScenario(tb testing.TB, n int, changed bool) scenario {
	bin := mcBroker(tb)
	e := newEnv(tb, n)
	cfg := e.configFile(tb)
	syncOnce := func(want broker.Outcome) error {
		cmd := exec.Command(bin, "sync", "--config", cfg)
		cmd.Env = []string{"HOME=" + e.home, "PATH=" + os.Getenv("PATH")}
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("mc-broker sync: %v\n%s%s", err, stdout.Bytes(), stderr.Bytes())
		}
		if got := bytes.Count(stdout.Bytes(), []byte("\n  "+string(want)+" ")); got != n {
			return fmt.Errorf("mc-broker sync: %d copies %s, want %d:\n%s", got, want, n, stdout.Bytes())
		}
		return nil
	}
	if err := syncOnce(broker.Created); err != nil {
		tb.Fatal(err)
	}
	if changed {
		return scenario{
			prepare: e.refresh,
			step:    func() error { return syncOnce(broker.Updated) },
			verify:  e.checkCopies,
		}
	}
	ids := e.identities(tb)
	return scenario{
		step: func() error { return syncOnce(broker.Unchanged) },
		verify: func(tb testing.TB) {
			if got := e.identities(tb); strings.Join(got, " ") != strings.Join(ids, " ") {
				tb.Fatal("an unchanged sync rewrote a copy")
			}
		},
	}
}

func BenchmarkSync(b *testing.B) {
	for _, n := range copyCounts {
		b.Run(fmt.Sprintf("copies=%d", n), func(b *testing.B) {
			b.Run("unchanged", func(b *testing.B) { run(b, syncScenario(b, n, false)) })
			b.Run("changed", func(b *testing.B) { run(b, syncScenario(b, n, true)) })
		})
	}
}

func BenchmarkCpLoop(b *testing.B) {
	for _, n := range copyCounts {
		b.Run(fmt.Sprintf("copies=%d", n), func(b *testing.B) { run(b, shellScenario(b, n, cpLoop)) })
	}
}

func BenchmarkCpLoopInstallAtomic(b *testing.B) {
	for _, n := range copyCounts {
		b.Run(fmt.Sprintf("copies=%d", n), func(b *testing.B) { run(b, shellScenario(b, n, cpLoopInstallAtomic)) })
	}
}

func BenchmarkBinarySync(b *testing.B) {
	b.Run("copies=10", func(b *testing.B) {
		b.Run("unchanged", func(b *testing.B) { run(b, binaryScenario(b, 10, false)) })
		b.Run("changed", func(b *testing.B) { run(b, binaryScenario(b, 10, true)) })
	})
}

// BenchmarkProcessStart is the floor under the exec benchmarks: starting
// true (the smallest process), sh (every cp loop pays it once, plus one
// process per cp or mv) and mc-broker to print its version (no config, no
// files).
func BenchmarkProcessStart(b *testing.B) {
	b.Run("true", func(b *testing.B) {
		run(b, scenario{step: func() error { return exec.Command("true").Run() }})
	})
	b.Run("sh", func(b *testing.B) {
		run(b, scenario{step: func() error { return exec.Command("sh", "-c", ":").Run() }})
	})
	b.Run("mc-broker-version", func(b *testing.B) {
		bin := mcBroker(b)
		home := b.TempDir()
		run(b, scenario{step: func() error {
			cmd := exec.Command(bin, "version")
			cmd.Env = []string{"HOME=" + home}
			return cmd.Run()
		}})
	})
}

// TestScenarios runs every scenario a few times with a few copies, so that
// `go test ./...` catches a benchmark that no longer measures what it says.
func TestScenarios(t *testing.T) {
	const n, steps = 3, 3
	scenarios := []struct {
		name string
		new  func(t *testing.T) scenario
	}{
		{"sync/unchanged", func(t *testing.T) scenario { return syncScenario(t, n, false) }},
		{"sync/changed", func(t *testing.T) scenario { return syncScenario(t, n, true) }},
		{"cp-loop", func(t *testing.T) scenario { return shellScenario(t, n, cpLoop) }},
		{"cp-loop-install-atomic", func(t *testing.T) scenario { return shellScenario(t, n, cpLoopInstallAtomic) }},
		{"binary-sync/unchanged", func(t *testing.T) scenario { return binaryScenario(t, n, false) }},
		{"binary-sync/changed", func(t *testing.T) scenario { return binaryScenario(t, n, true) }},
	}
	for _, s := range scenarios {
		t.Run(s.name, func(t *testing.T) {
			if strings.HasPrefix(s.name, "binary") && testing.Short() {
				t.Skip("builds the binary")
			}
			sc := s.new(t)
			for range steps {
				if sc.prepare != nil {
					sc.prepare(t)
				}
				if err := sc.step(); err != nil {
					t.Fatal(err)
				}
			}
			if sc.verify != nil {
				sc.verify(t)
			}
		})
	}
}

// A built mc-broker binary, once per test process.
type built struct {
	once sync.Once
	path string
	err  error
}

var (
	static, dynamic built
	binDirs         []string
	binDirsMu       sync.Mutex
)

// mcBroker builds the real binary once per test process, static
// (CGO_ENABLED=0) as `make build` builds it on Linux: it is also the
// volume copies' resident agent, which only a static binary can be.
func mcBroker(tb testing.TB) string {
	tb.Helper()
	return static.build(tb, "0")
}

// mcBrokerDynamic is the binary a plain `go build` or `go install` makes
// where cgo is on: dynamically linked, so it cannot be the resident agent
// and its watcher polls volume copies (docs/VOLUMES.md).
func mcBrokerDynamic(tb testing.TB) string {
	tb.Helper()
	return dynamic.build(tb, "1")
}

func (b *built) build(tb testing.TB, cgo string) string {
	tb.Helper()
	b.once.Do(func() {
		dir, err := os.MkdirTemp("", "mc-broker-bench-")
		if err != nil {
			b.err = err
			return
		}
		binDirsMu.Lock()
		binDirs = append(binDirs, dir)
		binDirsMu.Unlock()
		b.path = filepath.Join(dir, "mc-broker")
		cmd := exec.Command("go", "build", "-o", b.path, "github.com/mc-broker/mc-broker/cmd/mc-broker")
		cmd.Env = append(os.Environ(), "CGO_ENABLED="+cgo)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("building mc-broker (CGO_ENABLED=%s): %v\n%s", cgo, err, out)
		}
	})
	if b.err != nil {
		tb.Fatal(b.err)
	}
	return b.path
}

func TestMain(m *testing.M) {
	code := m.Run()
	for _, d := range binDirs {
		os.RemoveAll(d)
	}
	os.Exit(code)
}
