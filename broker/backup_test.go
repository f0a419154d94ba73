package broker_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mc-broker/mc-broker/broker"
	"github.com/mc-broker/mc-broker/broker/credential"
)

// Every backup is 0600 in a 0700 directory and holds the host's previous
// bytes; each shelf keeps its newest ones, so a stream of take-backs never
// pushes the last login the host itself had out.
func TestBackupsArePrivateBoundedAndShelved(t *testing.T) {
	b := &broker.Backups{Dir: t.TempDir(), PerShelf: 5}
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	keep := func(i int, genuine bool) string {
		t.Helper()
		fp := fmt.Sprintf("sha256:%012d", i)
		p, err := b.Keep("claude", []byte{byte(i)}, credential.Info{Fingerprint: fp}, genuine, start.Add(time.Duration(i)*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	genuine := keep(0, true)
	var last string
	for i := 1; i <= 30; i++ {
		last = keep(i, false)
	}
	if got, err := os.ReadFile(genuine); err != nil || !bytes.Equal(got, []byte{0}) {
		t.Fatalf("the host's own login was pushed out by take-backs: %v", err)
	}
	list, err := b.List("claude")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 6 {
		t.Errorf("%d backups kept, want 1 genuine + 5 taken", len(list))
	}
	if got, _ := os.ReadFile(last); !bytes.Equal(got, []byte{30}) {
		t.Errorf("newest backup holds %v", got)
	}
	for _, bk := range list {
		fi, err := os.Stat(bk.Path)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, want mode 0600", bk.Path, err)
		}
		if di, _ := os.Stat(filepath.Dir(bk.Path)); di.Mode().Perm() != 0o700 {
			t.Errorf("%s: directory mode %v, want 0700", bk.Path, di.Mode().Perm())
		}
	}
	// The same login twice in a row is kept once.
	if again := keep(30, false); again != last {
		t.Errorf("the same login was kept twice")
	}
}
