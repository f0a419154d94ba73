package volume

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/client"

	"github.com/mc-broker/mc-broker/broker"
	"github.com/mc-broker/mc-broker/sinks/volume/engine"
	"github.com/mc-broker/mc-broker/sinks/volume/resident"
)

// LabelAgent marks a resident agent container (value "true"); it also has
// LabelHelper "agent", LabelOwner and LabelAgentUser.
const (
	LabelAgent     = "org.mc-broker.agent"
	LabelAgentUser = "org.mc-broker.agent-user"
)

// agentPath is where the agent's binary goes in its container.
const agentPath = "/mc-broker"

// agentMounts is where the agent container mounts volume n: /v/n.
func agentMount(n int) string { return "/v/" + strconv.Itoa(n) }

// agentBackoff bounds the wait before an agent that failed or ended is
// started again.
var (
	agentMinBackoff = 500 * time.Millisecond
	agentMaxBackoff = 30 * time.Second
	// agentSettle gathers the copies that start following at about the same
	// time (a watcher starting) into one agent start.
	agentSettle = 50 * time.Millisecond
)

// agentKey is one resident agent: an engine, the user its copies are
// written as (the agent runs as that user, so what it writes is theirs),
// and one volume. One agent per volume, not per user: the agent resolves
// paths a container can change under it (a directory swapped for a
// symlink between its check and its use), and with only that container's
// own volume mounted, such a swap can lead nowhere the container could
// not write anyway. Copies at several paths of one volume share it.
type agentKey struct {
	sel      engine.Selection
	uid, gid int
	volume   string
}

// agentSup supervises one resident agent: started when the first copy
// follows its changes (Sink.Changes), started again with backoff when it
// ends, and with the copies it serves when that set changes; stopped and
// removed when the last copy stops following, so that `docker volume rm`
// works whenever no watcher runs.
type agentSup struct {
	sh  *Shared
	key agentKey

	mu      sync.Mutex
	subs    map[*Sink]*agentSub
	run     *agentRun
	wake    chan struct{}
	stop    context.CancelFunc
	stopped chan struct{} // closed when the supervisor goroutine ends
}

type agentSub struct {
	mu      sync.Mutex
	ch      chan struct{}
	closed  bool
	onError func(error)
}

func (s *agentSub) notify() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	select {
	case s.ch <- struct{}{}:
	default:
	}
}

func (s *agentSub) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		close(s.ch)
	}
}

// agentRun is a running agent.
type agentRun struct {
	conn   *agentConn
	id     string
	c      *client.Client
	files  map[*Sink]int
	bySlot []*Sink
}

func (s *Shared) agentFor(k agentKey) *agentSup {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.agents == nil {
		s.agents = map[agentKey]*agentSup{}
	}
	a := s.agents[k]
	if a == nil {
		a = &agentSup{sh: s, key: k, subs: map[*Sink]*agentSub{}, wake: make(chan struct{}, 1)}
		s.agents[k] = a
	}
	return a
}

func (a *agentSup) add(s *Sink, sub *agentSub) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if old := a.subs[s]; old != nil {
		old.close()
	}
	a.subs[s] = sub
	if a.stop == nil {
		ctx, cancel := context.WithCancel(context.Background())
		a.stop, a.stopped = cancel, make(chan struct{})
		go a.supervise(ctx, a.stopped)
	}
	a.poke()
}

// remove stops serving s; with no copy left the agent is stopped and
// removed, and the channel returned is closed once it is.
func (a *agentSup) remove(s *Sink, sub *agentSub) <-chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	if cur := a.subs[s]; cur == sub || sub == nil {
		delete(a.subs, s)
	}
	if len(a.subs) == 0 {
		// Also when the last follower's context ended first: Close still
		// waits for the container to go.
		if a.stop != nil {
			a.stop()
			a.stop = nil
		}
		return a.stopped
	}
	a.poke()
	return nil
}

func (a *agentSup) poke() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// serving returns the connection and file index of s, when the running
// agent serves it.
func (a *agentSup) serving(s *Sink) (*agentConn, int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.run == nil {
		return nil, 0
	}
	i, ok := a.run.files[s]
	if !ok || a.run.conn.Err() != nil {
		return nil, 0
	}
	return a.run.conn, i
}

