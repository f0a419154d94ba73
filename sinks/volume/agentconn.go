package volume

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/mc-broker/mc-broker/broker/credential"
	"github.com/mc-broker/mc-broker/sinks/volume/resident"
)

// The agent lives in the engine next to files containers write: the host
// bounds everything it reads from it. A line longer than resident.MaxLine,
// a line that is not a reply, a hello of another version, or a request not
// answered within agentRequestTimeout ends the connection (and the
// supervisor starts a new agent); the copy falls back to helper containers
// for that call. Nothing the agent sends can stall the watcher for longer
// than those deadlines, and content it reports goes through broker.Plan
// like any copy's.
var (
	agentHelloTimeout   = 20 * time.Second
	agentRequestTimeout = 10 * time.Second
)

// errAgentGone is a request on a connection that ended.
var errAgentGone = errors.New("the resident agent is gone")

// agentConn is the host's end of the protocol, over any byte streams: the
// resident agent's attach stream, or a sync's exec.
type agentConn struct {
	w     io.Writer
	close func()

	wmu sync.Mutex // one request line at a time

	mu      sync.Mutex
	next    int
	waiting map[int]chan resident.Reply
	err     error
	done    chan struct{}

	files  int
	events func(event string, file int)
}

// newAgentConn starts reading r, waits for the agent's hello, and returns
// the connection; close ends the transport (it must make r's reads end).
// events is called (on the reading goroutine; it must not block) with each
// event the agent sends: "changed" (the file) or "lock" (Claude's refresh
// lock beside it).
func newAgentConn(ctx context.Context, r io.Reader, w io.Writer, close func(), events func(event string, file int)) (*agentConn, error) {
	c := &agentConn{w: w, close: close, waiting: map[int]chan resident.Reply{}, done: make(chan struct{}), events: events}
	hello := make(chan resident.Reply, 1)
	go c.loop(r, hello)
	t := time.NewTimer(agentHelloTimeout)
	defer t.Stop()
	select {
	case h := <-hello:
		if h.Version != resident.Version {
			c.fail(fmt.Errorf("the agent speaks protocol %d, not %d", h.Version, resident.Version))
			return nil, c.Err()
		}
		return c, nil
	case <-c.done:
		return nil, c.Err()
	case <-t.C:
		c.fail(fmt.Errorf("the agent did not start within %v", agentHelloTimeout))
		return nil, c.Err()
	case <-ctx.Done():
		c.fail(ctx.Err())
		return nil, ctx.Err()
	}
}

// Err is why the connection ended (nil while it runs).
func (c *agentConn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Done is closed when the connection ends.
func (c *agentConn) Done() <-chan struct{} { return c.done }

// Close ends the connection.
func (c *agentConn) Close() { c.fail(errAgentGone) }

func (c *agentConn) fail(err error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = err
	waiting := c.waiting
	c.waiting = map[int]chan resident.Reply{}
	close(c.done)
	c.mu.Unlock()
	for _, ch := range waiting {
		close(ch)
	}
	if c.close != nil {
		c.close()
	}
}

func (c *agentConn) loop(r io.Reader, hello chan<- resident.Reply) {
	br := bufio.NewReaderSize(r, resident.MaxLine)
	first := true
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			c.fail(fmt.Errorf("the agent sent a line over %d bytes", resident.MaxLine))
			return
		}
		if err != nil {
			c.fail(fmt.Errorf("the agent's output ended: %w", err))
			return
		}
		var rep resident.Reply
		if err := json.Unmarshal(line, &rep); err != nil {
			c.fail(errors.New("the agent sent a line that is not a reply"))
			return
		}
		if len(rep.Data) > credential.MaxSize+1 {
			// Judged oversized (broken) by the plan, never read whole.
			rep.Data = rep.Data[:credential.MaxSize+1]
		}
		switch {
		case first:
			if rep.Event != "hello" {
				c.fail(errors.New("the agent did not say hello"))
				return
			}
			first = false
			c.files = rep.Files // read only by this goroutine
			hello <- rep
		case rep.Event == "changed" || rep.Event == "lock":
			if c.events != nil && rep.File >= 0 && rep.File < c.files {
				c.events(rep.Event, rep.File)
			}
		case rep.ID > 0:
			c.mu.Lock()
			ch := c.waiting[rep.ID]
			delete(c.waiting, rep.ID)
			c.mu.Unlock()
			if ch != nil {
				ch <- rep
			}
		}
	}
}

// call sends req and waits for its answer, at most agentRequestTimeout; an
// agent that does not answer in time is ended.
func (c *agentConn) call(ctx context.Context, req resident.Request) (resident.Reply, error) {
	ch := make(chan resident.Reply, 1)
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return resident.Reply{}, errAgentGone
	}
	c.next++
	req.ID = c.next
	c.waiting[req.ID] = ch
	c.mu.Unlock()
	line, err := json.Marshal(req)
	if err != nil {
		return resident.Reply{}, err
	}
	if len(line) >= resident.MaxLine {
		return resident.Reply{}, fmt.Errorf("a request of %d bytes is over the protocol's limit", len(line))
	}
	t := time.NewTimer(agentRequestTimeout)
	defer t.Stop()
	sent := make(chan error, 1)
	go func() {
		c.wmu.Lock()
		defer c.wmu.Unlock()
		_, err := c.w.Write(append(line, '\n'))
		sent <- err
	}()
	for {
		select {
		case err := <-sent:
			if err != nil {
				c.fail(fmt.Errorf("cannot write to the agent: %w", err))
				return resident.Reply{}, errAgentGone
			}
			sent = nil
		case rep, ok := <-ch:
			if !ok {
				return resident.Reply{}, errAgentGone
			}
			return rep, nil
		case <-t.C:
			c.fail(fmt.Errorf("the agent did not answer within %v", agentRequestTimeout))
			return resident.Reply{}, errAgentGone
		case <-ctx.Done():
			c.mu.Lock()
			delete(c.waiting, req.ID)
			c.mu.Unlock()
			return resident.Reply{}, ctx.Err()
		}
	}
}
