package volume

import (
	"context"
	"os"
	"path"
	"strconv"
	"strings"

	"github.com/moby/moby/client"

	"github.com/mc-broker/mc-broker/sinks/volume/engine"
	"github.com/mc-broker/mc-broker/sinks/volume/resident"
)

// execAgent reaches the copy through a resident agent that another process
// (a running watcher) started on the engine: `docker exec` of
// `mc-broker vol-agent --once` in its container, which creates no
// container (a sync with nothing to do then creates none at all). It is
// used only for an agent of this user (LabelOwner) running as the copy's
// user with the copy's volume mounted; ok is false otherwise, and the
// helper containers are used. release ends the exec.
func (s *Sink) execAgent(ctx context.Context) (conn *agentConn, file int, release func(), ok bool) {
	e, _, err := s.connect(ctx)
	if err != nil {
		return nil, 0, nil, false
	}
	c := e.Client()
	lctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	user := strconv.Itoa(s.uid()) + ":" + strconv.Itoa(s.gid())
	list, err := c.ContainerList(lctx, client.ContainerListOptions{
		Filters: make(client.Filters).
			Add("label", LabelAgent+"=true").
			Add("label", LabelOwner+"="+CurrentOwner().ID).
			Add("label", LabelAgentUser+"="+user).
			Add("status", "running"),
	})
	if err != nil {
		return nil, 0, nil, false
	}
	for _, ctr := range list.Items {
		// Anyone who may use the engine may label a container (and read
		// every volume anyway); this only keeps other containers out by
		// mistake.
		if !strings.Contains(ctr.Image, AgentImageRepo+":") {
			continue
		}
		for _, m := range ctr.Mounts {
			if m.Name != s.o.Volume || m.Destination == "" || !m.RW {
				continue
			}
			spec := resident.FileSpec{
				Path:      path.Join(m.Destination, s.o.Path, s.o.FileName),
				LockFiles: s.o.LockFiles, WriteLock: s.o.WriteLock,
			}
			conn, release, err := execConn(ctx, e, ctr.ID, spec)
			if err != nil {
				continue
			}
			return conn, 0, release, true
		}
	}
	return nil, 0, nil, false
}

// execConn runs `vol-agent --once` for one file in the agent container
// id and connects to it.
func execConn(ctx context.Context, e *engine.Engine, id string, spec resident.FileSpec) (*agentConn, func(), error) {
	cctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	ex, err := e.Client().ExecCreate(cctx, id, client.ExecCreateOptions{
		AttachStdin: true, AttachStdout: true, AttachStderr: true,
		Cmd: []string{agentPath, "vol-agent", "--once", "--file", spec.String()},
	})
	if err != nil {
		return nil, nil, err
	}
	att, err := execStream(cctx, e, ex.ID)
	if err != nil {
		return nil, nil, err
	}
	stdout, _ := demux(att.r)
	conn, err := newAgentConn(ctx, stdout, att.w, att.close, nil)
	if err != nil {
		att.close()
		return nil, nil, err
	}
	return conn, func() {
		// The end of stdin ends the agent's loop; then the connection.
		_ = att.closeWrite()
		conn.Close()
	}, nil
}

// transport is how the copy is reached without a helper container: the
// resident agent this process runs, else one another process runs (exec),
// else, for a write (oneShot), an agent started for this copy alone; ok
// is false when none serves it.
func (s *Sink) transport(ctx context.Context, oneShot bool) (conn *agentConn, file int, release func(), ok bool) {
	if conn, i := s.agent(); conn != nil {
		return conn, i, func() {}, true
	}
	if conn, i, release, ok := s.execAgent(ctx); ok || !oneShot {
		return conn, i, release, ok
	}
	return s.oneShotAgent(ctx)
}

// oneShotAgent starts an agent for this copy alone, for one write when no
// agent runs (a sync with no watcher): the copy is then written as a
// watcher's agent writes it, by temporary file and rename under the CLI's
// locks and only if it still holds what was decided on, so that a
// container's login written between the read and the write is never
// lost, as it could be through a helper container. release stops it (its
// container is removed). ok is false when no agent can run here (no static
// binary, a volume that does not exist yet or is not this user's): the
// helper containers then write, as before.
func (s *Sink) oneShotAgent(ctx context.Context) (conn *agentConn, file int, release func(), ok bool) {
	if !anyAgentBinary() {
		// Spare the engine the calls: no agent can start here.
		return nil, 0, nil, false
	}
	a := &agentSup{sh: s.o.Shared, key: agentKey{sel: s.o.Engine, uid: s.uid(), gid: s.gid(), volume: s.o.Volume}, subs: map[*Sink]*agentSub{}, wake: make(chan struct{}, 1)}
	run, err := a.start(ctx, []*Sink{s})
	if err != nil || run == nil {
		return nil, 0, nil, false
	}
	return run.conn, run.files[s], func() {
		run.conn.Close()
		_ = removeHelper(context.WithoutCancel(ctx), run.c, run.id)
	}, true
}

// anyAgentBinary reports whether an agent binary may be found for some
// engine: $MC_BROKER_AGENT_BINARY is set, or findAgentBinary finds one for
// amd64 or arm64.
func anyAgentBinary() bool {
	if os.Getenv(AgentBinaryEnv) != "" {
		return true
	}
	for _, arch := range []string{"amd64", "arm64"} {
		if _, err := findAgentBinary(arch); err == nil {
			return true
		}
	}
	return false
}
