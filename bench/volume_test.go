package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/mc-broker/mc-broker/cmd/wire"

	"github.com/mc-broker/mc-broker/broker"
	"github.com/mc-broker/mc-broker/broker/config"
	"github.com/mc-broker/mc-broker/sinks/volume"
	"github.com/mc-broker/mc-broker/sinks/volume/volumetest"
)

// volumeCounts are the volume copies per sync: one CLI, and all three.
var volumeCounts = []int{1, 3}

// volEnv is a host login (as env) and n named volumes on a real engine.
type volEnv struct {
	*env
	eng    *volumetest.Engine
	shared *volume.Shared
	vols   []string
}

func newVolEnv(tb testing.TB, n int) *volEnv {
	tb.Helper()
	return newVolEnvOn(tb, n, volumetest.Docker(tb))
}

func newVolEnvOn(tb testing.TB, n int, eng *volumetest.Engine) *volEnv {
	tb.Helper()
	v := &volEnv{env: newEnv(tb, 0), eng: eng, shared: eng.Shared}
	for range n {
		v.vols = append(v.vols, eng.UniqueVolume(tb))
	}
	return v
}

// benchEngines are the engines the engine benchmarks compare: Docker
// through its socket, rootful and rootless Podman, and Docker through ssh.
var benchEngines = []struct {
	name string
	get  func(testing.TB) *volumetest.Engine
}{
	{"docker", volumetest.Docker},
	{"podman", func(tb testing.TB) *volumetest.Engine { return volumetest.NeedPodman(tb, false) }},
	{"podman-rootless", func(tb testing.TB) *volumetest.Engine { return volumetest.NeedPodman(tb, true) }},
	{"ssh", volumetest.SSH},
}

