package resident

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/mc-broker/mc-broker/broker/watch/lockmirror"
	"github.com/mc-broker/mc-broker/sinks/dir"
)

// DefaultLockDir holds the agent's own lock files: a tmpfs in its
// container (the root file system is read-only).
const DefaultLockDir = "/tmp/mc-broker-locks"

// ServeOptions qualify Serve.
type ServeOptions struct {
	// Watch sends "changed" events (inotify on each file's directory);
	// without it (--once, an exec by sync) only requests are answered.
	Watch bool
	// LockDir is where the agent keeps its own lock files (DefaultLockDir
	// when empty).
	LockDir string
}

// Serve answers requests from in on out until in ends (nil) or ctx ends.
func Serve(ctx context.Context, in io.Reader, out io.Writer, files []FileSpec, o ServeOptions) error {
	if o.LockDir == "" {
		o.LockDir = DefaultLockDir
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w := &writer{out: out}
	sinks := make([]*dir.Sink, len(files))
	for i, f := range files {
		sinks[i] = dir.New(dir.Options{
			Dir: filepath.Dir(f.Path), FileName: filepath.Base(f.Path),
			LockFiles: f.LockFiles, WriteLock: f.WriteLock, LockDir: o.LockDir,
		})
	}
	if err := w.send(Reply{Event: "hello", Version: Version, Files: len(files)}); err != nil {
		return err
	}
	if o.Watch {
		go watchFiles(ctx, files, w)
	}
	// Requests run side by side, writes to one file one at a time: a
	// container holding its CLI's locks delays only writes to its own
	// copy, never a read, a refresh-lock request or another file (the
	// watcher makes lock requests on its one goroutine).
	var (
		writing  = make([]sync.Mutex, len(files))
		inFlight = make(chan struct{}, maxInFlight)
		wg       sync.WaitGroup
		sendErr  error
		errOnce  sync.Once
	)
	defer func() { cancel(); wg.Wait() }()
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), MaxLine)
	for sc.Scan() {
		var req Request
		if err := json.Unmarshal(sc.Bytes(), &req); err != nil {
			return fmt.Errorf("a request that is not JSON: %w", err)
		}
		select {
		case inFlight <- struct{}{}:
		case <-ctx.Done():
			return sendErr
		}
		wg.Add(1)
		go func() {
			defer func() { <-inFlight; wg.Done() }()
			rep := handle(ctx, sinks, writing, req)
			rep.ID = req.ID
			if err := w.send(rep); err != nil {
				errOnce.Do(func() { sendErr = err; cancel() })
			}
		}()
	}
	if err := sc.Err(); err != nil {
		return err
	}
	wg.Wait()
	return sendErr
}

// maxInFlight bounds the requests handled at once; the host makes a few.
const maxInFlight = 32

// requestTimeout bounds one request inside the agent, below the host's 10 s
// per request: a write that cannot get its CLI's locks fails here, and its
// answer reaches the host, rather than the host giving up on the agent.
const requestTimeout = 8 * time.Second

func handle(ctx context.Context, sinks []*dir.Sink, writing []sync.Mutex, req Request) Reply {
	if req.File < 0 || req.File >= len(sinks) {
		return Reply{Err: fmt.Sprintf("no file %d", req.File)}
	}
	s := sinks[req.File]
	if err := realDirs(filepath.Dir(s.Location())); err != nil {
		return failed(req.File, err)
	}
	rctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	if req.Op == "write" || req.Op == "add" {
		writing[req.File].Lock()
		defer writing[req.File].Unlock()
	}
	switch req.Op {
	case "read":
		data, err := s.Read(rctx)
		if errors.Is(err, fs.ErrNotExist) {
			return Reply{File: req.File}
		}
		if err != nil {
			return failed(req.File, err)
		}
		return Reply{File: req.File, Exists: true, Data: data}
	case "write":
		var rep Reply
		err := s.Update(rctx, func(current []byte, exists bool) ([]byte, bool) {
			if (req.Expect == Absent && !exists) || (exists && req.Expect == Sum(current)) {
				rep = Reply{Written: true}
				return req.Data, true
			}
			rep = Reply{Changed: true, Exists: exists, Data: current}
			return nil, false
		})
		if err != nil {
			return failed(req.File, err)
		}
		rep.File = req.File
		return rep
	case "add":
		ok, err := s.WriteIfAbsent(rctx, req.Name, req.Data)
		if err != nil {
			return failed(req.File, err)
		}
		return Reply{File: req.File, Written: ok}
	}
	if rep, ok := handleLock(filepath.Dir(s.Location()), req); ok {
		rep.File = req.File
		return rep
	}
	return Reply{File: req.File, Err: fmt.Sprintf("unknown request %q", req.Op)}
}

