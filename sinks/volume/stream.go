package volume

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/url"

	"github.com/moby/moby/client"

	"github.com/mc-broker/mc-broker/sinks/volume/engine"
)

// stream is a hijacked connection to a container's (or an exec's) stdin
// and multiplexed stdout and stderr.
type stream struct {
	r          io.Reader
	w          io.Writer
	close      func()
	closeWrite func() error
}

func hijacked(conn net.Conn, br *bufio.Reader) stream {
	return stream{r: br, w: conn, close: func() { conn.Close() }, closeWrite: func() error {
		if cw, ok := conn.(interface{ CloseWrite() error }); ok {
			return cw.CloseWrite()
		}
		return nil
	}}
}

// attachStream attaches to container id's stdin, stdout and stderr.
func attachStream(ctx context.Context, e *engine.Engine, id string) (stream, error) {
	conn, br, err := e.Hijack(ctx, "/containers/"+id+"/attach", url.Values{"stream": {"1"}, "stdin": {"1"}, "stdout": {"1"}, "stderr": {"1"}}, nil)
	if err == nil {
		return hijacked(conn, br), nil
	}
	if !errors.Is(err, engine.ErrNoHijack) {
		return stream{}, err
	}
	att, err := e.Client().ContainerAttach(ctx, id, client.ContainerAttachOptions{Stream: true, Stdin: true, Stdout: true, Stderr: true})
	if err != nil {
		return stream{}, err
	}
	return stream{r: att.Reader, w: att.Conn, close: att.Close, closeWrite: att.CloseWrite}, nil
}

// execStream starts exec id attached.
func execStream(ctx context.Context, e *engine.Engine, id string) (stream, error) {
	conn, br, err := e.Hijack(ctx, "/exec/"+id+"/start", nil, map[string]bool{"Detach": false, "Tty": false})
	if err == nil {
		return hijacked(conn, br), nil
	}
	if !errors.Is(err, engine.ErrNoHijack) {
		return stream{}, err
	}
	att, err := e.Client().ExecAttach(ctx, id, client.ExecAttachOptions{})
	if err != nil {
		return stream{}, err
	}
	return stream{r: att.Reader, w: att.Conn, close: att.Close, closeWrite: att.CloseWrite}, nil
}
