package watch

import (
	"bytes"
	"crypto/sha256"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/mc-broker/mc-broker/broker"
	"github.com/mc-broker/mc-broker/broker/credential"
	"github.com/mc-broker/mc-broker/broker/watch/lockmirror"
)

// partialPatience is how long a source may look half-written before the
// pass goes ahead and reports it: Gemini CLI writes its file in place, and
// a watcher sees it truncated for a moment; that is normal and not logged.
const partialPatience = 2 * time.Second

// group is one source and the copies that follow it.
type group struct {
	name    string
	src     broker.Source
	copies  []broker.Copy
	pollers []broker.ChangePoller
	// inSync maps a watched file to the hash of what it held, in agreement
	// with the source, after the last pass. An event on a file that still
	// holds exactly that needs no pass: this is how the broker's own writes
	// do not echo back as work.
	inSync map[string][sha256.Size]byte
	// attempt counts failed passes in a row, for the backoff.
	attempt int
	// partialSince is when the source was first seen half-written.
	partialSince time.Time
	// failing remembers each failing copy's problem, to log changes only.
	failing map[string]string
	// sourceProblem is the last source problem logged.
	sourceProblem string
	// polledChanged is set when a poller reported a change (and at start):
	// only then does adoption read the copies that are not files here
	// (volumes). A file event then never waits for a Docker round trip
	// before the fan-out, and creates no container to read a volume that
	// its poller says did not change.
	polledChanged bool
	// passData is what the source held during the current pass.
	passData []byte
	// adoptProblem is the last write-back failure logged.
	adoptProblem string
	// noWriteBack is set once it was logged that the source cannot take a
	// newer login back.
	noWriteBack bool
	// lastValid is the freshness of the last valid login seen at the
	// source. A broken host login (a failed refresh blanks it) is only
	// replaced by a copy's login that is newer than this: the copies still
	// holding the old login would only bring back a dead refresh token.
	lastValid    credential.Freshness
	hasLastValid bool
}

// fileRef says which group a watched file belongs to.
type fileRef struct{ group string }

// install makes b the running config: groups, watched files, pollers.
func (w *watcher) install(b *broker.Broker) {
	b.SettleDelay = w.o.Quiet
	w.b = b
	w.groups = map[string]*group{}
	w.files = map[string][]*fileRef{}
	w.dirs = map[string]bool{}
	w.deadline = map[string]time.Time{}
	w.since = map[string]time.Time{}
	for _, s := range b.Sources {
		g := &group{name: s.Name(), src: s, inSync: map[string][sha256.Size]byte{}, failing: map[string]string{}, polledChanged: true}
		w.groups[g.name] = g
		w.track(g, s)
	}
	for _, c := range b.Copies {
		g, ok := w.groups[c.Source]
		if !ok {
			continue
		}
		g.copies = append(g.copies, c)
		w.track(g, c.Sink)
	}
	w.installMirrors(b)
	w.rewatch()
}

func (w *watcher) track(g *group, v any) {
	if f, ok := v.(broker.WatchedFiles); ok {
		for _, p := range f.WatchedFiles() {
			p = clean(p)
			w.files[p] = append(w.files[p], &fileRef{group: g.name})
			w.dirs[filepath.Dir(p)] = true
		}
	}
	if p, ok := v.(broker.ChangePoller); ok {
		g.pollers = append(g.pollers, p)
	}
}

// rewatch watches each directory that holds a watched file, or, while it
// does not exist, its nearest existing ancestor, so that its creation is
// seen. It returns nothing; groups whose directory just appeared get a pass,
// since their file may have been written before the watch was in place.
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
			w.scheduleUnder(p)
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

// scheduleUnder asks for a pass of every group with a file under dir.
func (w *watcher) scheduleUnder(dir string) {
	for p, refs := range w.files {
		if p == dir || strings.HasPrefix(p, dir+string(filepath.Separator)) {
			for _, r := range refs {
				w.debounce(r.group)
			}
		}
	}
}

