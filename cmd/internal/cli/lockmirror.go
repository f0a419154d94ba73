package cli

import (
	"fmt"
	"io"

	"github.com/mc-broker/mc-broker/broker"
	"github.com/mc-broker/mc-broker/broker/watch"
)

// lockMirrorNotes says where Claude's refresh lock cannot be mirrored: into
// copies that are neither directories on this host nor reached by a
// resident agent (Docker volumes are, while watch's agent runs).
func lockMirrorNotes(b *broker.Broker) []string {
	var notes []string
	for _, s := range b.Sources {
		if s.Kind().Name() != "claude" {
			continue
		}
		n := 0
		for _, c := range b.Copies {
			_, files := c.Sink.(broker.WatchedFiles)
			_, place := c.Sink.(watch.RefreshLockPlace)
			if c.Source == s.Name() && !files && !place {
				n++
			}
		}
		if n > 0 {
			notes = append(notes, fmt.Sprintf("%s is shared with %d copies that are not directories on this host: Claude's refresh lock cannot be mirrored into them, so two of them refreshing at once can log one out; use directory copies or volumes for a login several containers share (docs/LOCKMIRROR.md)", s.Name(), n))
		}
	}
	return notes
}

func printLockMirror(w io.Writer, ws *watcherStatus) {
	if ws.State == nil || !ws.Running || ws.State.LockMirror == nil {
		return
	}
	lm := ws.State.LockMirror
	fmt.Fprintf(w, "  claude refresh lock mirrored across %d directories: %d lock(s) mirrored", lm.Directories, lm.Mirrored)
	if lm.Expired > 0 {
		fmt.Fprintf(w, ", %d time(s) removed at the bound", lm.Expired)
	}
	if lm.Refused > 0 {
		fmt.Fprintf(w, ", %d not mirrored (a container's lock held the others without a new login, or locks from containers used up the minute's quarter)", lm.Refused)
	}
	fmt.Fprintf(w, ", %d race(s)", lm.Races)
	if lm.LastRace != nil {
		fmt.Fprintf(w, " (last %s: two directories took the lock at once; one may have been logged out)", lm.LastRace.UTC().Format("2006-01-02 15:04:05 MST"))
	}
	fmt.Fprintln(w)
}
