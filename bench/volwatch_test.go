package bench

import (
	"context"
	"debug/elf"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/mc-broker/mc-broker/broker/credential"
	"github.com/mc-broker/mc-broker/broker/kinds/claude"
	"github.com/mc-broker/mc-broker/broker/testenv"
	"github.com/mc-broker/mc-broker/sinks/volume"
	"github.com/mc-broker/mc-broker/sinks/volume/volumetest"
)

// The volume watch benchmarks run the real binary, `mc-broker watch`,
// against N Docker named volume copies and time, from outside, how long a
// change takes to reach every copy, as the directory watch benchmarks do.
// The benchmark sees into each volume where the engine keeps it on this
// machine (`docker volume inspect`'s Mountpoint, a directory under
// /var/lib/docker/volumes, readable by root: the tests and CI run as root)
// and watches that directory with inotify: no polling, no container. A
// write the agent makes inside the volume, or a container's, is a rename
// in that very directory.

// volumeWatchCounts are the volume copies: one CLI, all three.
var volumeWatchCounts = []int{1, 3}

// volWatch is a host login, N volume copies and a watcher over them.
type volWatch struct {
	e     *env
	eng   *volumetest.Engine
	vols  []string
	files []string // each volume's login file, through its Mountpoint
	in    *arrivals
	cmd   *exec.Cmd
	logs  *testenv.Buffer
	next  int
	// poll is set when the watcher has no agent: copies are polled.
	poll bool
}

// volWatchMode is how the copies are kept: by mc-broker watch with its
// resident agent, by mc-broker watch without one (a dynamically linked
// build, which polls every volPollInterval), or by the user's loop of docker
// run helpers.
type volWatchMode int

const (
	withAgent volWatchMode = iota
	withoutAgent
	dockerRunLoop
)

// volPollInterval is --poll-interval for the watcher without an agent; the
// default is 30 s.
const volPollInterval = time.Second

