package cli

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mc-broker/mc-broker/broker/kinds/claude"

	"github.com/mc-broker/mc-broker/broker"
	"github.com/mc-broker/mc-broker/broker/watch"
	"github.com/mc-broker/mc-broker/sinks/dir"
	"github.com/mc-broker/mc-broker/sinks/volume"
	"github.com/mc-broker/mc-broker/sources/file"
)

func TestWatchLockMirrorFlags(t *testing.T) {
	f, _, _ := testFactory(t, nil)
	var got *WatchOptions
	cmd := NewCmdWatch(f, func(o *WatchOptions) error { got = o; return nil })
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if !got.MirrorLock || got.LockMirrorBound != 5*time.Second {
		t.Errorf("defaults: mirror %v, bound %v; want on, 5s", got.MirrorLock, got.LockMirrorBound)
	}
	cmd = NewCmdWatch(f, func(o *WatchOptions) error { got = o; return nil })
	cmd.SetArgs([]string{"--mirror-refresh-lock=false", "--lock-mirror-bound", "2s"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if got.MirrorLock || got.LockMirrorBound != 2*time.Second {
		t.Errorf("options %+v", got)
	}

	opts := &WatchOptions{f: f, LogLevel: "info", LogFormat: "text", MirrorLock: true}
	err := watchRun(context.Background(), opts, nil)
	var exit *ExitError
	if !errors.As(err, &exit) || exit.Code != broker.ExitUsage || !strings.Contains(err.Error(), "--lock-mirror-bound must be more than 0") {
		t.Errorf("a zero bound: %v, want a usage error", err)
	}
}

func TestStatusShowsLockMirroring(t *testing.T) {
	last := time.Date(2026, 11, 29, 8, 30, 0, 0, time.UTC)
	ws := &watcherStatus{Running: true, State: &watch.State{
		PID: 42, StartedAt: last.Add(-time.Hour), UpdatedAt: last,
		LockMirror: &watch.LockMirrorState{Directories: 4, Mirrored: 6, Expired: 1, Races: 1, LastRace: &last, Refused: 3},
	}}
	var out bytes.Buffer
	printWatcher(&out, ws, last)
	want := "  claude refresh lock mirrored across 4 directories: 6 lock(s) mirrored, 1 time(s) removed at the bound, 3 not mirrored (a container's lock held the others without a new login, or locks from containers used up the minute's quarter), 1 race(s) (last 2026-11-29 08:30:00 UTC: two directories took the lock at once; one may have been logged out)\n"
	if !strings.Contains(out.String(), want) {
		t.Errorf("status shows:\n%s\nwant the line:\n%s", out.String(), want)
	}
}

// volumeSink stands for a copy that is not a directory on this host and
// has no resident agent (a Kubernetes Secret).
type volumeSink struct{}

func (volumeSink) Location() string                            { return "volume:claude-auth" }
func (volumeSink) Read(context.Context) ([]byte, error)        { return nil, nil }
func (volumeSink) Update(context.Context, broker.Decide) error { return nil }

func TestStatusNotesVolumeCopiesOfAClaudeLogin(t *testing.T) {
	src := file.New("claude", claude.Kind, "/h/.claude/.credentials.json")
	b := &broker.Broker{Sources: []broker.Source{src}, Copies: []broker.Copy{
		{Source: "claude", Sink: dir.New(dir.Options{Dir: "/c/1", FileName: ".credentials.json"})},
	}}
	if notes := lockMirrorNotes(b); len(notes) != 0 {
		t.Errorf("directory copies only: notes %q", notes)
	}
	b.Copies = append(b.Copies, broker.Copy{Source: "claude", Sink: volumeSink{}}, broker.Copy{Source: "claude", Sink: volumeSink{}})
	notes := lockMirrorNotes(b)
	if len(notes) != 1 || !strings.Contains(notes[0], "claude is shared with 2 copies that are not directories on this host") || !strings.Contains(notes[0], "use directory copies") {
		t.Errorf("notes %q", notes)
	}
	// Volume copies: mirrored through the resident agent.
	b.Copies = []broker.Copy{{Source: "claude", Sink: volume.New(volume.Options{Volume: "mc-claude-auth", FileName: ".credentials.json"})}}
	if notes := lockMirrorNotes(b); len(notes) != 0 {
		t.Errorf("volume copies: notes %q", notes)
	}
}