func (a *agentSup) notifyAll() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, sub := range a.subs {
		sub.notify()
	}
}

func (a *agentSup) tell(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, sub := range a.subs {
		if sub.onError != nil {
			sub.onError(err)
		}
	}
}

func (a *agentSup) supervise(ctx context.Context, stopped chan struct{}) {
	defer close(stopped)
	backoff := agentMinBackoff
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
			return
		case <-time.After(agentSettle):
		}
		select {
		case <-a.wake: // the set just settled
		default:
		}
		a.mu.Lock()
		sinks := make([]*Sink, 0, len(a.subs))
		for s := range a.subs {
			sinks = append(sinks, s)
		}
		a.mu.Unlock()
		run, err := a.start(ctx, sinks)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			a.tell(err)
			var nb *NoAgentBinaryError
			if errors.As(err, &nb) {
				// Nothing will change that while this process runs: the
				// copies stay on polling.
				<-ctx.Done()
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-a.wake:
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, agentMaxBackoff)
			continue
		}
		if run == nil {
			// No copy's volume exists yet: wait until one is written.
			select {
			case <-ctx.Done():
				return
			case <-a.wake:
			}
			continue
		}
		started := time.Now()
		a.mu.Lock()
		a.run = run
		a.mu.Unlock()
		// Read every copy it serves now, and look at their refresh locks:
		// a change or a lock taken before it ran is not lost (the agent
		// tells only what changes once it watches).
		a.notifyAll()
		for s := range run.files {
			s.lockChanged()
		}
		var restart bool
	running:
		for {
			select {
			case <-ctx.Done():
			case <-run.conn.Done():
				if err := run.conn.Err(); err != nil && !errors.Is(err, errAgentGone) {
					a.tell(fmt.Errorf("the resident agent ended (%v); starting it again", err))
				}
				restart = true
			case <-a.wake:
				if !a.stale(ctx, run) {
					continue
				}
			}
			break running
		}
		a.mu.Lock()
		a.run = nil
		a.mu.Unlock()
		run.conn.Close()
		_ = removeHelper(ctx, run.c, run.id)
		a.notifyAll()
		if restart {
			if time.Since(started) > time.Minute {
				backoff = agentMinBackoff
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, agentMaxBackoff)
		}
	}
}

// start creates and starts an agent serving those of sinks whose volume
// exists and is theirs to use; nil (no error) when there is none.
func (a *agentSup) start(ctx context.Context, sinks []*Sink) (*agentRun, error) {
	h := a.sh.on(a.key.sel)
	e, err := h.engine(ctx)
	if err != nil {
		return nil, err
	}
	c := e.Client()
	arch, err := h.archOf(ctx, c)
	if err != nil {
		return nil, h.classify(e, err)
	}
	bin, err := findAgentBinary(arch)
	if err != nil {
		return nil, err
	}
	sort.Slice(sinks, func(i, j int) bool { return sinks[i].Location() < sinks[j].Location() })
	vols := map[string]int{}
	var (
		mounts []mount.Mount
		files  []resident.FileSpec
		run    = &agentRun{c: c, files: map[*Sink]int{}}
	)
	for _, s := range sinks {
		ok, err := s.servable(ctx, c)
		if err != nil {
			return nil, h.classify(e, err)
		}
		if !ok {
			continue
		}
		n, ok := vols[s.o.Volume]
		if !ok {
			n = len(vols)
			vols[s.o.Volume] = n
			mounts = append(mounts, mount.Mount{Type: mount.TypeVolume, Source: s.o.Volume, Target: agentMount(n)})
		}
		run.files[s] = len(files)
		run.bySlot = append(run.bySlot, s)
		files = append(files, resident.FileSpec{
			Path:      path.Join(agentMount(n), s.o.Path, s.o.FileName),
			LockFiles: s.o.LockFiles, WriteLock: s.o.WriteLock,
		})
	}
	if len(files) == 0 {
		return nil, nil
	}
	names := make([]string, 0, len(mounts))
	for _, m := range mounts {
		names = append(names, m.Source)
	}
	image, err := ensureAgentImage(ctx, c, bin)
	if err != nil {
		return nil, h.classify(e, err)
	}
	id, err := a.create(ctx, c, image, e.Podman(), mounts, files, strings.Join(names, ","))
	if err != nil {
		return nil, h.classify(e, fmt.Errorf("create the resident agent's container: %w", err))
	}
	run.id = id
	ok := false
	defer func() {
		if !ok {
			_ = removeHelper(ctx, c, id)
		}
	}()
	actx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	att, err := attachStream(actx, e, id)
	if err != nil {
		return nil, h.classify(e, fmt.Errorf("attach to the resident agent: %w", err))
	}
	stdout, stderr := demux(att.r)
	if _, err := c.ContainerStart(actx, id, client.ContainerStartOptions{}); err != nil {
		att.close()
		return nil, h.classify(e, fmt.Errorf("start the resident agent: %w", err))
	}
	conn, err := newAgentConn(ctx, stdout, att.w, att.close, func(ev string, i int) {
		if i >= len(run.bySlot) {
			return
		}
		if ev == "lock" {
			run.bySlot[i].lockChanged()
			return
		}
		a.mu.Lock()
		sub := a.subs[run.bySlot[i]]
		a.mu.Unlock()
		if sub != nil {
			sub.notify()
		}
	})
	if err != nil {
		att.close()
		if msg := stderr.String(); msg != "" {
			err = fmt.Errorf("%w: %s", err, msg)
		}
		return nil, fmt.Errorf("the resident agent did not start: %w", err)
	}
	run.conn = conn
	ok = true
	return run, nil
}

