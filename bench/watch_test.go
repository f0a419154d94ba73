package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mc-broker/mc-broker/broker/kinds/claude"
	"github.com/mc-broker/mc-broker/broker/testenv"

	"github.com/fsnotify/fsnotify"

	"github.com/mc-broker/mc-broker/broker/credential"
	"github.com/mc-broker/mc-broker/broker/watch"
)

// The watch benchmarks run the real binary, `mc-broker watch`, against n
// directory copies and time, from outside, how long a change takes to reach
// every copy. Each benchmark iteration is one change; the time per
// operation is the mean, and p50-ms and p99-ms are the percentiles over
// the run's iterations. `make bench` runs a fixed number of iterations
// (-benchtime Nx) so that p99 means something.

// watchTimeout bounds the wait for one change to arrive everywhere.
const watchTimeout = 10 * time.Second

// startWatch starts `mc-broker watch` on e's config and returns once its
// first pass is done (the state file names its pid).
func startWatch(tb testing.TB, e *env) *exec.Cmd {
	tb.Helper()
	cmd, _ := startWatchWith(tb, mcBroker(tb), e, e.configFile(tb))
	return cmd
}

// startWatchWith is startWatch with another binary, config file and extra
// arguments and environment ("KEY=VALUE" among args goes to the
// environment); it also returns the watcher's log (stderr).
func startWatchWith(tb testing.TB, bin string, e *env, cfg string, args ...string) (*exec.Cmd, *testenv.Buffer) {
	tb.Helper()
	cmd := exec.Command(bin, "watch", "--config", cfg, "--log-format", "json")
	cmd.Env = []string{"HOME=" + e.home, "PATH=" + os.Getenv("PATH"), "XDG_STATE_HOME=" + e.state}
	for _, a := range args {
		if strings.HasPrefix(a, "-") {
			cmd.Args = append(cmd.Args, a)
		} else {
			cmd.Env = append(cmd.Env, a)
		}
	}
	logs := &testenv.Buffer{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	tb.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	deadline := time.Now().Add(watchTimeout)
	for {
		st, _ := watch.ReadState(filepath.Join(e.state, "mc-broker"))
		if st != nil && st.PID == cmd.Process.Pid {
			return cmd, logs
		}
		select {
		case <-exited:
			tb.Fatalf("mc-broker watch exited early:\n%s", logs.String())
		default:
		}
		if time.Now().After(deadline) {
			tb.Fatal("mc-broker watch did not finish its first pass")
		}
		time.Sleep(time.Millisecond)
	}
}

// arrivals watches the copies' directories with inotify, so that the
// benchmark learns that a copy changed without polling it.
type arrivals struct {
	fsw *fsnotify.Watcher
	// timeout bounds one wait; watchTimeout when zero.
	timeout time.Duration
}

func watchDirs(tb testing.TB, dirs ...string) *arrivals {
	tb.Helper()
	fsw, err := fsnotify.NewBufferedWatcher(65536)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { fsw.Close() })
	for _, d := range dirs {
		if err := fsw.Add(d); err != nil {
			tb.Fatal(err)
		}
	}
	return &arrivals{fsw: fsw}
}

// wait returns once every file contains want.
func (a *arrivals) wait(files []string, want []byte) error {
	pending := map[string]bool{}
	for _, f := range files {
		if data, _ := os.ReadFile(f); !bytes.Contains(data, want) {
			pending[f] = true
		}
	}
	limit := a.timeout
	if limit == 0 {
		limit = watchTimeout
	}
	timeout := time.NewTimer(limit)
	defer timeout.Stop()
	for len(pending) > 0 {
		select {
		case ev := <-a.fsw.Events:
			p := filepath.Clean(ev.Name)
			if !pending[p] {
				continue
			}
			if data, _ := os.ReadFile(p); bytes.Contains(data, want) {
				delete(pending, p)
			}
		case err := <-a.fsw.Errors:
			return err
		case <-timeout.C:
			return fmt.Errorf("%d of %d files still without %s after %v", len(pending), len(files), want, limit)
		}
	}
	return nil
}