func (w *watcher) onEvent(ev fsnotify.Event) {
	p := clean(ev.Name)
	if w.mirrorEvent(p) {
		return
	}
	if refs, ok := w.files[p]; ok {
		for _, r := range refs {
			if g := w.groups[r.group]; g != nil && !g.holdsInSync(p) {
				w.debounce(r.group)
			}
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
			w.scheduleUnder(p)
			return
		}
	}
}

// holdsInSync reports whether the file holds what the last pass left there.
func (g *group) holdsInSync(path string) bool {
	h, ok := g.inSync[path]
	if !ok {
		return false
	}
	data, err := readSmall(path)
	return err == nil && sha256.Sum256(data) == h
}

// halfWrittenCopy names the first copy file that looks like a write caught
// halfway (empty or cut short), or returns "". Files that still hold what
// the last pass left are not parsed again.
func (g *group) halfWrittenCopy(kind credential.Kind) string {
	for _, c := range g.copies {
		f, ok := c.Sink.(broker.WatchedFiles)
		if !ok {
			continue
		}
		for _, p := range f.WatchedFiles() {
			data, err := readSmall(p)
			if err != nil {
				continue
			}
			if h, ok := g.inSync[clean(p)]; ok && sha256.Sum256(data) == h {
				continue
			}
			if _, err := kind.Inspect(data); credential.IsPartial(err) {
				return p
			}
		}
	}
	return ""
}

func readSmall(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, credential.MaxSize+1))
}

// reconcile is one pass over a group: adopt a newer login from a copy into
// the host's store, then fan the host's login out to every copy.
func (w *watcher) reconcile(name string) {
	g := w.groups[name]
	kind := g.src.Kind()
	data, err := g.src.Read(w.work)
	var info credential.Info
	if err == nil {
		info, err = kind.Inspect(data)
	}
	now := w.o.Now()
	// A copy caught mid-write is a container's CLI writing a newer login
	// in place (Gemini): "repairing" it now would replace the file under
	// the CLI and lose that login, so it gets the same patience.
	halfWritten := ""
	if credential.IsPartial(err) {
		halfWritten = "source"
	} else if p := g.halfWrittenCopy(kind); p != "" {
		halfWritten = p
	}
	if halfWritten != "" {
		if g.partialSince.IsZero() {
			g.partialSince = now
		}
		if now.Sub(g.partialSince) < partialPatience {
			w.log.Debug("a file looks half-written; reading it again shortly", "source", name, "file", halfWritten)
			w.schedule(name, 2*w.o.Quiet)
			return
		}
	} else {
		g.partialSince = time.Time{}
	}
	if err == nil {
		g.lastValid, g.hasLastValid = info.Freshness, true
	}
	if err == nil || (credential.IsBroken(err) && !credential.IsPartial(err) && g.hasLastValid) {
		if wrote := w.adopt(g, data, info, err); wrote != nil {
			data = wrote
		}
	}
	rep := w.b.Sync(w.work, broker.Options{Only: []string{name}})
	// What the source held for this pass, so that learning what is in sync
	// needs no third read (a Keychain read runs a program); learn checks it
	// against the pass's fingerprint.
	g.passData = data
	w.record(g, rep)
	g.passData = nil
}

// candidate is a copy holding a login newer than the host's.
type candidate struct {
	copy broker.Copy
	data []byte
	info credential.Info
}

