//go:build linux

package rotation

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// protoBroker is a test-only prototype of what docs/LOCKMIRROR.md proposes
// for Codex, over directories: it does what mc-broker watch does for them
// (a login a holder writes is fanned out to every other directory at once),
// and, with hold, makes only one directory's codex refresh a login.
//
// Why it works (codex 0.171, verified with strace and by running it): a
// codex that finds its login within 300 s of expiry reloads auth.json just
// before it sends its refresh request, and skips the refresh when the file
// differs from what it last loaded ("Skipping token refresh because auth
// changed after guarded reload"); it then goes on with the access token it
// has, which is still valid. The reload is a read of auth.json, which
// inotify reports (IN_OPEN). So, once the login is due:
//
//   - the first directory whose auth.json is read is elected: its codex
//     goes on and refreshes;
//   - every other directory gets the same login with a new last_refresh
//     (same tokens: nothing is minted, no token endpoint is called), so its
//     codex's reload sees a change and skips the refresh;
//   - each later read in a non-elected directory is answered the same way,
//     so the next reload there skips again;
//   - the new login, once the elected codex writes it, is fanned out as
//     usual and ends the hold (so does a timeout: holdFor).
//
// Writes into a directory take codex's own locks (auth.lock, then
// auth.json.lock) and never replace a login newer than the one held, so a
// codex writing a refresh at the same moment is never overwritten.
type protoBroker struct {
	dirs []string
	mode protoMode

	fd       int
	wd       map[int32]string // inotify watch descriptor -> directory
	quit     atomic.Bool
	stopOnce sync.Once

	mu   sync.Mutex // the loop's state
	fmu  sync.Mutex // written, ownOpens, st and trace: holds are written concurrently
	done chan struct{}

	cur      []byte    // the newest login
	curExp   time.Time // its access token's exp
	written  map[string][]byte
	ownOpens map[string]int // our own opens of dir/auth.json not seen yet

	elected   string
	holdUntil time.Time
	st        protoStats
	trace     []string
}

func (p *protoBroker) tracef(format string, args ...any) {
	p.fmu.Lock()
	defer p.fmu.Unlock()
	p.trace = append(p.trace, time.Now().Format("15:04:05.000000")+" pro "+fmt.Sprintf(format, args...))
}

// protoMode is how the prototype keeps other holders from refreshing.
type protoMode string

const (
	fanOutOnly protoMode = "fan-out"
	// bump: other directories get the login with a new last_refresh; each
	// read there is answered with another one.
	bump protoMode = "bump"
	// accountHold: other directories get the login with another
	// tokens.account_id until the new login arrives.
	accountHold protoMode = "account-hold"
)

// holdAccount marks a held login's account id.
const holdAccount = "mc-broker-hold"

// protoStats is what the prototype did.
type protoStats struct {
	Adopted   int // new logins a holder wrote, fanned out
	Elections int // holds started
	Bumps     int // writes that made a codex skip a refresh
	Timeouts  int // holds that ended without a new login
}

// holdFor bounds a hold: a codex that was elected but never refreshes (it
// only read its login, or died) holds nobody up for longer.
const holdFor = 3 * time.Second