// drain drops the events of the previous change.
func (a *arrivals) drain() {
	for {
		select {
		case <-a.fsw.Events:
		default:
			return
		}
	}
}

func (e *env) copyFiles() []string {
	var out []string
	for _, d := range e.dirs {
		out = append(out, filepath.Join(d, copyFile))
	}
	return out
}

// loginBytes is the host's login with expiresAt exp.
func (e *env) loginBytes(exp int64) []byte {
	return slices.Concat(e.before, []byte(strconv.FormatInt(exp, 10)), e.after)
}

func expiryKey(exp int64) []byte { return []byte(`"expiresAt": ` + strconv.FormatInt(exp, 10)) }

// replaceFile writes data next to path and renames it over path, as Claude
// Code and Codex write their logins.
func replaceFile(path string, data []byte) error {
	tmp := filepath.Join(filepath.Dir(path), ".bench.tmp")
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// latencies collects one duration per change and reports percentiles.
type latencies []time.Duration

func (l latencies) percentile(p float64) time.Duration {
	s := slices.Clone(l)
	slices.Sort(s)
	i := int(float64(len(s))*p+0.999999) - 1
	return s[max(0, min(i, len(s)-1))]
}

func (l latencies) report(b *testing.B) {
	if len(l) == 0 {
		return
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(l.percentile(0.50)), "p50-ms")
	b.ReportMetric(ms(l.percentile(0.99)), "p99-ms")
	b.ReportMetric(ms(slices.Max(l)), "max-ms")
}

// propagation is one host change by rename, timed until every copy holds
// it. With poll set, a 1-second polling copy loop (what a user would write
// instead of watch) does the copying, and each change comes at a random
// moment of its cycle.
type propagation struct {
	e    *env
	in   *arrivals
	poll bool
}

func newPropagation(tb testing.TB, n int, poll bool) *propagation {
	e := newEnv(tb, n)
	if poll {
		startPollLoop(tb, e)
	} else {
		startWatch(tb, e)
	}
	p := &propagation{e: e, in: watchDirs(tb, e.dirs...), poll: poll}
	if err := p.in.wait(e.copyFiles(), expiryKey(e.expiry)); err != nil {
		tb.Fatal(err)
	}
	return p
}

func (p *propagation) step() (time.Duration, error) {
	if p.poll {
		time.Sleep(rand.N(time.Second))
	}
	p.in.drain()
	p.e.expiry++
	start := time.Now()
	if err := replaceFile(p.e.source, p.e.loginBytes(p.e.expiry)); err != nil {
		return 0, err
	}
	err := p.in.wait(p.e.copyFiles(), expiryKey(p.e.expiry))
	return time.Since(start), err
}

// pollLoop is the loop a user writes instead of a watcher: copy the login
// into every directory once a second.
const pollLoop = `src=$1; shift; while sleep 1; do for d in "$@"; do cp "$src" "$d/.credentials.json"; done; done`

func startPollLoop(tb testing.TB, e *env) *exec.Cmd {
	tb.Helper()
	cmd := exec.Command("sh", append([]string{"-c", pollLoop, "sh", e.source}, e.dirs...)...)
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd
}

// adoption is a container's CLI refreshing its login in one copy, timed
// until the host's file and every other copy hold it.
type adoption struct {
	e    *env
	in   *arrivals
	next int
}

func newAdoption(tb testing.TB, n int) *adoption {
	e := newEnv(tb, n)
	startWatch(tb, e)
	a := &adoption{e: e, in: watchDirs(tb, append([]string{filepath.Dir(e.source)}, e.dirs...)...)}
	if err := a.in.wait(e.copyFiles(), expiryKey(e.expiry)); err != nil {
		tb.Fatal(err)
	}
	return a
}

func (a *adoption) step() (time.Duration, error) {
	a.in.drain()
	a.e.expiry++
	// What a container's Claude writes: its copy, without mcpOAuth.
	login, err := claude.Kind.ForCopy(a.e.loginBytes(a.e.expiry), credential.CopyOptions{})
	if err != nil {
		return 0, err
	}
	files := append([]string{a.e.source}, a.e.copyFiles()...)
	from := a.e.copyFiles()[a.next%len(a.e.dirs)]
	a.next++
	start := time.Now()
	if err := replaceFile(from, login); err != nil {
		return 0, err
	}
	err = a.in.wait(files, expiryKey(a.e.expiry))
	return time.Since(start), err
}

func measure(b *testing.B, step func() (time.Duration, error)) {
	var l latencies
	for b.Loop() {
		d, err := step()
		if err != nil {
			b.Fatal(err)
		}
		l = append(l, d)
	}
	l.report(b)
}

// BenchmarkWatchPropagation: the host's login replaced by rename, until
// every directory copy holds it, under `mc-broker watch`.
func BenchmarkWatchPropagation(b *testing.B) {
	for _, n := range copyCounts {
		b.Run(fmt.Sprintf("copies=%d", n), func(b *testing.B) {
			measure(b, newPropagation(b, n, false).step)
		})
	}
}

// BenchmarkFloorPropagation is the floor under BenchmarkWatchPropagation,
// measured the same way: no watcher, no reading, no deciding; the
// benchmark itself writes every copy the way mc-broker does (temporary
// file, fsync, rename, directory fsync), all at once, as soon as the host
// changed. What watch adds on top is its own cost. lock=claude also takes
// and drops Claude Code's mkdir lock around each rename, as mc-broker must
// (a Claude in the container writes under it): the floor of a lost-update-
// free write.
func BenchmarkFloorPropagation(b *testing.B) {
	for _, lock := range []string{"none", "claude"} {
		for _, n := range copyCounts {
			b.Run(fmt.Sprintf("lock=%s/copies=%d", lock, n), func(b *testing.B) {
				floorPropagation(b, n, lock == "claude")
			})
		}
	}
}

func floorPropagation(b *testing.B, n int, lock bool) {
	e := newEnv(b, n)
	in := watchDirs(b, e.dirs...)
	measure(b, func() (time.Duration, error) {
		in.drain()
		e.expiry++
		data := e.loginBytes(e.expiry)
		want, err := claude.Kind.ForCopy(data, credential.CopyOptions{})
		if err != nil {
			return 0, err
		}
		start := time.Now()
		if err := replaceFile(e.source, data); err != nil {
			return 0, err
		}
		var wg sync.WaitGroup
		errs := make(chan error, len(e.dirs))
		for _, d := range e.dirs {
			wg.Go(func() { errs <- writeDurable(d, copyFile, want, lock) })
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				return 0, err
			}
		}
		err = in.wait(e.copyFiles(), expiryKey(e.expiry))
		return time.Since(start), err
	})
}

