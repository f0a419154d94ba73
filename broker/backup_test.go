package broker_test

import (
	"bytes"
	"context"
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

// syncDispatch runs a plan's jobs at once and keeps the results, without
// recording them in the memory: what watch does when a pass runs before the
// result of the last take-back is in.
type syncDispatch struct{ host []broker.HostResult }

func (d *syncDispatch) Host(job func(context.Context) broker.HostResult) {
	d.host = append(d.host, job(context.Background()))
}
func (d *syncDispatch) Copy(_ int, job func(context.Context) broker.CopyResult) {
	job(context.Background())
}

// TestTakeBacksInARowKeepTheUsersLoginOnTheHostShelf: a container gives
// two logins in quick succession, the second taken back before the result
// of the first is recorded. The login the first put into the host is not
// the user's: its backup goes on the taken shelf, and the host shelf holds
// the user's own login only.
func TestTakeBacksInARowKeepTheUsersLoginOnTheHostShelf(t *testing.T) {
	w := newWorld(t, "a")
	users := loginAt(t, 4*time.Hour, 1)
	put(t, w.source, users)
	backups := &broker.Backups{Dir: filepath.Join(w.root, "backups")}
	p := &broker.Pass{Source: w.b.Sources[0], Copies: w.b.Copies, Memory: broker.NewMemory(), Backups: backups}
	p.Run(context.Background(), broker.PassOptions{})
	d := &syncDispatch{}
	for n := 2; n <= 3; n++ {
		put(t, w.copyFile("a"), forCopy(t, loginAt(t, time.Duration(4+n)*time.Hour, n)))
		in := p.Read(context.Background())
		plan := broker.Plan(in)
		if plan.Host.Action != broker.TakeBack {
			t.Fatalf("login %d: host action %s, want take-back", n, plan.Host.Action)
		}
		p.Apply(in, plan, d)
	}
	list, err := backups.List("claude")
	if err != nil {
		t.Fatal(err)
	}
	var host, taken int
	for _, b := range list {
		data, _ := os.ReadFile(b.Path)
		switch b.Shelf {
		case broker.ShelfHost:
			host++
			if !bytes.Equal(data, users) {
				t.Errorf("the host shelf holds a login taken back from a copy")
			}
		case broker.ShelfTaken:
			taken++
		}
	}
	if host != 1 || taken != 1 {
		t.Errorf("host shelf %d, taken shelf %d, want 1 and 1", host, taken)
	}
}

// noDispatch carries out nothing: the writes of a plan are still on
// their way.
type noDispatch struct{}

func (noDispatch) Host(func(context.Context) broker.HostResult)      {}
func (noDispatch) Copy(int, func(context.Context) broker.CopyResult) {}

// TestALoginCountsOnceForTheCopyItCameFrom: a container's login counts
// against its copy's hourly limit when it is sent everywhere; a pass that
// finds it in another copy it was sent to (before that write's result is
// recorded), or plans its write-back again, does not count it again.
func TestALoginCountsOnceForTheCopyItCameFrom(t *testing.T) {
	w := newWorld(t, "a", "b")
	put(t, w.source, loginAt(t, 4*time.Hour, 1))
	p := &broker.Pass{Source: w.b.Sources[0], Copies: w.b.Copies, Memory: broker.NewMemory(), Backups: &broker.Backups{Dir: filepath.Join(w.root, "backups")}}
	p.Run(context.Background(), broker.PassOptions{})
	newer := forCopy(t, loginAt(t, 5*time.Hour, 2))
	step := func() {
		in := p.Read(context.Background())
		plan := broker.Plan(in)
		if plan.Login == nil || plan.Login.From < 0 {
			t.Fatalf("the plan takes nothing back")
		}
		p.Apply(in, plan, noDispatch{})
	}
	put(t, w.copyFile("b"), newer)
	step()
	step() // its write-back planned again
	put(t, w.copyFile("a"), newer)
	step() // found in a, where it was sent
	for name, want := range map[string]int{"a": 0, "b": 1} {
		if got := len(p.Memory.Stores[w.copyFile(name)].TakeBacks); got != want {
			t.Errorf("copy %s: %d take-backs counted, want %d", name, got, want)
		}
	}
}
