package dir_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/mc-broker/mc-broker/broker/testenv"
	"github.com/mc-broker/mc-broker/sinks/dir"
)

func TestMain(m *testing.M) {
	testenv.RunHelperIfAsked(testenv.Modes{
		"read": func() error { return helperRead(os.Getenv("HELPER_PATH")) },
		"increment": func() error {
			n, _ := strconv.Atoi(os.Getenv("HELPER_COUNT"))
			return helperIncrement(os.Getenv("HELPER_DIR"), os.Getenv("HELPER_LOCKDIR"), n)
		},
	})
	os.Exit(m.Run())
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