// handleLock does a refresh-lock request in dir, as the watcher's lock
// mirroring does in a directory on the host.
func handleLock(dir string, req Request) (Reply, bool) {
	l := lockmirror.Local(dir)
	var err error
	switch req.Op {
	case "lockstat":
		id, isDir, err := l.StatLock()
		if errors.Is(err, fs.ErrNotExist) {
			return Reply{}, true
		}
		if err != nil {
			return lockFailed(err), true
		}
		return Reply{Lock: &Lock{Dev: id.Dev, Ino: id.Ino, Ctime: id.Ctime, Born: id.Born, IsDir: isDir}}, true
	case "lockmk":
		err = l.MkdirLock()
	case "lockrm":
		err = l.RemoveLock()
	case "ownerw":
		var o lockmirror.Owner
		if err := json.Unmarshal(req.Data, &o); err != nil {
			return lockFailed(err), true
		}
		err = l.WriteOwner(o)
	case "ownerr":
		o, err := l.ReadOwner()
		if err != nil {
			return lockFailed(err), true
		}
		if o == nil {
			return Reply{}, true
		}
		data, _ := json.Marshal(o)
		return Reply{Exists: true, Data: data}, true
	case "ownerrm":
		err = l.RemoveOwner()
	default:
		return Reply{}, false
	}
	if err != nil {
		return lockFailed(err), true
	}
	return Reply{Written: true}, true
}

func lockFailed(err error) Reply {
	return Reply{Err: err.Error(), NotExist: errors.Is(err, fs.ErrNotExist), Exist: errors.Is(err, fs.ErrExist)}
}

func failed(file int, err error) Reply {
	return Reply{File: file, Err: err.Error(), NotExist: errors.Is(err, fs.ErrNotExist)}
}

// realDirs fails when a directory on the way to dir is a symlink or not a
// directory: a container that can write one volume could otherwise point
// a copy's path into another volume the agent mounts, or into the agent's
// own file system. (The directory sink checks the last one, and opens
// files without following links.) A part that does not exist yet is fine:
// the write makes it.
func realDirs(dir string) error {
	p := "/"
	for _, part := range strings.Split(strings.TrimPrefix(filepath.Clean(dir), "/"), "/") {
		if part == "" {
			continue
		}
		p = filepath.Join(p, part)
		fi, err := os.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			return fmt.Errorf("refusing to use %s: it is a symlink", p)
		}
		if !fi.IsDir() {
			return fmt.Errorf("%s is not a directory", p)
		}
	}
	return nil
}

// writer sends lines one at a time (answers and events interleave).
type writer struct {
	mu  sync.Mutex
	out io.Writer
}

