package broker_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mc-broker/mc-broker/broker"
)

// A sync with nothing to do writes nothing: saving the memory it loaded
// leaves the file as it was (no new inode, no new mtime, no fsync), and a
// change is saved.
func TestMemorySavedOnlyWhenItChanged(t *testing.T) {
	m := broker.MemoryFiles{Dir: t.TempDir()}
	mem := broker.NewMemory()
	mem.Stores["/copies/a/.credentials.json"] = &broker.StoreMemory{Given: "h1"}
	if err := m.Save("claude", mem); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(m.Dir, "claude.json")
	before, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	// mtime has a coarse clock on some file systems: make a rewrite show.
	old := before.ModTime().Add(-time.Hour)
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}
	if err := m.Save("claude", m.Load("claude")); err != nil {
		t.Fatal(err)
	}
	after, _ := os.Stat(path)
	if !os.SameFile(before, after) || !after.ModTime().Equal(old) {
		t.Fatal("the unchanged memory was written again")
	}
	mem.Stores["/copies/a/.credentials.json"].Given = "h2"
	if err := m.Save("claude", mem); err != nil {
		t.Fatal(err)
	}
	if got := m.Load("claude").Stores["/copies/a/.credentials.json"].Given; got != "h2" {
		t.Fatalf("the change was not saved: given %q", got)
	}
}