// servable reports whether the agent can serve the copy now. Not when its
// volume is not there yet (the first write makes it and wakes the agent),
// is not this user's, or was not made by mc-broker and not adopted (its
// contents are checked through a helper): such a copy is polled.
func (s *Sink) servable(ctx context.Context, c *client.Client) (bool, error) {
	if s.check() != nil {
		return false, nil
	}
	labels, exists, err := s.inspectVolume(ctx, c)
	if err != nil {
		return false, err
	}
	return exists && s.checkOwner(labels) == nil && !needsContentCheck(labels, s.o.Adopt), nil
}

// stale reports whether run no longer serves the copies it should: one
// stopped following, or one it does not serve could be served now (its
// volume was created). A wake that changes nothing (a volume created while
// the agent was starting, which it mounts already) must not restart it:
// a restart has every copy read again and, meanwhile, writes take the
// slow path.
func (a *agentSup) stale(ctx context.Context, run *agentRun) bool {
	a.mu.Lock()
	subs := make([]*Sink, 0, len(a.subs))
	for s := range a.subs {
		subs = append(subs, s)
	}
	a.mu.Unlock()
	for s := range run.files {
		if !slices.Contains(subs, s) {
			return true
		}
	}
	for _, s := range subs {
		if _, ok := run.files[s]; ok {
			continue
		}
		if ok, err := s.servable(ctx, run.c); ok || err != nil {
			return true
		}
	}
	return false
}