func (w *writer) send(r Reply) error {
	line, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if len(line) >= MaxLine {
		return fmt.Errorf("an answer of %d bytes is over the protocol's limit", len(line))
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	_, err = w.out.Write(append(line, '\n'))
	return err
}

// watchFiles sends a "changed" event whenever inotify sees the file's name
// change in its directory (a rename over it, a write, a removal); events
// that pile up while one is sent are coalesced per file. A directory that
// does not exist yet is looked for every second.
func watchFiles(ctx context.Context, files []FileSpec, w *writer) {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return
	}
	defer fw.Close()
	byDir := map[string][]int{}
	for i, f := range files {
		d := filepath.Dir(f.Path)
		byDir[d] = append(byDir[d], i)
	}
	// watched is each watched directory's identity when its watch was
	// added: a directory removed, renamed or swapped since (a container
	// can do any of that in its volume) is watched again by path, or
	// inotify would follow the old inode and the copy would go unwatched
	// while the host believes the agent watches it.
	watched := map[string]dirID{}
	complete := false
	nudge := make(chan struct{}, 1)
	pending := make([]bool, len(files))
	locks := make([]bool, len(files)) // Claude's refresh lock beside it
	var mu sync.Mutex
	markAll := func(idx []int) {
		mu.Lock()
		for _, i := range idx {
			pending[i] = true
		}
		mu.Unlock()
		select {
		case nudge <- struct{}{}:
		default:
		}
	}
	unwatch := func(d string) {
		if _, ok := watched[d]; !ok {
			return
		}
		_ = fw.Remove(d)
		delete(watched, d)
		complete = false
		// Whatever is there now is read once it is watched again; until
		// then the host reads it now.
		markAll(byDir[d])
	}
	addDirs := func() bool {
		all := true
		for d, idx := range byDir {
			if _, ok := watched[d]; ok {
				continue
			}
			// A real directory only: inotify follows a symlink, which
			// could lead into another volume this agent mounts.
			id, ok := dirIdentity(d)
			if !ok || fw.Add(d) != nil {
				all = false
				continue
			}
			if again, ok := dirIdentity(d); !ok || again != id {
				_ = fw.Remove(d)
				all = false
				continue
			}
			watched[d] = id
			// It may have changed while it was not watched.
			for _, i := range idx {
				if w.send(Reply{Event: "changed", File: i}) != nil {
					return true
				}
			}
		}
		return all
	}
	complete = addDirs()
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-nudge:
			}
			mu.Lock()
			var due []Reply
			for i := range pending {
				// A lock first: a waiting Claude Code elsewhere is held
				// back as soon as possible.
				if locks[i] {
					due = append(due, Reply{Event: "lock", File: i})
					locks[i] = false
				}
				if pending[i] {
					due = append(due, Reply{Event: "changed", File: i})
					pending[i] = false
				}
			}
			mu.Unlock()
			for _, r := range due {
				if w.send(r) != nil {
					return
				}
			}
		}
	}()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			// A parent renamed or swapped raises no event on the
			// directory itself: its identity tells.
			for d, id := range watched {
				if now, ok := dirIdentity(d); !ok || now != id {
					unwatch(d)
				}
			}
			if !complete {
				complete = addDirs()
			}
		case <-fw.Errors:
			// An overflow: anything may have changed.
			mu.Lock()
			for i := range pending {
				pending[i] = true
			}
			mu.Unlock()
			select {
			case nudge <- struct{}{}:
			default:
			}
		case ev, ok := <-fw.Events:
			if !ok {
				return
			}
			if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
				if _, ok := watched[filepath.Clean(ev.Name)]; ok {
					// The watched directory itself went.
					unwatch(filepath.Clean(ev.Name))
					complete = addDirs()
					continue
				}
			}
			d, name := filepath.Dir(ev.Name), filepath.Base(ev.Name)
			hit := false
			mu.Lock()
			for _, i := range byDir[d] {
				switch name {
				case filepath.Base(files[i].Path):
					pending[i], hit = true, true
				case lockmirror.LockName:
					locks[i], hit = true, true
				}
			}
			mu.Unlock()
			if hit {
				select {
				case nudge <- struct{}{}:
				default:
				}
			}
		}
	}
}

// dirID is a directory's identity: device and inode.
type dirID struct{ dev, ino uint64 }

// dirIdentity is d's identity when d is a directory, not a symlink.
func dirIdentity(d string) (dirID, bool) {
	fi, err := os.Lstat(d)
	if err != nil || !fi.IsDir() {
		return dirID{}, false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return dirID{}, false
	}
	return dirID{uint64(st.Dev), uint64(st.Ino)}, true
}