// startProto writes the host's login into every copy directory and starts
// the prototype over the host's directory and the copies.
func (f *fleet) startProto(mode protoMode) {
	t := f.t
	source := filepath.Join(f.home, ".codex")
	cur, err := os.ReadFile(filepath.Join(source, "auth.json"))
	if err != nil {
		t.Fatal(err)
	}
	p := &protoBroker{dirs: []string{source}, mode: mode, wd: map[int32]string{}, written: map[string][]byte{}, ownOpens: map[string]int{}, done: make(chan struct{})}
	p.cur, p.curExp = cur, accessExp(cur)
	for _, h := range f.holder {
		switch h.kind {
		case inDir, inBind:
			if err := os.MkdirAll(h.dir, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(h.dir, "auth.json"), cur, 0o600); err != nil {
				t.Fatal(err)
			}
			p.dirs = append(p.dirs, h.dir)
		case inVolume:
			t.Fatal("the prototype handles directories only")
		}
	}
	for _, d := range p.dirs {
		p.written[d] = cur
	}
	p.fd, err = syscall.InotifyInit1(syscall.IN_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range p.dirs {
		wd, err := syscall.InotifyAddWatch(p.fd, d, syscall.IN_OPEN|syscall.IN_CLOSE_WRITE|syscall.IN_MOVED_TO)
		if err != nil {
			t.Fatal(err)
		}
		p.wd[int32(wd)] = d
	}
	go p.loop()
	f.proto = p
	t.Cleanup(func() { p.stop() })
}

// stop ends the prototype and returns what it did.
func (p *protoBroker) stop() protoStats {
	p.stopOnce.Do(func() {
		p.quit.Store(true)
		// Removing the watches queues IN_IGNORED events, which wake the
		// loop's read (closing the descriptor would not); the loop then
		// sees quit and closes it.
		for wd := range p.wd {
			syscall.InotifyRmWatch(p.fd, uint32(wd))
		}
		<-p.done
	})
	p.fmu.Lock()
	defer p.fmu.Unlock()
	return p.st
}

func (p *protoBroker) loop() {
	defer close(p.done)
	defer syscall.Close(p.fd)
	buf := make([]byte, 64<<10)
	fd := p.fd
	for {
		n, err := syscall.Read(fd, buf)
		if err != nil || n <= 0 || p.quit.Load() {
			return
		}
		for off := 0; off+syscall.SizeofInotifyEvent <= n; {
			ev := (*syscall.InotifyEvent)(unsafe.Pointer(&buf[off]))
			name := string(bytes.TrimRight(buf[off+syscall.SizeofInotifyEvent:off+syscall.SizeofInotifyEvent+int(ev.Len)], "\x00"))
			off += syscall.SizeofInotifyEvent + int(ev.Len)
			if name != "auth.json" {
				continue
			}
			p.mu.Lock()
			dir := p.wd[ev.Wd]
			switch {
			case ev.Mask&syscall.IN_OPEN != 0:
				p.fmu.Lock()
				own := p.ownOpens[dir] > 0
				if own {
					p.ownOpens[dir]--
				}
				p.fmu.Unlock()
				if !own {
					p.tracef("read %s", filepath.Base(dir))
					p.onRead(dir)
				}
			case ev.Mask&(syscall.IN_CLOSE_WRITE|syscall.IN_MOVED_TO) != 0:
				p.onWrite(dir)
			}
			p.mu.Unlock()
		}
	}
}

// expectOpens tells the prototype that the next n opens of dir/auth.json
// are the test's, not a codex's (n < 0 takes that back).
func (p *protoBroker) expectOpens(dir string, n int) {
	p.fmu.Lock()
	defer p.fmu.Unlock()
	p.ownOpens[dir] += n
}

// readAuth reads dir/auth.json, remembering that the open is ours.
func (p *protoBroker) readAuth(dir string) []byte {
	p.fmu.Lock()
	p.ownOpens[dir]++
	p.fmu.Unlock()
	data, err := os.ReadFile(filepath.Join(dir, "auth.json"))
	if err != nil {
		p.fmu.Lock()
		p.ownOpens[dir]--
		p.fmu.Unlock()
		return nil
	}
	return data
}

// onWrite: a holder (or we) wrote dir/auth.json. A newer login is fanned
// out and ends any hold.
func (p *protoBroker) onWrite(dir string) {
	data := p.readAuth(dir)
	if data == nil || bytes.Equal(data, p.lastWritten(dir)) {
		return
	}
	if !newLogin(data, p.cur) {
		return
	}
	exp := accessExp(data)
	// A codex that refreshed in a held directory wrote the held account
	// id back with its new tokens.
	data = withAccount(data, account)
	p.cur, p.curExp = data, exp
	p.tracef("new login from %s", filepath.Base(dir))
	p.fmu.Lock()
	p.st.Adopted++
	p.fmu.Unlock()
	p.elected = ""
	for _, d := range p.dirs {
		if d != dir || !bytes.Equal(data, p.lastWritten(d)) {
			p.write(d, data)
		}
	}
}

// onRead: a codex read dir/auth.json. Once the login is due for a refresh,
// the first reader's directory is elected and every other directory is
// made to look changed; a later read elsewhere is answered the same way.
func (p *protoBroker) onRead(dir string) {
	if p.mode == fanOutOnly || time.Now().Before(p.curExp.Add(-codexMargin)) {
		return
	}
	if p.elected != "" && time.Now().After(p.holdUntil) {
		p.fmu.Lock()
		p.st.Timeouts++
		p.fmu.Unlock()
		p.elected = ""
		if p.mode == accountHold {
			for _, d := range p.dirs {
				p.write(d, p.cur)
			}
		}
	}
	if p.elected == "" {
		p.elected, p.holdUntil = dir, time.Now().Add(holdFor)
		p.tracef("elect %s", filepath.Base(dir))
		p.fmu.Lock()
		p.st.Elections++
		p.fmu.Unlock()
		// All at once: a codex that reloads before its directory is
		// held refreshes too (the race window).
		var wg sync.WaitGroup
		for _, d := range p.dirs {
			if d != dir {
				wg.Add(1)
				go func() { defer wg.Done(); p.holdOff(d) }()
			}
		}
		wg.Wait()
		return
	}
	if dir != p.elected && p.mode == bump {
		p.holdOff(dir)
	}
}

// holdOff writes into dir what makes its codex skip a refresh.
func (p *protoBroker) holdOff(dir string) {
	data := withAccount(p.cur, holdAccount)
	if p.mode == bump {
		var m map[string]any
		if json.Unmarshal(p.cur, &m) != nil {
			return
		}
		m["last_refresh"] = time.Now().UTC().Format(time.RFC3339Nano)
		data, _ = json.MarshalIndent(m, "", "  ")
	}
	if p.write(dir, data) {
		p.fmu.Lock()
		p.st.Bumps++
		p.fmu.Unlock()
		p.tracef("held %s", filepath.Base(dir))
	}
}

// withAccount is the auth.json data with tokens.account_id set to id.
func withAccount(data []byte, id string) []byte {
	var m map[string]any
	if json.Unmarshal(data, &m) != nil {
		return data
	}
	tokens, ok := m["tokens"].(map[string]any)
	if !ok || tokens["account_id"] == id {
		return data
	}
	tokens["account_id"] = id
	out, _ := json.MarshalIndent(m, "", "  ")
	return out
}

// write replaces dir/auth.json with data under codex's locks, unless the
// file holds a login newer than the current one (a codex just wrote its
// refresh: onWrite will see it).
func (p *protoBroker) write(dir string, data []byte) bool {
	unlock, err := codexLocks(dir)
	if err != nil {
		return false
	}
	defer unlock()
	if on := p.readAuth(dir); on != nil && newLogin(on, p.cur) {
		return false
	}
	tmp := filepath.Join(dir, fmt.Sprintf(".auth-proto-%d", time.Now().UnixNano()))
	if os.WriteFile(tmp, data, 0o600) != nil {
		return false
	}
	if os.Rename(tmp, filepath.Join(dir, "auth.json")) != nil {
		os.Remove(tmp)
		return false
	}
	p.fmu.Lock()
	p.written[dir] = data
	p.fmu.Unlock()
	return true
}

func (p *protoBroker) lastWritten(dir string) []byte {
	p.fmu.Lock()
	defer p.fmu.Unlock()
	return p.written[dir]
}

// codexLocks takes the locks codex 0.171 takes around writing auth.json:
// flock auth.lock, then auth.json.lock, waiting at most a second.
func codexLocks(dir string) (unlock func(), err error) {
	var files []*os.File
	unlock = func() {
		for i := len(files) - 1; i >= 0; i-- {
			files[i].Close()
		}
	}
	for _, name := range []string{"auth.lock", "auth.json.lock"} {
		f, err := os.OpenFile(filepath.Join(dir, name), os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			unlock()
			return nil, err
		}
		files = append(files, f)
		deadline := time.Now().Add(time.Second)
		for {
			err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				unlock()
				return nil, err
			}
			time.Sleep(time.Millisecond)
		}
	}
	return unlock, nil
}