// writeDurable replaces dir/name as mc-broker does: temporary file in the
// same directory, fsync, rename (under Claude's .storage-write.lock when
// lock is set), fsync of the directory.
func writeDurable(dir, name string, data []byte, lock bool) error {
	f, err := os.CreateTemp(dir, ".floor-*.tmp")
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if lock {
		l := filepath.Join(dir, ".storage-write.lock")
		if err := os.Mkdir(l, 0o700); err != nil {
			return err
		}
		defer os.Remove(l)
	}
	if err := os.Rename(f.Name(), filepath.Join(dir, name)); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// BenchmarkPollLoopPropagation: the same, under a 1-second cp loop.
func BenchmarkPollLoopPropagation(b *testing.B) {
	for _, n := range copyCounts {
		b.Run(fmt.Sprintf("copies=%d", n), func(b *testing.B) {
			measure(b, newPropagation(b, n, true).step)
		})
	}
}

// BenchmarkWatchAdoption: a newer login written into one copy, until the
// host's file and every other copy hold it.
func BenchmarkWatchAdoption(b *testing.B) {
	for _, n := range []int{1, 10} {
		b.Run(fmt.Sprintf("copies=%d", n), func(b *testing.B) {
			measure(b, newAdoption(b, n).step)
		})
	}
}

// idleWindow is how long the idle benchmark watches; MC_BROKER_BENCH_IDLE
// (a Go duration) overrides it.
func idleWindow() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("MC_BROKER_BENCH_IDLE")); err == nil && d > 0 {
		return d
	}
	return 60 * time.Second
}

