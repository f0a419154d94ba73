package volume

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/client"

	"github.com/mc-broker/mc-broker/sinks/volume/engine"
)

// Labels mc-broker puts on what it creates in the engine.
const (
	// LabelManaged marks volumes, the helper image and helper containers:
	// `docker volume ls --filter label=org.mc-broker.managed` lists the
	// volumes mc-broker created.
	LabelManaged = "org.mc-broker.managed"
	// LabelHelper marks helper containers; its value is the role: "copy"
	// (one read or write, removed at once) or "poll" (kept while a watcher
	// runs).
	LabelHelper = "org.mc-broker.helper"
	// LabelPID and LabelHost name the process that made a helper container,
	// so that the next run can tell a crashed run's leftovers from a live
	// watcher's.
	LabelPID  = "org.mc-broker.pid"
	LabelHost = "org.mc-broker.host"
	// LabelVolume names the volume a helper container mounts, for people
	// looking at `docker ps -a` and for tests counting one volume's helpers.
	LabelVolume = "org.mc-broker.volume"
	// LabelOwner and LabelOwnerName say whose a volume is (Owner.ID and
	// Owner.Name); mc-broker puts them on the volumes it creates.
	LabelOwner     = "org.mc-broker.owner"
	LabelOwnerName = "org.mc-broker.owner-name"
)

// HelperImage is the image helper containers are created from: imported
// once from an empty tar, so nothing is pulled and no registry is needed.
const HelperImage = "mc-broker-helper:empty"

// helperImage is HelperImage; tests use an image of their own.
var helperImage = HelperImage

// mountPoint is where a helper container mounts the volume.
const mountPoint = "/mc-broker-volume"

// neverRun is the helper container's command. The image is empty, so it
// could not run anyway; containers are only created, never started.
var neverRun = []string{"/mc-broker-helper-never-runs"}

// LeftoverAge is how old a "copy" helper container must be before any
// run removes it, whoever made it: a copy container lives for one read and
// one write, well under a second.
const LeftoverAge = 2 * time.Minute

// opTimeout bounds one engine operation once connected; removeTimeout a
// container removal done after the caller's context ended.
const (
	opTimeout     = 30 * time.Second
	removeTimeout = 10 * time.Second
)

// Shared is what all volume copies of one run share: per engine, the
// connection (made on first use), the helper image (made once), and the
// removal of a crashed run's leftovers (done once). Copies name their
// engine with Options.Engine; most use the environment's.
type Shared struct {
	lazy     *engine.Lazy // the environment's engine
	hostname string

	mu      sync.Mutex
	engines map[engine.Selection]*engineHandle
	// agents are the resident agents, per engine, user and volume (agent.go).
	agents map[agentKey]*agentSup
}

// engineHandle is one engine's part of Shared.
type engineHandle struct {
	shared *Shared
	lazy   *engine.Lazy

	mu    sync.Mutex
	ready *engine.Engine // the engine the image and cleanup were done on
	// arch is the engine's architecture once asked: every agent started
	// on it (one per volume, one-shot ones per written copy) needs it.
	arch string
}

// archOf is the engine's architecture (amd64, arm64), asked once per run.
func (h *engineHandle) archOf(ctx context.Context, c *client.Client) (string, error) {
	h.mu.Lock()
	a := h.arch
	h.mu.Unlock()
	if a != "" {
		return a, nil
	}
	a, err := engineArch(ctx, c)
	if err != nil {
		return "", err
	}
	h.mu.Lock()
	h.arch = a
	h.mu.Unlock()
	return a, nil
}

// NewShared returns the handle for one run; lazy is the environment's
// engine connection, and other engines are reached with its environment.
func NewShared(lazy *engine.Lazy) *Shared {
	h, _ := os.Hostname()
	return &Shared{lazy: lazy, hostname: h}
}

// Lazy is the environment's engine connection (doctor and init reuse it).
func (s *Shared) Lazy() *engine.Lazy { return s.lazy }

// on is the handle for the engine sel names.
func (s *Shared) on(sel engine.Selection) *engineHandle {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.engines == nil {
		s.engines = map[engine.Selection]*engineHandle{}
	}
	h := s.engines[sel]
	if h == nil {
		h = &engineHandle{shared: s, lazy: s.lazy.For(sel)}
		s.engines[sel] = h
	}
	return h
}

// Close releases every engine connection.
func (s *Shared) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	errs := []error{s.lazy.Close()}
	for sel, h := range s.engines {
		if !sel.IsZero() {
			errs = append(errs, h.lazy.Close())
		}
	}
	return errors.Join(errs...)
}