// newLogin reports whether data holds a login issued after cur's: another
// refresh token, and fresher (what the prototype writes itself keeps cur's
// refresh token).
func newLogin(data, cur []byte) bool {
	return refreshTokenOf(data) != refreshTokenOf(cur) && fresher(data, cur)
}

// fresher orders logins as mc-broker does: by the access token's exp, then
// by last_refresh (exp has whole seconds; codex refreshes a login it just
// got when a request is refused with 401, without the guarded reload).
func fresher(a, b []byte) bool {
	ea, eb := accessExp(a), accessExp(b)
	if !ea.Equal(eb) {
		return ea.After(eb)
	}
	return lastRefresh(a).After(lastRefresh(b))
}

func lastRefresh(data []byte) time.Time {
	var f struct {
		LastRefresh time.Time `json:"last_refresh"`
	}
	_ = json.Unmarshal(data, &f)
	return f.LastRefresh
}

// accessExp is the exp of an auth.json's access token (zero if none).
func accessExp(data []byte) time.Time {
	var f struct {
		Tokens struct {
			AccessToken string `json:"access_token"`
		} `json:"tokens"`
	}
	if json.Unmarshal(data, &f) != nil {
		return time.Time{}
	}
	parts := bytes.Split([]byte(f.Tokens.AccessToken), []byte("."))
	if len(parts) != 3 {
		return time.Time{}
	}
	payload, err := decodeSegment(parts[1])
	if err != nil {
		return time.Time{}
	}
	var claims struct {
		Exp int64 `json:"exp"`
	}
	if json.Unmarshal(payload, &claims) != nil {
		return time.Time{}
	}
	return time.Unix(claims.Exp, 0)
}

func decodeSegment(seg []byte) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(string(bytes.TrimRight(seg, "=")))
}