// procCPU is the CPU time /proc/<pid>/stat reports: utime+stime, plus the
// waited-for children's cutime+cstime when children is set (the cp
// processes of a shell loop).
func procCPU(pid int, children bool) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which is in parentheses and may hold
	// spaces: state is field 3, utime 14, stime 15, cutime 16, cstime 17.
	f := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+2:]))
	sum := 0
	last := 15
	if children {
		last = 17
	}
	for i := 14; i <= last; i++ {
		v, err := strconv.Atoi(f[i-3])
		if err != nil {
			return 0, err
		}
		sum += v
	}
	// USER_HZ: /proc reports clock ticks of 1/100 s on Linux.
	return time.Duration(sum) * 10 * time.Millisecond, nil
}

// peakRSS is VmHWM from /proc/<pid>/status, in bytes.
func peakRSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
}

// idle runs `mc-broker watch` over 10 copies and, beside it, the 1-second
// cp loop over 10 other copies, for window with nothing changing, and
// returns each one's CPU time as a share of one core and the watcher's
// peak RSS.
func idle(tb testing.TB, window time.Duration) (watchCPU, loopCPU float64, rss int64) {
	w := startWatch(tb, newEnv(tb, 10))
	loop := startPollLoop(tb, newEnv(tb, 10))
	// The watcher's start-up (first pass, building its watches) is not idle.
	w0, err := procCPU(w.Process.Pid, false)
	if err != nil {
		tb.Fatal(err)
	}
	l0, err := procCPU(loop.Process.Pid, true)
	if err != nil {
		tb.Fatal(err)
	}
	time.Sleep(window) // the measurement itself: nothing happens meanwhile
	w1, err := procCPU(w.Process.Pid, false)
	if err != nil {
		tb.Fatal(err)
	}
	l1, err := procCPU(loop.Process.Pid, true)
	if err != nil {
		tb.Fatal(err)
	}
	rss, err = peakRSS(w.Process.Pid)
	if err != nil {
		tb.Fatal(err)
	}
	return float64(w1-w0) / float64(window) * 100, float64(l1-l0) / float64(window) * 100, rss
}

// BenchmarkWatchIdle: CPU and peak memory of a watcher with nothing to
// do, next to the 1-second cp loop. One iteration takes idleWindow (60 s);
// run it with -benchtime 1x.
func BenchmarkWatchIdle(b *testing.B) {
	for b.Loop() {
		watchCPU, loopCPU, rss := idle(b, idleWindow())
		b.ReportMetric(watchCPU, "watch-cpu-%")
		b.ReportMetric(loopCPU, "cp-loop-cpu-%")
		b.ReportMetric(float64(rss)/(1<<20), "watch-peak-rss-MB")
	}
}

// TestWatchScenarios runs each watch benchmark's steps a few times over a
// few copies, so that `go test ./...` catches a benchmark that no longer
// measures what it says. The polling loop and the 60 s idle run are left
// to `make bench`.
func TestWatchScenarios(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	steps := map[string]func() (time.Duration, error){
		"propagation": newPropagation(t, 3, false).step,
		"adoption":    newAdoption(t, 3).step,
	}
	for name, step := range steps {
		for range 3 {
			d, err := step()
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			t.Logf("%s: %v", name, d)
		}
	}
	watchCPU, _, rss := idle(t, 2*time.Second)
	t.Logf("idle for 2 s: watch %.3f%% of a core, peak RSS %.1f MB", watchCPU, float64(rss)/(1<<20))
}