// volumeCfg is e's login and one volume copy per vol, as YAML.
func volumeCfg(tb testing.TB, e *env, vols []string) string {
	tb.Helper()
	var y strings.Builder
	// A copy's login is taken back hundreds of times an hour here.
	fmt.Fprintf(&y, "trust:\n  take_backs_per_hour: 10000\nsources:\n  claude:\n    path: %s\nsinks:\n", e.source)
	for _, v := range vols {
		fmt.Fprintf(&y, "  - source: claude\n    volume: %s\n", v)
	}
	path := filepath.Join(e.root, "config.yaml")
	if err := os.WriteFile(path, []byte(y.String()), 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}

func newVolWatch(tb testing.TB, n int, mode volWatchMode) *volWatch {
	tb.Helper()
	eng := volumetest.Docker(tb)
	w := &volWatch{e: newEnv(tb, 0), eng: eng, poll: mode != withAgent}
	for range n {
		w.vols = append(w.vols, eng.UniqueVolume(tb))
	}
	switch mode {
	case withAgent:
		w.cmd, w.logs = startWatchWith(tb, mcBroker(tb), w.e, volumeCfg(tb, w.e, w.vols), eng.Env())
	case withoutAgent:
		bin := mcBrokerDynamic(tb)
		if err := staticELF(bin); err == nil {
			tb.Fatalf("%s is static: it would run the agent; the poll fallback needs a dynamic build (cgo on)", bin)
		}
		w.cmd, w.logs = startWatchWith(tb, bin, w.e, volumeCfg(tb, w.e, w.vols), eng.Env(), "--poll-interval="+volPollInterval.String())
	case dockerRunLoop:
		// The volumes exist before the loop's first run, as a user's would.
		for _, v := range w.vols {
			if out, err := exec.Command("docker", "-H", eng.Host, "volume", "create", v).CombinedOutput(); err != nil {
				tb.Fatalf("docker volume create: %v\n%s", err, out)
			}
		}
		startDockerRunLoop(tb, eng.Host, w.e.source, w.vols)
	}
	var dirs []string
	for _, v := range w.vols {
		d := mountpoint(tb, eng, v)
		dirs = append(dirs, d)
		w.files = append(w.files, filepath.Join(d, copyFile))
	}
	w.in = watchDirs(tb, append([]string{filepath.Dir(w.e.source)}, dirs...)...)
	if err := w.in.wait(w.files, expiryKey(w.e.expiry)); err != nil {
		tb.Fatal(err)
	}
	switch mode {
	case withAgent:
		w.waitAgent(tb)
		// One untimed change first, so that the timed steps measure a
		// running watcher. It must arrive: the first change after the
		// agent started once reached no volume until the next change (a
		// read the agent's start asked for took the place of the waiting
		// write; broker/watch's TestWatchAPushDuringAWaitingWriteDoesNotCancelIt).
		d, err := w.propagate()
		if err != nil {
			tb.Fatalf("the first change after the agent started did not arrive: %v; the watcher's log:\n%s", err, w.logs.String())
		}
		tb.Logf("the first change after the agent started reached all %d volumes in %v", n, d.Round(time.Millisecond))
	case withoutAgent:
		if !strings.Contains(w.logs.String(), "no resident agent") {
			tb.Fatalf("the watcher without an agent binary did not say it polls:\n%s", w.logs.String())
		}
		if ids, _ := w.agents(tb); len(ids) != 0 {
			tb.Fatalf("an agent runs (%v) for the watcher without an agent binary", ids)
		}
	}
	return w
}

// mountpoint is the directory where the engine keeps vol on this machine.
// The first pass (or `docker volume create`) has made it.
func mountpoint(tb testing.TB, eng *volumetest.Engine, vol string) string {
	tb.Helper()
	var res client.VolumeInspectResult
	var err error
	for deadline := time.Now().Add(watchTimeout); ; time.Sleep(10 * time.Millisecond) {
		if res, err = eng.Client().VolumeInspect(context.Background(), vol, client.VolumeInspectOptions{}); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		tb.Fatal(err)
	}
	d := res.Volume.Mountpoint
	if _, err := os.Stat(d); err != nil {
		tb.Fatalf("volume %s's Mountpoint is not on this machine (%v): the benchmark must run beside the engine, as root", vol, err)
	}
	return d
}

// agents lists the running resident agents of this watcher (by its pid
// label) and the volumes none of them mounts.
func (w *volWatch) agents(tb testing.TB) (ids, unserved []string) {
	tb.Helper()
	list, err := w.eng.Client().ContainerList(context.Background(), client.ContainerListOptions{
		Filters: make(client.Filters).Add("label", volume.LabelAgent+"=true").Add("label", volume.LabelPID+"="+strconv.Itoa(w.cmd.Process.Pid)),
	})
	if err != nil {
		tb.Fatal(err)
	}
	var mounted []string
	for _, c := range list.Items {
		ids = append(ids, c.ID[:12])
		mounted = append(mounted, strings.Split(c.Labels[volume.LabelVolume], ",")...)
	}
	for _, v := range w.vols {
		if !slices.Contains(mounted, v) {
			unserved = append(unserved, v)
		}
	}
	return ids, unserved
}

// waitAgent returns once the watcher's agents (one per volume) run for
// every volume, and fails the benchmark if the watcher fell back to
// polling.
func (w *volWatch) waitAgent(tb testing.TB) {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, unserved := w.agents(tb)
		if len(unserved) == 0 {
			break
		}
		if time.Now().After(deadline) {
			tb.Fatalf("no resident agent runs for %v after 30 s; the watcher's log:\n%s", unserved, w.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	w.checkAgent(tb)
}

// checkAgent fails if the watcher said it polls a copy.
func (w *volWatch) checkAgent(tb testing.TB) {
	tb.Helper()
	if l := w.logs.String(); strings.Contains(l, "polled meanwhile") || strings.Contains(l, "no resident agent") {
		tb.Fatalf("the watcher fell back to polling:\n%s", l)
	}
}

// propagate is one host change by rename, timed until every volume holds
// it. Under polling ways each change comes at a random moment of the
// cycle.
func (w *volWatch) propagate() (time.Duration, error) {
	if w.poll {
		time.Sleep(rand.N(volPollInterval))
	}
	w.in.drain()
	w.e.expiry++
	start := time.Now()
	if err := replaceFile(w.e.source, w.e.loginBytes(w.e.expiry)); err != nil {
		return 0, err
	}
	err := w.in.wait(w.files, expiryKey(w.e.expiry))
	return time.Since(start), err
}

// adopt is a container's CLI refreshing its login: a newer login, as a
// copy holds it (no mcpOAuth), renamed into one volume (a different one
// each time) through its Mountpoint, as root: the same rename in the same
// directory a CLI in a container makes. Timed until the host's file and
// every other volume hold it.
func (w *volWatch) adopt() (time.Duration, error) {
	if w.poll {
		time.Sleep(rand.N(volPollInterval))
	}
	w.in.drain()
	w.e.expiry++
	login, err := claude.Kind.ForCopy(w.e.loginBytes(w.e.expiry), credential.CopyOptions{})
	if err != nil {
		return 0, err
	}
	from := w.files[w.next%len(w.files)]
	w.next++
	start := time.Now()
	if err := replaceFile(from, login); err != nil {
		return 0, err
	}
	err = w.in.wait(append([]string{w.e.source}, w.files...), expiryKey(w.e.expiry))
	return time.Since(start), err
}

// measureVolumes is measure, counting with the engine's events the
// helper containers made for the volumes meanwhile: with the agent, none
// (a write through a helper means the watcher fell back).
func (w *volWatch) measure(b *testing.B, step func() (time.Duration, error)) {
	ev := volumetest.Events(b, w.eng.Engine, w.vols, func() { measure(b, step) })
	if !w.poll {
		if ev["create"] != 0 {
			b.Fatalf("%d helper containers made while timing: the watcher did not go through its agent", ev["create"])
		}
		w.checkAgent(b)
	}
	b.ReportMetric(float64(ev["create"])/float64(b.N), "containers/op")
}

// dockerRunLoopScript is the loop a user writes instead of a watcher:
// every second, one docker run per volume copying the login in.
const dockerRunLoopScript = `host=$1; src=$2; img=$3; shift 3; while sleep 1; do for v in "$@"; do docker -H "$host" run --rm -i -v "$v:/d" "$img" sh -c 'cat > /d/.credentials.json' < "$src"; done; done`

func startDockerRunLoop(tb testing.TB, host, src string, vols []string) {
	tb.Helper()
	cmd := exec.Command("sh", append([]string{"-c", dockerRunLoopScript, "sh", host, src, volumetest.Image}, vols...)...)
	// Its own process group: the docker run it may be in is ended with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
}

// staticELF is nil when bin is statically linked.
func staticELF(bin string) error {
	f, err := elf.Open(bin)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked", bin)
		}
	}
	return nil
}

// benchVolWatch times step, a volWatch's propagate or adopt, with each
// of volumeWatchCounts volume copies kept in mode. A watcher's steps go
// through w.measure, which also counts the helper containers; the docker
// run loop's containers are its own way of working, so its steps are
// only timed.
func benchVolWatch(b *testing.B, mode volWatchMode, step func(*volWatch) (time.Duration, error)) {
	for _, n := range volumeWatchCounts {
		b.Run(fmt.Sprintf("copies=%d", n), func(b *testing.B) {
			w := newVolWatch(b, n, mode)
			timed := func() (time.Duration, error) { return step(w) }
			if mode == dockerRunLoop {
				measure(b, timed)
				return
			}
			w.measure(b, timed)
		})
	}
}

// BenchmarkWatchVolumePropagation: the host's login replaced by rename,
// until every volume copy holds it, under `mc-broker watch` with its
// resident agent.
func BenchmarkWatchVolumePropagation(b *testing.B) {
	benchVolWatch(b, withAgent, (*volWatch).propagate)
}

// BenchmarkWatchVolumeAdoption: a newer login renamed into one volume, until
// the host's file and every other volume hold it, under `mc-broker watch`
// with its resident agent.
func BenchmarkWatchVolumeAdoption(b *testing.B) {
	benchVolWatch(b, withAgent, (*volWatch).adopt)
}

// BenchmarkPollVolumePropagation is BenchmarkWatchVolumePropagation without
// the agent (a dynamically linked mc-broker): the watcher writes each
// volume through helper containers.
func BenchmarkPollVolumePropagation(b *testing.B) {
	benchVolWatch(b, withoutAgent, (*volWatch).propagate)
}

// BenchmarkPollVolumeAdoption is BenchmarkWatchVolumeAdoption without the
// agent: the watcher learns of the change at its next poll (every
// second here; 30 s by default).
func BenchmarkPollVolumeAdoption(b *testing.B) {
	benchVolWatch(b, withoutAgent, (*volWatch).adopt)
}

// BenchmarkDockerRunLoopPropagation: the host's change under the user's
// loop, one `docker run ... cat > FILE` per volume every second.
func BenchmarkDockerRunLoopPropagation(b *testing.B) {
	benchVolWatch(b, dockerRunLoop, (*volWatch).propagate)
}

// TestWatchVolumeScenarios runs the agent benchmarks' steps a few times
// over three volumes, and one step of each polling way, so that
// `go test ./bench/` catches a benchmark that no longer measures what it
// says.
func TestWatchVolumeScenarios(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	t.Run("agent", func(t *testing.T) {
		w := newVolWatch(t, 3, withAgent)
		for name, step := range map[string]func() (time.Duration, error){"propagation": w.propagate, "adoption": w.adopt} {
			for range 3 {
				var d time.Duration
				ev := volumetest.Events(t, w.eng.Engine, w.vols, func() {
					var err error
					if d, err = step(); err != nil {
						t.Fatalf("%s: %v; the watcher's log:\n%s", name, err, w.logs.String())
					}
				})
				if ev["create"] != 0 {
					t.Fatalf("%s: %d helper containers, want 0 through the agent", name, ev["create"])
				}
				t.Logf("%s: %v", name, d)
			}
		}
		w.checkAgent(t)
	})
	t.Run("no-agent", func(t *testing.T) {
		w := newVolWatch(t, 1, withoutAgent)
		for name, step := range map[string]func() (time.Duration, error){"propagation": w.propagate, "adoption": w.adopt} {
			d, err := step()
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			t.Logf("%s: %v", name, d)
		}
	})
	t.Run("docker-run-loop", func(t *testing.T) {
		w := newVolWatch(t, 1, dockerRunLoop)
		d, err := w.propagate()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("propagation: %v", d)
	})
}