// engine connects (once), then makes sure the helper image exists and
// removes leftover helper containers, once per connection.
func (h *engineHandle) engine(ctx context.Context) (*engine.Engine, error) {
	e, err := h.lazy.Engine(ctx)
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ready == e {
		return e, nil
	}
	if err := ensureImage(ctx, e.Client()); err != nil {
		return nil, h.classify(e, err)
	}
	// Leftovers are removed on a best-effort basis: a failure here must not
	// stop the copies.
	_, _ = h.shared.RemoveLeftovers(ctx, e)
	h.ready = e
	return e, nil
}

// classify turns a failed call into an UnreachableError when the engine
// went away (or ssh to it failed), and drops the connection so the next
// call reconnects.
func (h *engineHandle) classify(e *engine.Engine, err error) error {
	if client.IsErrConnectionFailed(err) {
		h.lazy.Forget(e)
		return &engine.UnreachableError{Host: e.Endpoint.Host, From: e.Endpoint.From, Err: e.SSHFailure(err)}
	}
	return err
}

func ensureImage(ctx context.Context, c *client.Client) error {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	if _, err := c.ImageInspect(ctx, helperImage); err == nil {
		return nil
	} else if !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("cannot look up the helper image %s: %w", helperImage, err)
	}
	var empty bytes.Buffer
	tw := tar.NewWriter(&empty)
	if err := tw.Close(); err != nil {
		return err
	}
	res, err := c.ImageImport(ctx, client.ImageImportSource{Source: &empty, SourceName: "-"}, helperImage, client.ImageImportOptions{
		Message: "mc-broker helper: an empty image; its containers are created, never started",
		Changes: []string{"LABEL " + LabelManaged + "=true"},
	})
	if err != nil {
		return fmt.Errorf("cannot create the helper image %s: %w", helperImage, err)
	}
	defer res.Close()
	_, err = io.Copy(io.Discard, res)
	return err
}

// createHelper creates (never starts) a container that mounts volume. A
// helper image removed since it was made (`docker image prune -a` removes
// it whenever no container uses it) is made again.
func (s *Shared) createHelper(ctx context.Context, c *client.Client, volume, role string) (string, error) {
	id, err := s.create(ctx, c, volume, role)
	if cerrdefs.IsNotFound(err) {
		if ierr := ensureImage(ctx, c); ierr != nil {
			return "", ierr
		}
		id, err = s.create(ctx, c, volume, role)
	}
	return id, err
}

func (s *Shared) create(ctx context.Context, c *client.Client, volume, role string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	res, err := c.ContainerCreate(ctx, client.ContainerCreateOptions{
		Config: &container.Config{
			Image:           helperImage,
			Cmd:             neverRun,
			NetworkDisabled: true,
			Labels: map[string]string{
				LabelManaged: "true",
				LabelHelper:  role,
				LabelPID:     strconv.Itoa(os.Getpid()),
				LabelHost:    s.hostname,
				LabelVolume:  volume,
			},
		},
		HostConfig: &container.HostConfig{
			NetworkMode: "none",
			Mounts:      []mount.Mount{{Type: mount.TypeVolume, Source: volume, Target: mountPoint}},
		},
	})
	if err != nil {
		return "", err
	}
	return res.ID, nil
}

// removeHelper removes a helper container even when ctx is already
// cancelled (the run was interrupted): a helper is never left behind
// while the engine answers.
func removeHelper(ctx context.Context, c *client.Client, id string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), removeTimeout)
	defer cancel()
	_, err := c.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true})
	if cerrdefs.IsNotFound(err) {
		return nil
	}
	return err
}

// RemoveLeftovers removes helper containers that no live mc-broker run
// owns: those made on this host by a process that is gone, and "copy"
// helpers older than LeftoverAge whoever made them. A "poll" helper of a
// live watcher, or of a process on another host using the same engine, is
// left alone. It returns how many it removed.
func (s *Shared) RemoveLeftovers(ctx context.Context, e *engine.Engine) (int, error) {
	c := e.Client()
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	list, err := c.ContainerList(ctx, client.ContainerListOptions{
		All:     true,
		Filters: make(client.Filters).Add("label", LabelHelper),
	})
	if err != nil {
		return 0, err
	}
	removed := 0
	var errs []error
	for _, ctr := range list.Items {
		if !s.isLeftover(ctr.Labels, time.Unix(ctr.Created, 0)) {
			continue
		}
		if err := removeHelper(ctx, c, ctr.ID); err != nil {
			errs = append(errs, err)
			continue
		}
		removed++
	}
	return removed, errors.Join(errs...)
}

func (s *Shared) isLeftover(labels map[string]string, created time.Time) bool {
	if labels[LabelHelper] == "copy" && time.Since(created) > LeftoverAge {
		return true
	}
	if labels[LabelHost] != s.hostname {
		return false
	}
	pid, err := strconv.Atoi(labels[LabelPID])
	if err != nil || pid <= 0 {
		return true
	}
	if pid == os.Getpid() {
		return false
	}
	return !processAlive(pid)
}

// processAlive reports whether pid exists on this host (EPERM: it exists,
// owned by someone else).
func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
