package volume

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mc-broker/mc-broker/broker/credential"
	"github.com/mc-broker/mc-broker/sinks/volume/resident"
)

// fakeAgent is the agent's end of a connection: what it reads and writes.
type fakeAgent struct {
	out    *io.PipeWriter // what the host reads
	in     *io.PipeReader // what the host writes
	closed chan struct{}
}

func connect(t *testing.T) (*agentConn, *fakeAgent) {
	t.Helper()
	hr, aw := io.Pipe()
	ar, hw := io.Pipe()
	f := &fakeAgent{out: aw, in: ar, closed: make(chan struct{})}
	go io.WriteString(aw, `{"ev":"hello","v":1,"files":1}`+"\n")
	c, err := newAgentConn(context.Background(), hr, hw, func() {
		hr.Close()
		hw.Close()
		close(f.closed)
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c, f
}

func shortTimeouts(t *testing.T) {
	old, oldH := agentRequestTimeout, agentHelloTimeout
	agentRequestTimeout, agentHelloTimeout = 300*time.Millisecond, 300*time.Millisecond
	t.Cleanup(func() { agentRequestTimeout, agentHelloTimeout = old, oldH })
}

// A hostile or broken agent cannot stall the host: garbage, an oversized
// line, silence, or a hello it never sends each end the connection within
// the deadlines, and the request fails (the copy then uses a helper).
func TestAgentConnBoundsWhatTheAgentSends(t *testing.T) {
	shortTimeouts(t)
	cases := map[string]func(f *fakeAgent){
		"garbage": func(f *fakeAgent) {
			io.Copy(io.Discard, io.LimitReader(f.in, 1))
			f.out.Write([]byte("this is not json\n"))
		},
		"oversized": func(f *fakeAgent) {
			go io.Copy(io.Discard, f.in)
			f.out.Write(bytes.Repeat([]byte("a"), resident.MaxLine+10))
		},
		"endless line": func(f *fakeAgent) {
			go io.Copy(io.Discard, f.in)
			chunk := bytes.Repeat([]byte(`x`), 4096)
			for {
				if _, err := f.out.Write(chunk); err != nil {
					return
				}
			}
		},
		"silence": func(f *fakeAgent) {
			go io.Copy(io.Discard, f.in)
		},
		"does not read": func(f *fakeAgent) {},
	}
	for name, agent := range cases {
		t.Run(name, func(t *testing.T) {
			c, f := connect(t)
			go agent(f)
			start := time.Now()
			_, err := c.call(context.Background(), resident.Request{Op: "read"})
			if err == nil {
				t.Fatal("a request answered by a misbehaving agent succeeded")
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("the request took %v, want it ended within the deadline", d)
			}
			select {
			case <-f.closed:
			case <-time.After(2 * time.Second):
				t.Error("the connection to a misbehaving agent was not closed")
			}
		})
	}
}

func TestAgentConnNeedsHello(t *testing.T) {
	shortTimeouts(t)
	for name, first := range map[string]string{
		"silent":        "",
		"other version": `{"ev":"hello","v":99}` + "\n",
		"no hello":      `{"id":1}` + "\n",
	} {
		t.Run(name, func(t *testing.T) {
			hr, aw := io.Pipe()
			_, hw := io.Pipe()
			if first != "" {
				go io.WriteString(aw, first)
			}
			var closed atomic.Bool
			_, err := newAgentConn(context.Background(), hr, hw, func() { closed.Store(true); hr.Close() }, nil)
			if err == nil || !closed.Load() {
				t.Fatalf("err %v closed %v, want a refused, closed connection", err, closed.Load())
			}
		})
	}
}

// An answer's data is cut at credential.MaxSize+1: the plan judges it
// oversized, and nothing bigger is kept.
func TestAgentConnCutsOversizedData(t *testing.T) {
	c, f := connect(t)
	go func() {
		buf := make([]byte, 4096)
		f.in.Read(buf)
		f.out.Write([]byte(`{"id":1,"exists":true,"data":"` + strings.Repeat("QUFB", credential.MaxSize/3+100) + `"}` + "\n"))
	}()
	rep, err := c.call(context.Background(), resident.Request{Op: "read"})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Data) != credential.MaxSize+1 {
		t.Errorf("data of %d bytes, want it cut at %d", len(rep.Data), credential.MaxSize+1)
	}
	if errors.Is(err, errAgentGone) {
		t.Fatal(err)
	}
}
