package main

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"
)

// hungEngine is a Docker socket that accepts every connection and never
// answers: what a wedged engine (or a VM that froze) looks like.
func hungEngine(t *testing.T) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "hung.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return "unix://" + sock
}

// TestHungEngineNeverDelaysDirectoryCopies: with an engine that accepts
// and never answers, the directory copies are created and follow every
// host change within 100 ms, the volume copy reports the engine problem,
// and SIGTERM still stops the watcher within 2 s.
func TestHungEngineNeverDelaysDirectoryCopies(t *testing.T) {
	w := newWorld(t, "claude", 2)
	w.env = append(w.env, "DOCKER_HOST="+hungEngine(t))
	cfg, _ := os.ReadFile(w.config)
	writeFile(t, w.config, append(cfg, []byte("  - source: claude\n    volume: mc-broker-test-hung\n")...))

	start := time.Now()
	p := w.start("watch", "--config", w.config, "--log-format", "json", "--log-level", "debug")
	first := w.forCopy(w.login(1))
	created := waitFor(t, 5*time.Second, "the directory copies to be created", func() (bool, string) {
		return copiesHold(w.copies, first)
	})
	// The process's own start (exec, Go runtime, config) is in this figure
	// too; the engine is not.
	if took := time.Since(start); took > time.Second {
		t.Errorf("directory copies created %v after watch started, want well under a second", took)
	}
	t.Logf("directory copies created %v after watch started (%v of polling)", time.Since(start), created)

	// A hung engine would cost seconds per change (a ping gives up after
	// 3 s, an operation after 30 s). The median must be within 100 ms;
	// one change on a busy CI machine may take longer, none a second.
	var took []time.Duration
	for gen := 2; gen <= 6; gen++ {
		changed := time.Now()
		w.replace(w.source, w.login(gen))
		want := w.forCopy(w.login(gen))
		waitFor(t, 5*time.Second, "the directory copies to follow the host", func() (bool, string) {
			return copiesHold(w.copies, want)
		})
		took = append(took, time.Since(changed))
	}
	slices.Sort(took)
	t.Logf("host changes reached the directory copies in %v with the engine hung", took)
	if took[len(took)/2] > 100*time.Millisecond || took[len(took)-1] > time.Second {
		t.Errorf("host changes reached the directory copies in %v with the engine hung, want a median within 100ms and none over a second", took)
	}
	waitFor(t, 15*time.Second, "the volume copy to report the engine problem", func() (bool, string) {
		return p.log.count("copy failed; retrying with backoff", "copy", "volume mc-broker-test-hung:/.credentials.json") > 0, "no such log line"
	})

	stopAt := time.Now()
	p.signal(syscall.SIGTERM)
	if code := p.wait(5 * time.Second); code != 0 {
		t.Errorf("watch exited %d after SIGTERM", code)
	}
	if took := time.Since(stopAt); took > 2*time.Second {
		t.Errorf("SIGTERM took %v with the engine hung, want within 2s", took)
	}
	if !bytes.Contains(read(w.copies[0]), []byte("TOKEN-G000006")) {
		t.Error("the last login is not in the copies")
	}
}
