package watch

import (
	"os"
	"path/filepath"
	"strings"

	"github.com/fsnotify/fsnotify"

	"github.com/mc-broker/mc-broker/broker/watch/lockmirror"
)

// rewatch watches each directory that holds a watched file, or, while it
// does not exist, its nearest existing ancestor, so that its creation is
// seen. Logins whose directory just appeared get a pass, since their file
// may have been written before the watch was in place.
func (w *watcher) rewatch() {
	// A directory created (mkdir -p) between looking for the nearest
	// existing one and watching it raised its event before the watch:
	// look again until nothing changes, or it stays unwatched until the
	// next poll.
	for range 8 {
		if !w.rewatchOnce() {
			return
		}
	}
}

// rewatchOnce is one round of rewatch; it reports whether it added a watch.
func (w *watcher) rewatchOnce() (added bool) {
	want := map[string]bool{}
	for d := range w.dirs {
		want[nearestDir(d)] = true
	}
	for p := range w.watched {
		if !want[p] {
			_ = w.fsw.Remove(p)
			delete(w.watched, p)
		}
	}
	for p := range want {
		if w.watched[p] {
			continue
		}
		if err := w.fsw.Add(p); err != nil {
			w.log.Debug("cannot watch directory; retried at the next poll", "dir", p, "error", err)
			continue
		}
		w.watched[p] = true
		added = true
		if w.dirs[p] && w.started {
			w.passUnder(p)
			w.mirrorEvent(filepath.Join(p, lockmirror.LockName)) // taken before the watch
		}
	}
	return added
}

// nearestDir is d, or its nearest ancestor that exists as a directory.
func nearestDir(d string) string {
	for p := d; ; p = filepath.Dir(p) {
		if fi, err := os.Stat(p); err == nil && fi.IsDir() {
			return p
		}
		if p == filepath.Dir(p) {
			return p
		}
	}
}

// passUnder asks for a pass of every login with a file under dir.
func (w *watcher) passUnder(dir string) {
	for p, workers := range w.files {
		if p == dir || strings.HasPrefix(p, dir+string(filepath.Separator)) {
			for _, sw := range workers {
				sw.request(passRequest{})
			}
		}
	}
}

func (w *watcher) onEvent(ev fsnotify.Event) {
	p := filepath.Clean(ev.Name)
	if w.mirrorEvent(p) {
		return
	}
	if workers, ok := w.files[p]; ok {
		// Read at once: the CLIs and mc-broker replace files by rename,
		// so what is there is whole; a file written in place and caught
		// halfway is looked at again by the plan's wait.
		for _, sw := range workers {
			sw.request(passRequest{path: p})
		}
		return
	}
	if !ev.Has(fsnotify.Create) && !ev.Has(fsnotify.Remove) && !ev.Has(fsnotify.Rename) {
		return
	}
	if w.watched[p] && !ev.Has(fsnotify.Create) {
		// A watched directory was deleted or moved away: a watch on a moved
		// directory would go on reporting its new contents under old names.
		_ = w.fsw.Remove(p)
		delete(w.watched, p)
	}
	for d := range w.dirs {
		if d == p || strings.HasPrefix(d, p+string(filepath.Separator)) {
			w.rewatch()
			w.passUnder(p)
			return
		}
	}
}
