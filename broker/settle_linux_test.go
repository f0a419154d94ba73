package broker_test

import (
	"context"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mc-broker/mc-broker/broker"
)

// Gemini CLI writes its login in place, so sync can read it truncated. The
// test finishes that write the moment sync has read the truncated file (it
// watches the file's close with inotify), and sync must then copy the whole
// login instead of calling it broken.
func TestSourceCaughtMidWriteIsReadAgain(t *testing.T) {
	w := newWorld(t, "a")
	w.b.Rules.Patience = 2 * time.Second
	valid := fixture(t, "claude/credentials.valid.json")
	put(t, w.source, valid[:len(valid)/2])

	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC)
	if err != nil {
		t.Skip("inotify:", err)
	}
	defer unix.Close(fd)
	if _, err := unix.InotifyAddWatch(fd, w.source, unix.IN_CLOSE_NOWRITE); err != nil {
		t.Fatal(err)
	}
	finished := make(chan error, 1)
	go func() {
		buf := make([]byte, 4096)
		if _, err := unix.Read(fd, buf); err != nil { // the first read of the half-written file
			finished <- err
			return
		}
		finished <- os.WriteFile(w.source, valid, 0o600)
	}()

	r := w.b.Sync(context.Background(), broker.Options{})
	if err := <-finished; err != nil {
		t.Fatal(err)
	}
	if got := r.Sources[0].State; got != broker.SourceValid {
		t.Fatalf("source %s (%s), want valid once the write finished", got, r.Sources[0].Problem)
	}
	if got := outcomes(r)["a"]; got != broker.Created {
		t.Errorf("copy %s, want created", got)
	}
}

// A source that stays truncated is still refused, after the retries.
func TestSourceThatStaysTruncatedIsBroken(t *testing.T) {
	w := newWorld(t, "a")
	put(t, w.source, fixture(t, "claude/credentials.truncated.json"))
	r := w.b.Sync(context.Background(), broker.Options{})
	if r.Sources[0].State != broker.SourceBroken || outcomes(r)["a"] != broker.Skipped {
		t.Errorf("state %s, copy %s", r.Sources[0].State, outcomes(r)["a"])
	}
}