// create makes the agent's container: mc-broker's binary from the empty
// image, no network, a read-only root (a small tmpfs at /tmp for its lock
// files), no capabilities, no new privileges, as the copies' user, with
// stdin open for the host's requests and removed when it exits.
func (a *agentSup) create(ctx context.Context, c *client.Client, image string, podman bool, mounts []mount.Mount, files []resident.FileSpec, volumes string) (string, error) {
	// Not cancelled with the watcher: a create cut short can still make
	// the container on the engine, and without its id nothing removes it.
	// The caller removes it when it stops before the agent runs.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
	defer cancel()
	cmd := []string{agentPath, "vol-agent"}
	for _, f := range files {
		cmd = append(cmd, "--file", f.String())
	}
	user := strconv.Itoa(a.key.uid) + ":" + strconv.Itoa(a.key.gid)
	hc := &container.HostConfig{
		NetworkMode:    "none",
		Mounts:         mounts,
		ReadonlyRootfs: true,
		CapDrop:        []string{"ALL"},
		SecurityOpt:    []string{"no-new-privileges"},
		AutoRemove:     true,
		Resources:      agentResources(),
	}
	if podman {
		// Rootful Podman asks for more open files than an engine without
		// CAP_SYS_RESOURCE may set (docs/VOLUMES.md); its --read-only
		// brings a tmpfs at /tmp.
		hc.Ulimits = []*container.Ulimit{{Name: "nofile", Soft: 1024, Hard: 1024}, {Name: "nproc", Soft: 1024, Hard: 1024}}
	} else {
		hc.Tmpfs = map[string]string{"/tmp": "rw,noexec,nosuid,nodev,size=1m,mode=1777"}
	}
	me := CurrentOwner()
	create := func() (string, error) {
		res, err := c.ContainerCreate(ctx, client.ContainerCreateOptions{
			Config: &container.Config{
				Image:           image,
				Cmd:             cmd,
				User:            user,
				NetworkDisabled: true,
				// The agent's work is small: a few threads and a few MiB
				// whatever the host's size; the limits above hold it there.
				Env:          []string{"GOMAXPROCS=2", "GOMEMLIMIT=" + strconv.Itoa(agentMemory*3/4>>20) + "MiB"},
				OpenStdin:    true,
				StdinOnce:    true,
				AttachStdin:  true,
				AttachStdout: true,
				AttachStderr: true,
				Labels: map[string]string{
					LabelManaged:   "true",
					LabelHelper:    "agent",
					LabelAgent:     "true",
					LabelAgentUser: user,
					LabelOwner:     me.ID,
					LabelPID:       strconv.Itoa(os.Getpid()),
					LabelHost:      a.sh.hostname,
					LabelVolume:    volumes,
				},
			},
			HostConfig: hc,
		})
		return res.ID, err
	}
	return create()
}

// agentMemory and agentPids bound the agent's container: it holds a few
// logins of at most resident.MaxLine bytes and one goroutine per file, so
// a runaway agent (a bug, or a container feeding it events) cannot take
// the engine's memory or process table.
const (
	agentMemory = 64 << 20
	agentPids   = 64
)

func agentResources() container.Resources {
	pids := int64(agentPids)
	return container.Resources{Memory: agentMemory, MemorySwap: agentMemory, PidsLimit: &pids}
}

// LabelAgentImage marks the agent's images.
const LabelAgentImage = "org.mc-broker.agent-image"

// AgentImageRepo is the repository of the agent's images: one image per
// mc-broker binary, tagged with the first 12 hex digits of its SHA-256.
const AgentImageRepo = "mc-broker-agent"

// ensureAgentImage makes the image the agent runs from: the static binary
// alone at agentPath (mode 0555, root's), imported from a tar like the
// helper image (nothing pulled, no registry). An image rather than a copy
// into the container because Docker refuses a copy into a read-only root
// file system. Images of other binaries (an older mc-broker) are removed
// when no container uses them.
func ensureAgentImage(ctx context.Context, c *client.Client, bin string) (string, error) {
	sum, size, err := binarySum(bin)
	if err != nil {
		return "", err
	}
	ref := AgentImageRepo + ":" + sum[:12]
	ictx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	if _, err := c.ImageInspect(ictx, ref); err == nil {
		return ref, nil
	} else if !cerrdefs.IsNotFound(err) {
		return "", fmt.Errorf("cannot look up the agent image %s: %w", ref, err)
	}
	f, err := os.Open(bin)
	if err != nil {
		return "", err
	}
	defer f.Close()
	pr, pw := io.Pipe()
	go func() {
		tw := tar.NewWriter(pw)
		err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(agentPath, "/"), Mode: 0o555, Size: size, ModTime: time.Unix(0, 0), Format: tar.FormatPAX})
		if err == nil {
			_, err = io.Copy(tw, io.LimitReader(f, size))
		}
		if err == nil {
			err = tw.Close()
		}
		pw.CloseWithError(err)
	}()
	res, err := c.ImageImport(ictx, client.ImageImportSource{Source: pr, SourceName: "-"}, ref, client.ImageImportOptions{
		Message: "mc-broker's resident agent: mc-broker's static binary alone",
		Changes: []string{"LABEL " + LabelManaged + "=true", "LABEL " + LabelAgentImage + "=true"},
	})
	if err != nil {
		pr.CloseWithError(err)
		return "", fmt.Errorf("cannot create the agent image %s: %w", ref, err)
	}
	_, err = io.Copy(io.Discard, res)
	res.Close()
	if err != nil {
		return "", fmt.Errorf("cannot create the agent image %s: %w", ref, err)
	}
	removeOtherAgentImages(ctx, c, ref)
	return ref, nil
}

