//go:build linux

package rotation

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"
)

// runDuration is how long a fleet runs: 60 s (12 lifetimes of a 5 s fresh
// login) unless MC_BROKER_ROTATION_DURATION says otherwise (longer runs
// for docs/BENCHMARKS.md).
func runDuration(t *testing.T) time.Duration {
	t.Helper()
	if v := os.Getenv("MC_BROKER_ROTATION_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("MC_BROKER_ROTATION_DURATION: %v", err)
		}
		return d
	}
	return 60 * time.Second
}

const fresh = 5 * time.Second

// record appends a result to the file MC_BROKER_ROTATION_OUT names (JSON
// lines), for docs/BENCHMARKS.md.
func record(t *testing.T, r result) {
	t.Helper()
	t.Logf("%s", r)
	path := os.Getenv("MC_BROKER_ROTATION_OUT")
	if path == "" {
		return
	}
	data, _ := json.Marshal(r)
	out, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	out.Write(append(data, '\n'))
}

// checkRotation asserts what every run must show: the login rotated many
// times, no codex run failed, no holder's store stayed behind, and no
// holder ends logged out.
func checkRotation(t *testing.T, r result, d time.Duration) {
	t.Helper()
	if min := int(d/fresh) / 2; r.Granted < min {
		t.Errorf("only %d refreshes in %v (fresh for %v): the run did not exercise rotation", r.Granted, d, fresh)
	}
	for _, h := range r.Holders {
		if h.Runs == 0 || h.Turns == 0 {
			t.Errorf("%s never completed a turn", h.Name)
		}
		if h.Failed > 0 {
			t.Errorf("%s: %d of %d codex runs failed", h.Name, h.Failed, h.Runs)
		}
		if h.Fate != "live" {
			t.Errorf("%s ends logged out: its ~/.codex holds a refresh token that was already used (%s)", h.Name, h.Fate)
		}
		// Directory copies are behind for the milliseconds of a fan-out
		// (1-3 % of the samples on a loaded machine); a copy that waits
		// for a poll is behind most of the time.
		if h.StalePct > 10 {
			t.Errorf("%s's ~/.codex held a spent refresh token, while a newer login existed, in %.0f %% of the samples: a codex refreshing from it then is refused", h.Name, h.StalePct)
		}
	}
}

// TestCodexCopiesStayLoggedIn: the host's codex and four holders share one
// ChatGPT login for a minute, through a dozen refreshes, under mc-broker
// watch, once per way of keeping the copies; each case is a fleet of its
// own and checkRotation holds for each.
//
// DirectoryCopies: four holders on directory copies (two codex processes
// on the host, two in containers with the copy bind-mounted). Refreshes
// collide (codex sends its refresh request before it takes any lock, so
// even processes sharing one directory do), but the winner's login reaches
// every copy within milliseconds: nobody ends logged out.
//
// VolumeCopiesCollideNoMoreThanDirectories: the same with two of the
// copies in named volumes, in one run: volume copies must end no more
// logged out and collide no more than directory copies. The volumes'
// resident agent reports a container's refresh within milliseconds, as
// inotify does for directories (docs/VOLUMES.md).
func TestCodexCopiesStayLoggedIn(t *testing.T) {
	if testing.Short() {
		t.Skip("runs about 80 s a case")
	}
	d := runDuration(t)
	for _, tc := range []struct {
		name  string
		kinds []kind
		// check is what the case asserts beyond checkRotation.
		check func(t *testing.T, r result)
	}{
		{name: "DirectoryCopies", kinds: []kind{onHost, inDir, inDir, inBind, inBind}},
		{
			name:  "VolumeCopiesCollideNoMoreThanDirectories",
			kinds: []kind{onHost, inDir, inBind, inVolume, inVolume},
			check: func(t *testing.T, r result) {
				dirs, vols := r.reusesPerHolder(onHost, inDir, inBind), r.reusesPerHolder(inVolume)
				// Collisions are random: allow half as many again, and one.
				if vols > 1.5*dirs+1 {
					t.Errorf("volume copies collide more than directory copies: %.1f refresh-token reuses per volume holder, %.1f per directory holder", vols, dirs)
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFleet(t, fleetSpec{kinds: tc.kinds, broker: watch, duration: d, fresh: fresh})
			r := f.run()
			record(t, r)
			checkRotation(t, r, d)
			if tc.check != nil {
				tc.check(t, r)
			}
		})
	}
}

// TestCodexRotationMeasure runs the variants MC_BROKER_ROTATION_MEASURE
// names (comma-separated, see measured) and only reports them: the figures
// in docs/BENCHMARKS.md. MC_BROKER_ROTATION_OUT=FILE appends each result as
// a JSON line; MC_BROKER_ROTATION_TRACE=FILE writes the prototype's and the
// token server's timeline of a prototype run.
func TestCodexRotationMeasure(t *testing.T) {
	which := os.Getenv("MC_BROKER_ROTATION_MEASURE")
	if which == "" {
		t.Skip("set MC_BROKER_ROTATION_MEASURE=shared,dirs,volumes,proto-fanout,proto-bump,proto-hold to measure")
	}
	d := runDuration(t)
	for _, v := range strings.Split(which, ",") {
		spec, ok := measured[v]
		if !ok {
			t.Fatalf("unknown variant %q", v)
		}
		spec.duration, spec.fresh = d, fresh
		t.Run(v, func(t *testing.T) {
			record(t, newFleet(t, spec).run())
		})
	}
}

// measured are the variants TestCodexRotationMeasure knows, five holders
// each.
var measured = map[string]fleetSpec{
	// The ideal a copy can at best reach: five codex processes in the
	// host's one ~/.codex.
	"shared": {kinds: []kind{onHost, onHost, onHost, onHost, onHost}},
	"dirs":   {kinds: []kind{onHost, inDir, inDir, inBind, inBind}, broker: watch},
	// Volumes next to directories in one run.
	"volumes": {kinds: []kind{onHost, inDir, inBind, inVolume, inVolume}, broker: watch},
	// The proposal for Codex (hold_test.go), and its fan-out alone.
	"proto-fanout": {kinds: []kind{onHost, inDir, inDir, inBind, inBind}, broker: protoFanOut},
	"proto-bump":   {kinds: []kind{onHost, inDir, inDir, inBind, inBind}, broker: protoBump},
	"proto-hold":   {kinds: []kind{onHost, inDir, inDir, inBind, inBind}, broker: protoHold},
}
