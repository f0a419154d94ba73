package cli

import (
	"testing"
	"time"

	"github.com/mc-broker/mc-broker/broker/watch"
)

// TestStatusExitsOneForWhatTheWatcherRefusedOrCannotWriteBack: the
// watcher repairs a copy whose login it refused at once, so status's own
// pass finds nothing; what the running watcher reports still counts.
func TestStatusExitsOneForWhatTheWatcherRefusedOrCannotWriteBack(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name string
		ws   watcherStatus
		want int
	}{
		{"no watcher", watcherStatus{}, 0},
		{"all well", watcherStatus{Running: true, State: &watch.State{Sources: []watch.SourceState{{Copies: []watch.CopyState{{Location: "/c"}}}}}}, 0},
		{"refused", watcherStatus{Running: true, State: &watch.State{Sources: []watch.SourceState{{Copies: []watch.CopyState{{Location: "/c", Refused: "another account", RefusedAt: &now}}}}}}, 1},
		{"write-back failing", watcherStatus{Running: true, State: &watch.State{Sources: []watch.SourceState{{WriteBack: "read-only", WriteBackSince: &now}}}}, 1},
		{"stopped watcher's refusal", watcherStatus{State: &watch.State{Sources: []watch.SourceState{{Copies: []watch.CopyState{{Location: "/c", Refused: "x"}}}}}}, 0},
	}
	for _, tt := range tests {
		if got := tt.ws.exitCode(); got != tt.want {
			t.Errorf("%s: exit code %d, want %d", tt.name, got, tt.want)
		}
	}
}
