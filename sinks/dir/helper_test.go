package dir_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mc-broker/mc-broker/broker/filelock"
	"github.com/mc-broker/mc-broker/sinks/dir"
)

// The test binary doubles as a helper process (the TestMain re-exec
// pattern): with helperEnv set it does one job and exits instead of running
// tests. Arguments come in the HELPER_* variables.
const helperEnv = "MC_BROKER_DIR_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(runHelper(mode))
	}
	os.Exit(m.Run())
}

func runHelper(mode string) int {
	var err error
	switch mode {
	case "hold":
		err = helperHold(os.Getenv("HELPER_PATH"))
	case "read":
		err = helperRead(os.Getenv("HELPER_PATH"))
	case "increment":
		n, _ := strconv.Atoi(os.Getenv("HELPER_COUNT"))
		err = helperIncrement(os.Getenv("HELPER_DIR"), os.Getenv("HELPER_LOCKDIR"), n)
	default:
		err = fmt.Errorf("unknown helper mode %q", mode)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 1
	}
	return 0
}

// helperHold flocks path, says "locked", and holds the lock until it reads a
// line (or EOF) on stdin.
func helperHold(path string) error {
	unlock, err := filelock.Lock(context.Background(), path, 10*time.Second)
	if err != nil {
		return err
	}
	defer unlock()
	fmt.Println("locked")
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	return nil
}

// helperRead reads path in a tight loop until stdin closes, checking every
// read is one whole payload. It says "ready" after its first read and
// "reads=N bad=M" at the end.
func helperRead(path string) error {
	stop := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		close(stop)
	}()
	reads, bad := 0, 0
	for {
		data, err := os.ReadFile(path)
		if err != nil || !isPayload(data) {
			bad++
		}
		reads++
		if reads == 1 {
			fmt.Println("ready")
		}
		select {
		case <-stop:
			fmt.Printf("reads=%d bad=%d\n", reads, bad)
			return nil
		default:
		}
	}
}

// increment adds one to the counter in s's copy. With inDecide set it also
// checks that no two decisions run at once.
func increment(s *dir.Sink, inDecide *atomic.Int32) error {
	var derr error
	err := s.Update(context.Background(), func(cur []byte, exists bool) ([]byte, bool) {
		if inDecide != nil {
			if inDecide.Add(1) != 1 {
				derr = errors.New("two decides ran at once")
			}
			defer inDecide.Add(-1)
		}
		v, err := counterValue(cur, exists)
		if err != nil {
			derr = err
			return nil, false
		}
		return counter(v + 1), true
	})
	if err == nil {
		err = derr
	}
	return err
}

// helperIncrement waits for a line on stdin, then adds one to the counter in
// dir n times through the sink.
func helperIncrement(d, lockDir string, n int) error {
	s := counterSink(d, lockDir)
	fmt.Println("ready")
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	for range n {
		if err := increment(s, nil); err != nil {
			return err
		}
	}
	return nil
}

// payload is the i-th test login: valid JSON whose length varies a lot from
// one i to the next.
func payload(i int) []byte {
	return []byte(fmt.Sprintf(`{"n":%d,"pad":"%s"}`, i, strings.Repeat("x", (i*7919)%4099)))
}

// isPayload says whether data is exactly one of the payloads.
func isPayload(data []byte) bool {
	if !json.Valid(data) {
		return false
	}
	var v struct{ N *int }
	if json.Unmarshal(data, &v) != nil || v.N == nil {
		return false
	}
	return string(payload(*v.N)) == string(data)
}

func counterSink(d, lockDir string) *dir.Sink {
	return dir.New(dir.Options{
		Dir:       d,
		FileName:  "auth.json",
		LockFiles: []string{"auth.lock", "auth.json.lock"},
		LockDir:   lockDir,
	})
}

func counter(n int) []byte { return []byte(fmt.Sprintf(`{"counter":%d}`, n)) }

func counterValue(cur []byte, exists bool) (int, error) {
	if !exists {
		return 0, nil
	}
	var v struct{ Counter *int }
	if err := json.Unmarshal(cur, &v); err != nil || v.Counter == nil {
		return 0, errors.New("copy is not a counter (torn or lost write?)")
	}
	return *v.Counter, nil
}

// helper is a running helper process.
type helper struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout *bufio.Reader
}

func startHelper(t *testing.T, mode string, env ...string) *helper {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	// GORACE: a race-enabled helper otherwise sleeps 1s at exit.
	cmd.Env = append(os.Environ(), append([]string{helperEnv + "=" + mode, "GORACE=atexit_sleep_ms=0"}, env...)...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return &helper{cmd: cmd, stdin: stdin, stdout: bufio.NewReader(stdout)}
}

// expect reads the helper's next line and fails unless it is want.
func (h *helper) expect(t *testing.T, want string) {
	t.Helper()
	line, err := h.stdout.ReadString('\n')
	if err != nil || strings.TrimSpace(line) != want {
		t.Fatalf("helper said %q (%v), want %q", line, err, want)
	}
}

func (h *helper) send(t *testing.T, line string) {
	t.Helper()
	if _, err := io.WriteString(h.stdin, line+"\n"); err != nil {
		t.Fatal(err)
	}
}

func (h *helper) wait(t *testing.T) {
	t.Helper()
	if err := h.cmd.Wait(); err != nil {
		t.Fatalf("helper: %v", err)
	}
}

// holdLock starts a helper that holds a flock on path until release.
func holdLock(t *testing.T, path string) (release func()) {
	t.Helper()
	h := startHelper(t, "hold", "HELPER_PATH="+path)
	h.expect(t, "locked")
	return func() {
		h.send(t, "")
		h.wait(t)
	}
}