// adopt writes the newest valid login found in a copy back into the host's
// store when it is newer than the host's, or, when the host's is broken (a
// failed refresh blanks it), newer than the last valid login the host had:
// a container refreshed, and its login rescues the host's. A broken,
// blanked or older copy is never adopted; the fan-out repairs it.
func (w *watcher) adopt(g *group, srcData []byte, srcInfo credential.Info, srcErr error) (wrote []byte) {
	kind := g.src.Kind()
	var best *candidate
	readPolled := g.polledChanged
	for _, c := range g.copies {
		if _, isFile := c.Sink.(broker.WatchedFiles); !isFile && !readPolled {
			continue
		}
		data, err := c.Sink.Read(w.work)
		if err != nil {
			continue
		}
		if srcErr == nil {
			if want, err := credential.ForCopy(kind, srcData, c.Options); err == nil && bytes.Equal(data, want) {
				continue
			}
		}
		info, err := kind.Inspect(data)
		if err != nil {
			continue
		}
		than := srcInfo.Freshness
		if srcErr != nil {
			than = g.lastValid
		}
		if cmp, ok := info.Freshness.Compare(than); !ok || cmp <= 0 {
			continue
		}
		if best != nil {
			if cmp, ok := info.Freshness.Compare(best.info.Freshness); !ok || cmp <= 0 {
				continue
			}
		}
		best = &candidate{copy: c, data: data, info: info}
	}
	if best == nil {
		g.polledChanged = false
		return nil
	}
	ws, ok := g.src.(broker.WritableSource)
	if !ok {
		if !g.noWriteBack {
			g.noWriteBack = true
			w.log.Warn("a copy holds a newer login, but this source cannot take it back", "source", g.name, "copy", best.copy.Sink.Location())
		}
		return nil
	}
	var backupPath, declined string
	err := ws.Update(w.work, func(cur []byte, exists bool) ([]byte, bool) {
		if !exists {
			declined = "the host has no login now (logged out?)"
			return nil, false
		}
		curInfo, curErr := kind.Inspect(cur)
		switch {
		case curErr != nil && credential.IsPartial(curErr):
			declined = "the host's login is being written"
			return nil, false
		case curErr == nil:
			if cmp, ok := best.info.Freshness.Compare(curInfo.Freshness); !ok || cmp <= 0 {
				declined = "the host's login is as new or newer"
				return nil, false
			}
		case !credential.IsBroken(curErr):
			declined = curErr.Error()
			return nil, false
		default:
			if cmp, ok := best.info.Freshness.Compare(g.lastValid); !g.hasLastValid || !ok || cmp <= 0 {
				declined = "the host's login is broken and no copy holds a newer one than it last had"
				return nil, false
			}
		}
		next, err := credential.ForHost(kind, cur, best.data, best.copy.Options)
		if err == nil {
			_, err = kind.Inspect(next)
		}
		if err != nil {
			declined = "the merged login is not valid: " + err.Error()
			return nil, false
		}
		p, err := backup(w.o.StateDir, g.name, cur, curInfo, w.o.Now())
		if err != nil {
			declined = "cannot keep a backup of the host's login: " + err.Error()
			return nil, false
		}
		backupPath = p
		wrote = next
		return next, true
	})
	switch {
	case err != nil:
		// Said once per problem; the retries (with backoff) stay quiet.
		level := slog.LevelWarn
		if err.Error() == g.adoptProblem {
			level = slog.LevelDebug
		}
		g.adoptProblem = err.Error()
		w.log.Log(w.work, level, "cannot write a newer login back into the host's store; retrying", "source", g.name, "store", g.src.Location(), "from", best.copy.Sink.Location(), "error", err)
		g.attempt++
		w.schedule(g.name, w.backoff(g.attempt))
	case backupPath == "":
		g.polledChanged = false
		w.log.Debug("newer login in a copy not adopted", "source", g.name, "from", best.copy.Sink.Location(), "reason", declined)
	default:
		g.polledChanged = false
		g.adoptProblem = ""
		w.log.Info("adopted a newer login from a copy into the host's store",
			"source", g.name, "store", g.src.Location(), "from", best.copy.Sink.Location(),
			"fingerprint", best.info.Fingerprint, "expires_at", expiry(best.info), "backup", backupPath)
		w.state.adopted(g.name, best.copy.Sink.Location(), best.info, w.o.Now())
	}
	if err != nil {
		return nil
	}
	return wrote
}

