package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// SSHConnectTimeout is ssh's ConnectTimeout (seconds) for an ssh:// engine,
// and SSHPingTimeout bounds its whole first ping: an ssh handshake and the
// remote docker CLI's start take longer than a local socket.
const (
	SSHConnectTimeout = 10
	SSHPingTimeout    = 15 * time.Second
)

// sshProgram is the ssh client run for ssh:// engines; tests may not
// change it (they use a real sshd), but it is looked up on PATH.
const sshProgram = "ssh"

// sshSpec is an ssh:// engine address: ssh://[user@]host[:port][/socket].
type sshSpec struct {
	User, Host, Port string
	// Socket is the engine's socket on the remote host ("" for the remote
	// docker CLI's own default).
	Socket string
}

// parseSSH reads an ssh:// address the way the docker CLI does: no
// password, no query, no fragment.
func parseSSH(host string) (sshSpec, error) {
	u, err := url.Parse(host)
	if err != nil {
		return sshSpec{}, errors.New("is not a valid ssh URL")
	}
	var sp sshSpec
	if u.User != nil {
		sp.User = u.User.Username()
		if _, ok := u.User.Password(); ok {
			return sshSpec{}, errors.New("holds a password: ssh:// engines use your ssh keys or agent, never a password in the address")
		}
	}
	sp.Host, sp.Port = u.Hostname(), u.Port()
	switch {
	case sp.Host == "":
		return sshSpec{}, errors.New("names no host (ssh://user@host)")
	case strings.HasPrefix(sp.Host, "-") || strings.HasPrefix(sp.User, "-"):
		return sshSpec{}, errors.New("has a host or user starting with '-'")
	case u.RawQuery != "" || u.Fragment != "":
		return sshSpec{}, errors.New("has a query or fragment; ssh:// addresses have neither")
	}
	if p := strings.Trim(u.Path, "/"); p != "" {
		sp.Socket = "/" + p
	}
	return sp, nil
}

// args is ssh's argument list: no prompts (a service has no terminal to
// ask on; use keys or an agent), no pseudo-terminal, a connect timeout, then
// the remote command the docker CLI runs. Nothing secret is in it.
func (sp sshSpec) args() []string {
	args := []string{"-o", "BatchMode=yes", "-o", fmt.Sprintf("ConnectTimeout=%d", SSHConnectTimeout), "-T"}
	if sp.User != "" {
		args = append(args, "-l", sp.User)
	}
	if sp.Port != "" {
		args = append(args, "-p", sp.Port)
	}
	args = append(args, "--", sp.Host, "docker")
	if sp.Socket != "" {
		args = append(args, "--host=unix://"+sp.Socket)
	}
	return append(args, "system", "dial-stdio")
}

// dialSSH starts ssh and returns its standard input and output as one
// connection to the remote engine. The process outlives ctx (which bounds
// only the dial): it ends when the connection is closed.
// A failure ssh reports is also kept in last.
func dialSSH(ctx context.Context, sp sshSpec, last *atomic.Pointer[SSHError]) (net.Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cmd := exec.Command(sshProgram, sp.args()...)
	cmd.Env = os.Environ()
	setProcAttr(cmd)
	c := &cmdConn{cmd: cmd, stderr: &tailBuffer{max: 2048}, done: make(chan struct{}), last: last}
	cmd.Stderr = c.stderr
	var err error
	if c.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	if c.stdout, err = cmd.StdoutPipe(); err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("cannot run ssh: %w", err)
	}
	go func() {
		c.waitErr = cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

// cmdConn is a net.Conn over a child process's standard input and output.
type cmdConn struct {
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	stdout  io.ReadCloser
	stderr  *tailBuffer
	done    chan struct{}
	waitErr error
	last    *atomic.Pointer[SSHError]

	closeOnce sync.Once
}

// Read returns ssh's output. At its end, a failed ssh (no route, refused
// key, no docker on the remote host) is an error saying what ssh said.
func (c *cmdConn) Read(p []byte) (int, error) {
	n, err := c.stdout.Read(p)
	if errors.Is(err, io.EOF) {
		select {
		case <-c.done:
		case <-time.After(time.Second):
		}
		if e := c.exitError(); e != nil {
			return n, e
		}
	}
	return n, err
}

func (c *cmdConn) Write(p []byte) (int, error) {
	n, err := c.stdin.Write(p)
	if err != nil {
		if e := c.exitError(); e != nil {
			return n, e
		}
	}
	return n, err
}

// exitError describes ssh's failure once it has exited, or nil.
func (c *cmdConn) exitError() error {
	select {
	case <-c.done:
	default:
		return nil
	}
	if c.waitErr == nil {
		return nil
	}
	msg := strings.TrimSpace(c.stderr.String())
	if msg == "" {
		msg = c.waitErr.Error()
	}
	se := &SSHError{Msg: msg}
	if c.last != nil {
		c.last.Store(se)
	}
	return se
}

// CloseWrite closes ssh's standard input: the remote end sees EOF.
func (c *cmdConn) CloseWrite() error { return c.stdin.Close() }

// Close ends ssh: its standard input is closed, which ends dial-stdio and
// ssh with it. One that has not exited after closeGrace is told to stop
// (the remote sshd then ends dial-stdio), and killed if it still runs: a
// stopping watcher closes its connections one after the other.
func (c *cmdConn) Close() error {
	c.closeOnce.Do(func() {
		c.stdin.Close()
		select {
		case <-c.done:
			return
		case <-time.After(closeGrace):
		}
		c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.done:
		case <-time.After(time.Second):
			c.cmd.Process.Kill()
			<-c.done
		}
	})
	return nil
}

// closeGrace is how long Close waits for ssh to end by itself.
const closeGrace = 200 * time.Millisecond

func (c *cmdConn) LocalAddr() net.Addr  { return cmdAddr{} }
func (c *cmdConn) RemoteAddr() net.Addr { return cmdAddr{} }

// Deadlines are not supported by a pipe to a process; the HTTP client
// bounds requests with its context and closes the connection instead.
func (c *cmdConn) SetDeadline(time.Time) error      { return nil }
func (c *cmdConn) SetReadDeadline(time.Time) error  { return nil }
func (c *cmdConn) SetWriteDeadline(time.Time) error { return nil }

type cmdAddr struct{}

func (cmdAddr) Network() string { return "ssh" }
func (cmdAddr) String() string  { return "ssh" }

// SSHError is ssh failing to reach the remote engine; Msg is what ssh (or
// the remote docker CLI) printed, e.g. "Permission denied (publickey)".
type SSHError struct{ Msg string }

func (e *SSHError) Error() string { return e.Msg }

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = t.b[len(t.b)-t.max:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