// removeOtherAgentImages removes agent images other than keep; one a
// container uses (another user's agent from another binary) stays.
func removeOtherAgentImages(ctx context.Context, c *client.Client, keep string) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	list, err := c.ImageList(ctx, client.ImageListOptions{Filters: make(client.Filters).Add("label", LabelAgentImage)})
	if err != nil {
		return
	}
	for _, img := range list.Items {
		// Podman names it docker.io/library/REPO:TAG.
		if slices.ContainsFunc(img.RepoTags, func(t string) bool { return t == keep || strings.HasSuffix(t, "/"+keep) }) {
			continue
		}
		_, _ = c.ImageRemove(ctx, img.ID, client.ImageRemoveOptions{})
	}
}

var (
	sumMu    sync.Mutex
	sumCache = map[string]struct {
		mod  time.Time
		size int64
		sum  string
	}{}
)

// binarySum is the binary's SHA-256 (hex) and size, cached by path, size
// and mtime.
func binarySum(bin string) (string, int64, error) {
	fi, err := os.Stat(bin)
	if err != nil {
		return "", 0, err
	}
	sumMu.Lock()
	defer sumMu.Unlock()
	if c, ok := sumCache[bin]; ok && c.size == fi.Size() && c.mod.Equal(fi.ModTime()) {
		return c.sum, c.size, nil
	}
	f, err := os.Open(bin)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", 0, err
	}
	sum := hex.EncodeToString(h.Sum(nil))
	sumCache[bin] = struct {
		mod  time.Time
		size int64
		sum  string
	}{fi.ModTime(), fi.Size(), sum}
	return sum, fi.Size(), nil
}

// demux splits the engine's multiplexed attach stream (no TTY) into stdout,
// as a pipe, and the last few KiB of stderr. A frame larger than a protocol
// line ends the stream: the agent cannot make the host buffer more.
func demux(r io.Reader) (io.Reader, *tail) {
	pr, pw := io.Pipe()
	errs := &tail{}
	go func() {
		var hdr [8]byte
		for {
			if _, err := io.ReadFull(r, hdr[:]); err != nil {
				pw.CloseWithError(err)
				return
			}
			n := binary.BigEndian.Uint32(hdr[4:])
			if n > resident.MaxLine+64 {
				pw.CloseWithError(fmt.Errorf("the agent sent a frame of %d bytes", n))
				return
			}
			var dst io.Writer = pw
			if hdr[0] == 2 {
				dst = errs
			}
			if _, err := io.CopyN(dst, r, int64(n)); err != nil {
				pw.CloseWithError(err)
				return
			}
		}
	}()
	return pr, errs
}