func expiry(info credential.Info) any {
	if info.Expiry.IsZero() {
		return "unknown"
	}
	return info.Expiry.UTC().Format(time.RFC3339)
}

// record logs what a pass changed, keeps the state, schedules retries and
// learns what each watched file holds when it agrees with the source.
func (w *watcher) record(g *group, rep *broker.Report) {
	if len(rep.Sources) == 0 {
		return
	}
	sr := rep.Sources[0]
	w.state.update(sr, w.o.Now())
	retry := false

	problem := ""
	if sr.State != broker.SourceValid {
		problem = string(sr.State) + ": " + sr.Problem
	}
	if problem != g.sourceProblem {
		switch {
		case problem == "":
			w.log.Info("source usable again", "source", g.name, "fingerprint", sr.Fingerprint)
		case sr.State == broker.SourceNotLoggedIn:
			w.log.Info("source not logged in; its copies are left as they are", "source", g.name, "reason", sr.Problem, "hint", sr.Hint)
		default:
			w.log.Warn("source unusable; its copies are left as they are", "source", g.name, "state", sr.State, "problem", sr.Problem, "hint", sr.Hint)
		}
		g.sourceProblem = problem
	}
	if sr.State == broker.SourceUnreadable {
		retry = true
	}

	for _, c := range sr.Copies {
		prev, wasFailing := g.failing[c.Location]
		switch {
		case c.Outcome == broker.Failed:
			retry = true
			if !wasFailing || prev != c.Problem {
				w.log.Warn("copy failed; retrying with backoff", "source", g.name, "copy", c.Location, "error", c.Problem)
			}
			g.failing[c.Location] = c.Problem
			continue
		case wasFailing:
			delete(g.failing, c.Location)
			w.log.Info("copy recovered", "source", g.name, "copy", c.Location)
		}
		switch {
		case c.Outcome.Writes():
			args := []any{"source", g.name, "copy", c.Location, "outcome", c.Outcome, "fingerprint", c.Fingerprint}
			if c.ExpiresAt != nil {
				args = append(args, "expires_at", c.ExpiresAt.UTC().Format(time.RFC3339))
			}
			if c.Problem != "" {
				args = append(args, "was", c.Problem)
			}
			w.log.Info("copy written", args...)
		case c.Outcome == broker.KeptNewer:
			w.log.Info("copy holds a newer login; kept", "source", g.name, "copy", c.Location, "fingerprint", c.Fingerprint)
		}
	}
	if retry {
		g.attempt++
		w.schedule(g.name, w.backoff(g.attempt))
	} else {
		g.attempt = 0
	}
	w.learn(g, sr)
}

// learn records, for each watched file of the group, the hash of what it
// holds, but only where that agrees with the source's current login: a
// container's write that lands between the pass and this read is then not
// mistaken for the broker's own.
func (w *watcher) learn(g *group, sr broker.SourceReport) {
	g.inSync = map[string][sha256.Size]byte{}
	if sr.State != broker.SourceValid {
		return
	}
	kind := g.src.Kind()
	data := g.passData
	if data == nil {
		var err error
		if data, err = g.src.Read(w.work); err != nil {
			return
		}
	}
	info, err := kind.Inspect(data)
	if err != nil || info.Fingerprint != sr.Fingerprint {
		return
	}
	if f, ok := g.src.(broker.WatchedFiles); ok {
		for _, p := range f.WatchedFiles() {
			if cur, err := readSmall(p); err == nil && bytes.Equal(cur, data) {
				g.inSync[clean(p)] = sha256.Sum256(data)
			}
		}
	}
	for _, c := range g.copies {
		f, ok := c.Sink.(broker.WatchedFiles)
		if !ok {
			continue
		}
		want, err := credential.ForCopy(kind, data, c.Options)
		if err != nil {
			continue
		}
		for _, p := range f.WatchedFiles() {
			if cur, err := readSmall(p); err == nil && bytes.Equal(cur, want) {
				g.inSync[clean(p)] = sha256.Sum256(want)
			}
		}
	}
}
