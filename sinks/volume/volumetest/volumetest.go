// Package volumetest holds what tests and benchmarks of volume copies
// share: reaching the real engine (skip when there is none, fail under
// CI=true), unique volumes that are removed afterwards, reading a volume
// from a container, and counting helper containers with the events API.
package volumetest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/mc-broker/mc-broker/sinks/volume"
	"github.com/mc-broker/mc-broker/sinks/volume/engine"
)

// Image is the FROM-scratch busybox image scripts/docker-env.sh builds.
const Image = "mc-broker-test-busybox:latest"

// NeedEngine returns a run handle and the engine behind it, skipping the
// test when no engine answers, or failing it when CI=true.
func NeedEngine(tb testing.TB) (*volume.Shared, *engine.Engine) {
	tb.Helper()
	lazy := engine.NewLazy(os.Getenv, os.Getenv("HOME"))
	e, err := lazy.Engine(context.Background())
	if err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("CI=true and no Docker engine: %v", err)
		}
		tb.Skipf("no Docker engine: %v", err)
	}
	sh := volume.NewShared(lazy)
	tb.Cleanup(func() { sh.Close() })
	return sh, e
}

var seq atomic.Int64

// UniqueVolume names a volume no other test uses and removes it (and any
// container still using it) when the test ends.
func UniqueVolume(tb testing.TB, e *engine.Engine) string {
	tb.Helper()
	name := fmt.Sprintf("mc-broker-test-%d-%d-%d", os.Getpid(), time.Now().UnixNano()%1e6, seq.Add(1))
	tb.Cleanup(func() { RemoveVolume(e, name) })
	return name
}

// RemoveVolume removes a volume and the containers that mount it.
func RemoveVolume(e *engine.Engine, name string) {
	ctx := context.Background()
	c := e.Client()
	if list, err := c.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: make(client.Filters).Add("volume", name)}); err == nil {
		for _, ctr := range list.Items {
			c.ContainerRemove(ctx, ctr.ID, client.ContainerRemoveOptions{Force: true})
		}
	}
	c.VolumeRemove(ctx, name, client.VolumeRemoveOptions{Force: true})
}

// Run runs `sh -c script` in the test image with vol mounted at /d and no
// network, and returns its output.
func Run(tb testing.TB, vol, script string) string {
	tb.Helper()
	out, err := exec.Command("docker", "run", "--rm", "--network", "none", "-v", vol+":/d", Image, "sh", "-c", script).CombinedOutput()
	if err != nil {
		tb.Fatalf("docker run: %v\n%s", err, out)
	}
	return string(out)
}

// CountCreates counts the containers created for vols while f runs, with
// the engine's events API.
func CountCreates(tb testing.TB, e *engine.Engine, vols []string, f func()) int {
	tb.Helper()
	return Events(tb, e, vols, f)["create"]
}

// Events counts, by action, the engine's events on the helper containers
// of vols (all helpers when vols is empty) while f runs: "create",
// "destroy", "archive-path" (a read, CopyFromContainer) and
// "extract-to-dir" (a write, CopyToContainer). Scoping by volume keeps
// tests in other packages, running at the same time, out of the count.
func Events(tb testing.TB, e *engine.Engine, vols []string, f func()) map[string]int {
	tb.Helper()
	since := time.Now()
	f()
	until := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Since and Until are whole seconds; events are filtered to f's run
	// by their nanosecond times below. The stream ends at Until.
	res := e.Client().Events(ctx, client.EventsListOptions{
		Since:   fmt.Sprint(since.Unix()),
		Until:   fmt.Sprint(until.Unix() + 1),
		Filters: make(client.Filters).Add("type", "container").Add("label", volume.LabelHelper),
	})
	counts := map[string]int{}
	for {
		select {
		case m := <-res.Messages:
			t := time.Unix(0, m.TimeNano)
			if !t.Before(since) && !t.After(until) && (len(vols) == 0 || slices.Contains(vols, m.Actor.Attributes[volume.LabelVolume])) {
				counts[string(m.Action)]++
			}
		case err := <-res.Err:
			if err != nil && !errors.Is(err, context.Canceled) && err.Error() != "EOF" {
				tb.Fatalf("events: %v", err)
			}
			return counts
		}
	}
}

// Helpers lists helper containers carrying any of the given labels
// ("key=value" or "key"); all helpers when none is given.
func Helpers(tb testing.TB, e *engine.Engine, labels ...string) []string {
	tb.Helper()
	if len(labels) == 0 {
		labels = []string{volume.LabelHelper}
	}
	var ids []string
	for _, l := range labels {
		list, err := e.Client().ContainerList(context.Background(), client.ContainerListOptions{
			All:     true,
			Filters: make(client.Filters).Add("label", volume.LabelHelper).Add("label", l),
		})
		if err != nil {
			tb.Fatal(err)
		}
		for _, c := range list.Items {
			ids = append(ids, c.ID)
		}
	}
	return ids
}

// VolumeLabels turns volume names into Helpers arguments.
func VolumeLabels(vols ...string) []string {
	var out []string
	for _, v := range vols {
		out = append(out, volume.LabelVolume+"="+v)
	}
	return out
}