// tail keeps the last 2 KiB written to it (the agent's stderr: error
// messages, never content).
type tail struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > 2048 {
		t.buf = t.buf[len(t.buf)-2048:]
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

var (
	_ broker.ChangeNotifier = (*Sink)(nil)
	_ broker.PushFallback   = (*Sink)(nil)
)

// Changes follows the copy through the engine's resident agent (one per
// engine and user, started here when the first copy follows, stopped when
// the last stops): the agent sees a change with inotify and says so within
// milliseconds. The channel gets a value when watching starts, whenever the
// agent reports a change, and whenever the agent starts or stops (read the
// copy). While no agent serves the copy (none can run, its volume does not
// exist yet, it is being restarted) Pushing reports false and the watcher
// polls Changed as before, so behaviour never gets worse than polling.
func (s *Sink) Changes(ctx context.Context, onError func(error)) <-chan struct{} {
	sub := &agentSub{ch: make(chan struct{}, 1), onError: onError}
	sub.notify()
	if err := s.check(); err != nil {
		if onError != nil {
			onError(err)
		}
		go func() { <-ctx.Done(); sub.close() }()
		return sub.ch
	}
	a := s.o.Shared.agentFor(agentKey{sel: s.o.Engine, uid: s.uid(), gid: s.gid(), volume: s.o.Volume})
	s.supMu.Lock()
	s.sup = a
	s.supMu.Unlock()
	a.add(s, sub)
	go func() {
		<-ctx.Done()
		a.remove(s, sub)
		sub.close()
	}()
	return sub.ch
}

// Pushing reports whether a resident agent serves the copy now.
func (s *Sink) Pushing() bool {
	conn, _ := s.agent()
	return conn != nil
}

// agent is the running agent serving the copy, if any.
func (s *Sink) agent() (*agentConn, int) {
	s.supMu.Lock()
	a := s.sup
	s.supMu.Unlock()
	if a == nil {
		return nil, 0
	}
	return a.serving(s)
}

// pokeAgent has the agent include the copy, when it follows changes but is
// not served (its volume was just created).
func (s *Sink) pokeAgent() {
	s.supMu.Lock()
	a := s.sup
	s.supMu.Unlock()
	if a == nil {
		return
	}
	if conn, _ := a.serving(s); conn == nil {
		a.poke()
	}
}

// stopFollowing ends the copy's part in its agent, waiting (a little) for
// the agent's container to be removed when it was the last.
func (s *Sink) stopFollowing() {
	s.supMu.Lock()
	a := s.sup
	s.sup = nil
	s.supMu.Unlock()
	if a == nil {
		return
	}
	if done := a.remove(s, nil); done != nil {
		select {
		case <-done:
		case <-time.After(removeTimeout):
		}
	}
}

// readViaAgent reads the copy through the running agent; ok is false when
// none serves it or the agent failed (the helper path then reads).
func (s *Sink) readViaAgent(ctx context.Context) (data []byte, exists, ok bool) {
	conn, i, release, ok := s.transport(ctx, false)
	if !ok {
		return nil, false, false
	}
	defer release()
	rep, err := conn.call(ctx, resident.Request{Op: "read", File: i})
	if err != nil || rep.Err != "" {
		return nil, false, false
	}
	return rep.Data, rep.Exists, true
}

// agentTries bounds how often one Update decides again because the copy
// changed between its read and its write (a container writing at that
// moment).
const agentTries = 4

// updateViaAgent is Update through the running agent, under mc-broker's
// lock: read, decide here, and write only if the copy still holds what
// was decided on (the agent checks just before its rename); when it no
// longer does, decide again with what it holds now. A container's newer
// login written during a fan-out is then never overwritten: the plan sees
// it. ok is false when no agent serves the copy, or the agent failed
// before anything was written (the helper path then does the update).
func (s *Sink) updateViaAgent(ctx context.Context, decide broker.Decide, companions map[string][]byte) (done map[string]bool, ok bool, err error) {
	conn, i, release, ok := s.transport(ctx, true)
	if !ok {
		return nil, false, nil
	}
	defer release()
	rep, err := conn.call(ctx, resident.Request{Op: "read", File: i})
	if err != nil || rep.Err != "" {
		return nil, false, nil
	}
	for range agentTries {
		if err := ctx.Err(); err != nil {
			return nil, true, err
		}
		var current []byte
		if rep.Exists {
			current = rep.Data
		}
		next, write := decide(current, rep.Exists)
		if !write {
			if rep.Exists {
				return s.addCompanions(ctx, conn, i, companions), true, nil
			}
			return map[string]bool{}, true, nil
		}
		expect := resident.Absent
		if rep.Exists {
			expect = resident.Sum(current)
		}
		w, err := conn.call(ctx, resident.Request{Op: "write", File: i, Data: next, Expect: expect})
		if err != nil || w.Err != "" {
			return nil, false, nil
		}
		if w.Written {
			return s.addCompanions(ctx, conn, i, companions), true, nil
		}
		rep = w
	}
	return nil, true, fmt.Errorf("%s kept changing while it was being written; the next pass tries again", s.Location())
}

// addCompanions creates the companions missing beside the login through
// the agent (never replacing one there); a failure leaves them for the
// next update.
func (s *Sink) addCompanions(ctx context.Context, conn *agentConn, i int, companions map[string][]byte) map[string]bool {
	done := map[string]bool{}
	names := make([]string, 0, len(companions))
	for name := range companions {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if name == s.o.FileName || name == "" || name == "." || name == ".." || path.Base(name) != name {
			continue
		}
		rep, err := conn.call(ctx, resident.Request{Op: "add", File: i, Name: name, Data: companions[name]})
		if err == nil && rep.Err == "" {
			done[name] = rep.Written
		}
	}
	return done
}
