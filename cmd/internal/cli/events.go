package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os/exec"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/mc-broker/mc-broker/broker/watch"
)

// problemTimeout bounds one run of an on_problem command or notifier.
const problemTimeout = 30 * time.Second

// problemQueue is how many events wait for a slow command; more are
// dropped (and logged), so that no command can stall the watcher.
const problemQueue = 64

// problemRunner tells the user about watch's events: it runs the
// on_problem command with the event as JSON on stdin (never in argv or the
// environment but its kind and source), and, when asked, the desktop's
// notifier. One at a time, off the watcher's goroutines.
type problemRunner struct {
	log *slog.Logger
	// flagCommand and flagNotify are the command line's; the config's
	// come with each load and are used when the flags are not given.
	flagCommand string
	flagNotify  bool

	mu      sync.Mutex
	command string
	notify  bool
	queue   chan watch.Event
	// lookPath finds the notifier; goos picks it.
	lookPath func(string) (string, error)
	goos     string
	warned   bool
	timeout  time.Duration
}

func newProblemRunner(log *slog.Logger, command string, notify bool) *problemRunner {
	return &problemRunner{log: log, flagCommand: command, flagNotify: notify, command: command, notify: notify,
		queue: make(chan watch.Event, problemQueue), lookPath: exec.LookPath, goos: runtime.GOOS, timeout: problemTimeout}
}

// configure takes a (re)loaded config's on_problem and notify; the flags
// win over them.
func (p *problemRunner) configure(command string, notify bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.command, p.notify = p.flagCommand, p.flagNotify || notify
	if p.command == "" {
		p.command = command
	}
}

// send queues an event; it never blocks.
func (p *problemRunner) send(e watch.Event) {
	select {
	case p.queue <- e:
	default:
		p.log.Warn("too many events waiting for the on_problem command; this one is dropped", "event", e.Event, "source", e.Source)
	}
}

// run delivers queued events until ctx ends.
func (p *problemRunner) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case e := <-p.queue:
			p.mu.Lock()
			command, notify := p.command, p.notify
			p.mu.Unlock()
			if command != "" {
				p.runCommand(ctx, command, e)
			}
			if notify {
				p.desktop(ctx, e)
			}
		}
	}
}

// runCommand runs `sh -c command` with the event on stdin.
func (p *problemRunner) runCommand(ctx context.Context, command string, e watch.Event) {
	data, err := json.Marshal(e)
	if err != nil {
		return
	}
	cmd := exec.Command("/bin/sh", "-c", command)
	cmd.Env = append(cmd.Environ(), "MC_BROKER_EVENT="+string(e.Event), "MC_BROKER_SOURCE="+e.Source)
	cmd.Stdin = bytes.NewReader(append(data, '\n'))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := runBounded(ctx, cmd, p.timeout); err != nil {
		p.log.Warn("the on_problem command failed", "event", e.Event, "source", e.Source, "error", err, "output", tail(out.Bytes(), 512))
		return
	}
	p.log.Info("on_problem command run", "event", e.Event, "source", e.Source)
}

// desktop shows the event with the platform's notifier: notify-send
// (freedesktop), osascript (macOS). Title and text go as arguments, never
// into a script.
func (p *problemRunner) desktop(ctx context.Context, e watch.Event) {
	title := "mc-broker: " + e.Source
	text := e.Message
	if e.Fix != "" {
		text += " — " + e.Fix
	}
	var cmd *exec.Cmd
	switch p.goos {
	case "darwin":
		bin, err := p.lookPath("osascript")
		if err != nil {
			p.noNotifier("osascript")
			return
		}
		cmd = exec.Command(bin, "-e", "on run argv", "-e", "display notification (item 1 of argv) with title (item 2 of argv)", "-e", "end run", text, title)
	default:
		bin, err := p.lookPath("notify-send")
		if err != nil {
			p.noNotifier("notify-send")
			return
		}
		cmd = exec.Command(bin, "--app-name=mc-broker", "--", title, text)
	}
	if err := runBounded(ctx, cmd, p.timeout); err != nil {
		p.log.Warn("the desktop notifier failed", "event", e.Event, "error", err)
	}
}

func (p *problemRunner) noNotifier(name string) {
	if !p.warned {
		p.warned = true
		p.log.Warn("--notify: no " + name + " here, so no desktop notification is shown (on_problem still runs)")
	}
}

// runBounded runs cmd in a process group of its own, killed whole after
// timeout or when ctx ends.
func runBounded(ctx context.Context, cmd *exec.Cmd, timeout time.Duration) error {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case err := <-done:
		return err
	case <-timer.C:
	case <-ctx.Done():
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	<-done
	return context.DeadlineExceeded
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
