package lockmirror

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// fakePlace is a directory in a volume, as the resident agent reaches it.
type fakePlace struct {
	locked bool
	id     LockID
	owner  *Owner
	next   uint64
}

func (p *fakePlace) StatLock() (LockID, bool, error) {
	if !p.locked {
		return LockID{}, false, fs.ErrNotExist
	}
	return p.id, true, nil
}

func (p *fakePlace) MkdirLock() error {
	if p.locked {
		return fs.ErrExist
	}
	p.next++
	p.locked, p.id = true, LockID{Dev: 7, Ino: p.next, Born: int64(p.next) * 1e9}
	return nil
}

func (p *fakePlace) WriteOwner(o Owner) error   { p.owner = &o; return nil }
func (p *fakePlace) ReadOwner() (*Owner, error) { return p.owner, nil }
func (p *fakePlace) RemoveOwner() error         { p.owner = nil; return nil }
func (p *fakePlace) RemoveLock() error {
	if !p.locked {
		return fs.ErrNotExist
	}
	p.locked = false
	return nil
}

// A lock taken on the host is mirrored into a volume's directory, and one
// taken in the volume onto the host; each is taken down after the release.
func TestMirrorsIntoAndOutOfAPlace(t *testing.T) {
	host := t.TempDir()
	vol := &fakePlace{}
	clk := &clock{t: time.Unix(1_800_000_000, 0)}
	m := New(Options{Dirs: []string{host, "volume:v"}, Trusted: []string{host}, Places: map[string]Place{"volume:v": vol}, Now: clk.now})

	os.Mkdir(filepath.Join(host, LockName), 0o755)
	if res := m.Observe(host); res.Mirrored != 1 || !vol.locked {
		t.Fatalf("host lock: %+v, volume locked %v", res, vol.locked)
	}
	if vol.owner == nil || vol.owner.PID != os.Getpid() {
		t.Errorf("the mirror's owner file: %+v", vol.owner)
	}
	os.Remove(filepath.Join(host, LockName))
	res := m.Observe(host)
	if !res.Released {
		t.Fatalf("release: %+v", res)
	}
	if n := m.Release(res.Round, clk.t.Add(time.Second)); n != 1 || vol.locked || vol.owner != nil {
		t.Fatalf("Release removed %d; volume locked %v owner %v", n, vol.locked, vol.owner)
	}

	clk.t = clk.t.Add(time.Minute)
	vol.MkdirLock()
	if res := m.Observe("volume:v"); res.Mirrored != 1 {
		t.Fatalf("volume lock: %+v", res)
	}
	if _, err := os.Lstat(filepath.Join(host, LockName)); err != nil {
		t.Fatalf("not mirrored onto the host: %v", err)
	}
	vol.RemoveLock()
	res = m.Observe("volume:v")
	if !res.Released {
		t.Fatalf("release: %+v", res)
	}
	clk.t = clk.t.Add(time.Second)
	m.Release(res.Round, clk.t)
	if _, err := os.Lstat(filepath.Join(host, LockName)); err == nil {
		t.Fatal("the host's mirror is still there")
	}
}