// broker is one claude source and one volume copy per volume, built
// through the config package with the engine handle shared by all.
func (v *volEnv) broker(tb testing.TB) *broker.Broker {
	tb.Helper()
	c := &config.Config{Sources: []config.Source{{Name: "claude", Kind: "claude", Path: v.source, Store: "file"}}}
	for _, vol := range v.vols {
		c.Sinks = append(c.Sinks, config.Sink{Source: "claude", Volume: vol})
	}
	b, err := wire.Build(c, config.Env{Home: v.home, Getenv: func(k string) string {
		if k == "XDG_STATE_HOME" {
			return v.state
		}
		return ""
	}}, v.shared)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// checkVolumes fails unless every volume holds the source's current login.
func (v *volEnv) checkVolumes(tb testing.TB) {
	tb.Helper()
	want := []byte(`"expiresAt": ` + strconv.FormatInt(v.expiry, 10))
	for _, vol := range v.vols {
		s := volume.New(volume.Options{Volume: vol, FileName: copyFile, Shared: v.shared})
		got, err := s.Read(context.Background())
		if err != nil {
			tb.Fatal(err)
		}
		if !bytes.Contains(got, want) {
			tb.Fatalf("volume %s does not hold the login with %s", vol, want)
		}
	}
}

// volumeSyncScenario is Broker.Sync over n volume copies, in sync already
// (changed false) or all behind a login the host just refreshed.
func volumeSyncScenario(tb testing.TB, n int, changed bool) (scenario, []string) {
	return volumeSyncScenarioOn(tb, newVolEnv(tb, n), changed)
}

func volumeSyncScenarioOn(tb testing.TB, v *volEnv, changed bool) (scenario, []string) {
	n := len(v.vols)
	b := v.broker(tb)
	ctx := context.Background()
	if err := checkReport(b.Sync(ctx, broker.Options{}), n, broker.Created); err != nil {
		tb.Fatal(err)
	}
	want := broker.Unchanged
	var prepare func(testing.TB)
	if changed {
		want, prepare = broker.Updated, v.refresh
	}
	return scenario{
		prepare: prepare,
		step:    func() error { return checkReport(b.Sync(ctx, broker.Options{}), n, want) },
		verify:  v.checkVolumes,
	}, v.vols
}

// dockerRunScenario is what a user does instead: for each volume, start a
// container from the test image that copies its stdin into the volume.
func dockerRunScenario(tb testing.TB, n int) (scenario, []string) {
	return dockerRunScenarioOn(tb, newVolEnv(tb, n))
}

// dockerRunScenarioOn is dockerRunScenario with `docker -H HOST` for the
// volumes' engine. On Podman the container gets no network and low limits:
// rootless Podman cannot set up a network in this sandbox (slirp4netns
// cannot open /dev/net/tun), rootful Podman cannot raise the limits.
func dockerRunScenarioOn(tb testing.TB, v *volEnv) (scenario, []string) {
	args := []string{"-H", v.eng.Host, "run", "--rm", "-i"}
	if strings.HasPrefix(v.eng.Name, "podman") {
		args = append(append(args, "--network", "none"), volumetest.PodmanLimits...)
	}
	return scenario{
		prepare: v.refresh,
		step: func() error {
			for _, vol := range v.vols {
				src, err := os.Open(v.source)
				if err != nil {
					return err
				}
				cmd := exec.Command("docker", append(args, "-v", vol+":/d", volumetest.Image, "sh", "-c", "cat > /d/"+copyFile)...)
				cmd.Stdin = src
				out, err := cmd.CombinedOutput()
				src.Close()
				if err != nil {
					return fmt.Errorf("docker run: %v\n%s", err, out)
				}
			}
			return nil
		},
		verify: v.checkVolumes,
	}, v.vols
}

// pollScenario is one Changed call on a volume copy where nothing changed:
// what the watcher pays per volume per poll.
func pollScenario(tb testing.TB) (scenario, []string) {
	v := newVolEnv(tb, 1)
	if err := checkReport(v.broker(tb).Sync(context.Background(), broker.Options{}), 1, broker.Created); err != nil {
		tb.Fatal(err)
	}
	s := volume.New(volume.Options{Volume: v.vols[0], FileName: copyFile, Shared: v.shared})
	tb.Cleanup(func() { s.Close() })
	if _, err := s.Changed(context.Background()); err != nil {
		tb.Fatal(err)
	}
	return scenario{step: func() error {
		changed, err := s.Changed(context.Background())
		if err == nil && changed {
			err = fmt.Errorf("Changed reported a change when there was none")
		}
		return err
	}}, v.vols
}

func BenchmarkVolumeSync(b *testing.B) {
	for _, n := range volumeCounts {
		b.Run(fmt.Sprintf("copies=%d", n), func(b *testing.B) {
			b.Run("unchanged", func(b *testing.B) { run(b, first(volumeSyncScenario(b, n, false))) })
			b.Run("changed", func(b *testing.B) { run(b, first(volumeSyncScenario(b, n, true))) })
		})
	}
}

func BenchmarkDockerRunCat(b *testing.B) {
	for _, n := range volumeCounts {
		b.Run(fmt.Sprintf("copies=%d", n), func(b *testing.B) { run(b, first(dockerRunScenario(b, n))) })
	}
}

func BenchmarkVolumePollUnchanged(b *testing.B) { run(b, first(pollScenario(b))) }

// BenchmarkVolumeSyncEngines is BenchmarkVolumeSync on each engine: Podman
// next to Docker, and Docker reached over ssh next to its socket.
func BenchmarkVolumeSyncEngines(b *testing.B) {
	for _, eng := range benchEngines {
		b.Run("engine="+eng.name, func(b *testing.B) {
			e := eng.get(b)
			for _, n := range volumeCounts {
				b.Run(fmt.Sprintf("copies=%d", n), func(b *testing.B) {
					b.Run("unchanged", func(b *testing.B) { run(b, first(volumeSyncScenarioOn(b, newVolEnvOn(b, n, e), false))) })
					b.Run("changed", func(b *testing.B) { run(b, first(volumeSyncScenarioOn(b, newVolEnvOn(b, n, e), true))) })
				})
			}
		})
	}
}

// BenchmarkDockerRunCatEngines is the user's way on each engine:
// `docker -H HOST run --rm -i -v VOL:/d ... cat > FILE` per volume (for
// ssh, `docker -H ssh://...` by hand).
func BenchmarkDockerRunCatEngines(b *testing.B) {
	for _, eng := range benchEngines {
		b.Run("engine="+eng.name, func(b *testing.B) {
			e := eng.get(b)
			for _, n := range volumeCounts {
				b.Run(fmt.Sprintf("copies=%d", n), func(b *testing.B) { run(b, first(dockerRunScenarioOn(b, newVolEnvOn(b, n, e)))) })
			}
		})
	}
}

// TestVolumeScenarios runs each volume benchmark's step a few times and
// counts, with the engine's events, the containers each one costs: the
// figures in docs/BENCHMARKS.md say what a step does, and this keeps them
// true.
func TestVolumeScenarios(t *testing.T) {
	_, e := volumetest.NeedEngine(t)
	tests := []struct {
		name           string
		new            func(t *testing.T) (scenario, []string)
		creates, write int // per step
	}{
		// A write costs a second container: the read-back.
		{"sync/copies=3/changed", func(t *testing.T) (scenario, []string) { return volumeSyncScenario(t, 3, true) }, 6, 3},
		{"sync/copies=3/unchanged", func(t *testing.T) (scenario, []string) { return volumeSyncScenario(t, 3, false) }, 3, 0},
		{"poll/unchanged", func(t *testing.T) (scenario, []string) { return pollScenario(t) }, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sc, vols := tt.new(t)
			for range 2 {
				if sc.prepare != nil {
					sc.prepare(t)
				}
				ev := volumetest.Events(t, e, vols, func() {
					if err := sc.step(); err != nil {
						t.Fatal(err)
					}
				})
				if ev["create"] != tt.creates || ev["extract-to-dir"] != tt.write {
					t.Errorf("one step: events %v, want %d creates and %d writes", ev, tt.creates, tt.write)
				}
			}
			if sc.verify != nil {
				sc.verify(t)
			}
		})
	}
	t.Run("docker-run/copies=1", func(t *testing.T) {
		sc, _ := dockerRunScenario(t, 1)
		sc.prepare(t)
		if err := sc.step(); err != nil {
			t.Fatal(err)
		}
		sc.verify(t)
	})
	// The engine benchmarks' steps hold on every engine: a changed sync
	// leaves the latest login in every volume, the hand-run way too.
	for _, eng := range benchEngines {
		t.Run("engines/"+eng.name, func(t *testing.T) {
			e := eng.get(t)
			for _, mk := range []func() (scenario, []string){
				func() (scenario, []string) { return volumeSyncScenarioOn(t, newVolEnvOn(t, 2, e), true) },
				func() (scenario, []string) { return dockerRunScenarioOn(t, newVolEnvOn(t, 1, e)) },
			} {
				sc, _ := mk()
				sc.prepare(t)
				if err := sc.step(); err != nil {
					t.Fatal(err)
				}
				sc.verify(t)
			}
		})
	}
}

// first drops a scenario constructor's volume names (used by the tests'
// event counts).
func first(sc scenario, _ []string) scenario { return sc }
