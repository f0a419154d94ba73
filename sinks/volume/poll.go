package volume

import (
	"context"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
)

// Changed reports whether the copy may have changed since the previous
// call. It stats the file through one long-lived helper container (created
// on the first call, never started, removed by Close), so polling with
// nothing changed creates no container and reads no secret. The first call
// reports true.
func (s *Sink) Changed(ctx context.Context) (bool, error) {
	e, h, err := s.connect(ctx)
	if err != nil {
		return false, err
	}
	c := e.Client()
	s.pollMu.Lock()
	defer s.pollMu.Unlock()
	if s.pollID != "" && s.pollOn != e {
		// Reconnected: the engine usually just restarted and still has the
		// old poll helper, which would hold the volume in use beside the
		// new one until the next run cleaned up.
		_ = removeHelper(ctx, c, s.pollID)
		s.pollID, s.pollOn = "", nil
	}
	if s.pollID == "" {
		_, exists, err := s.inspectVolume(ctx, c)
		if err != nil {
			return false, s.fail(h, e, "inspect volume", err)
		}
		if !exists {
			// No volume yet: do not create it (a Changed call must not
			// change anything); it is a change once it appears.
			changed := !s.polled || !s.lastErr
			s.polled, s.lastErr = true, true
			return changed, nil
		}
		id, err := s.o.Shared.createHelper(ctx, c, s.o.Volume, "poll")
		if err != nil {
			return false, s.fail(h, e, "create poll container", err)
		}
		s.pollID, s.pollOn = id, e
	}
	sctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	res, err := c.ContainerStatPath(sctx, s.pollID, client.ContainerStatPathOptions{Path: s.containerPath()})
	missing := cerrdefs.IsNotFound(err)
	if missing {
		// A missing file and a missing container both answer 404: make
		// sure the poll container is still there (someone may have pruned
		// it), and make another next time if not.
		if _, ierr := c.ContainerInspect(sctx, s.pollID, client.ContainerInspectOptions{}); cerrdefs.IsNotFound(ierr) {
			s.pollID = ""
			return true, nil
		}
	}
	if err != nil && !missing {
		return false, s.fail(h, e, "stat "+s.containerPathInVolume(), err)
	}
	changed := !s.polled || missing != s.lastErr || (!missing && !sameStat(res.Stat, s.last))
	s.polled, s.lastErr = true, missing
	if !missing {
		s.last = res.Stat
	}
	return changed, nil
}

func sameStat(a, b container.PathStat) bool {
	return a.Size == b.Size && a.Mode == b.Mode && a.Mtime.Equal(b.Mtime) && a.LinkTarget == b.LinkTarget
}

// Close removes the poll helper container, if any, and stops following
// changes through the resident agent (the agent's container is removed
// when no copy follows through it any more).
func (s *Sink) Close() error {
	s.stopFollowing()
	s.pollMu.Lock()
	defer s.pollMu.Unlock()
	if s.pollID == "" {
		return nil
	}
	err := removeHelper(context.Background(), s.pollOn.Client(), s.pollID)
	s.pollID, s.pollOn = "", nil
	return err
}
