package keychain

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mc-broker/mc-broker/broker/kinds/claude"

	"github.com/mc-broker/mc-broker/broker/credential"
	"github.com/mc-broker/mc-broker/broker/filelock"
)

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "testdata", "fixtures", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

var claudeItem = Item{Service: "Claude Code-credentials", Account: "dev"}

func claudeSource(f *fake) *Source {
	return f.source(Options{Name: "claude", Kind: claude.Kind, Item: claudeItem})
}

// assertArgvClean fails when any argv the fake saw holds a piece of secret.
func assertArgvClean(t *testing.T, f *fake, secret []byte) {
	t.Helper()
	calls := f.calls()
	if len(calls) == 0 {
		t.Fatal("the fake recorded no call")
	}
	for _, probe := range secretProbes(secret) {
		for _, c := range calls {
			if strings.Contains(c, probe) {
				t.Errorf("a security argv holds part of the secret (%d-byte probe); argv not repeated here", len(probe))
			}
		}
	}
}

// secretProbes are distinctive pieces of a secret: the token values of the
// fixtures (all contain FAKE) and the hex form.
func secretProbes(secret []byte) []string {
	probes := []string{hex.EncodeToString(secret)}
	if len(probes[0]) > 32 {
		probes = append(probes, probes[0][:32])
	}
	for _, p := range []string{"FAKE", "sk-ant-", "ya29.", "HOSTILE"} {
		if bytes.Contains(secret, []byte(p)) {
			probes = append(probes, p)
		}
	}
	return probes
}

func TestItemNames(t *testing.T) {
	if got := ClaudeItem("", "dev"); got != claudeItem {
		t.Errorf("default item: %+v", got)
	}
	sum := sha256.Sum256([]byte("/Users/dev/.claude-work"))
	want := "Claude Code-credentials-" + hex.EncodeToString(sum[:])[:8]
	if got := ClaudeItem("/Users/dev/.claude-work", "dev"); got.Service != want {
		t.Errorf("CLAUDE_CONFIG_DIR item: %q, want %q", got.Service, want)
	}
	// macOS file names arrive decomposed (NFD); Claude hashes the NFC form.
	composed, decomposed := "/Users/d\u00e9v/.claude", "/Users/de\u0301v/.claude"
	if a, b := ClaudeItem(composed, "dev"), ClaudeItem(decomposed, "dev"); a != b {
		t.Errorf("NFC and NFD spellings of one directory name different items: %q, %q", a.Service, b.Service)
	}
	for _, user := range []string{"Jane Doe", "", "j\u00f6rg", "a/b"} {
		if got := ClaudeItem("", user); got.Account != "claude-code-user" {
			t.Errorf("a user name Claude does not accept (%q): account %q, want claude-code-user", user, got.Account)
		}
	}
	if got := ClaudeItem("", "Jane.D-o_e9"); got.Account != "Jane.D-o_e9" {
		t.Errorf("a user name Claude accepts: account %q", got.Account)
	}
	if got := GeminiItem(); got.Service != "gemini-cli-oauth" || got.Account != "main-account" {
		t.Errorf("gemini item: %+v", got)
	}
	home := t.TempDir()
	sum = sha256.Sum256([]byte(home))
	if got := CodexItem(home); got.Service != "Codex Auth" || got.Account != "cli|"+hex.EncodeToString(sum[:])[:16] {
		t.Errorf("codex item: %+v", got)
	}
}

func TestParseAttributesOfTheRealOutput(t *testing.T) {
	a := ParseAttributes(fixture(t, "security/find-generic-password.txt"))
	if a.Label != "Claude Code-credentials" || a.Modified != "20261129080000Z" {
		t.Errorf("parsed %+v from the fixture", a)
	}
	hexLabel := ParseAttributes([]byte("    0x00000007 <blob>=0x4D7920C3A96C00  \"My \\303\\251l\\000\"\n"))
	if hexLabel.Label != "My \u00e9l" {
		t.Errorf("hex label: %q", hexLabel.Label)
	}
}

func TestReadReturnsTheItemAndKeepsItOutOfArgv(t *testing.T) {
	f := newFake(t)
	login := fixture(t, "claude/credentials.valid.json")
	f.put(fakeItem{Service: claudeItem.Service, Account: "dev", Label: claudeItem.Service, Secret: string(login), Mdat: "20261129080000Z"})
	got, err := claudeSource(f).Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, login) {
		t.Errorf("read %d bytes, want the %d stored (pretty-printed JSON comes back from hex)", len(got), len(login))
	}
	if _, err := claude.Kind.Inspect(got); err != nil {
		t.Errorf("the login read is not valid: %v", err)
	}
	assertArgvClean(t, f, login)
}

func TestReadErrorsAreTypedAndSayWhatToDo(t *testing.T) {
	f := newFake(t)
	s := claudeSource(f)
	ctx := context.Background()

	_, err := s.Read(ctx)
	var nf *NotFoundError
	if !errors.Is(err, credential.ErrNotLoggedIn) || !errors.As(err, &nf) {
		t.Errorf("no item: %v, want not logged in", err)
	}

	f.put(fakeItem{Service: claudeItem.Service, Account: "dev", Secret: `{"claudeAiOauth":{}}`})
	f.simulate("locked")
	_, err = s.Read(ctx)
	var locked *LockedError
	if !errors.As(err, &locked) || !strings.Contains(err.Error(), "keychain locked: run security unlock-keychain") {
		t.Errorf("locked keychain: %v", err)
	}
	if locked != nil && !strings.Contains(locked.Hint(), "unlock-keychain") {
		t.Errorf("locked hint: %q", locked.Hint())
	}

	f.simulate("denied")
	_, err = s.Read(ctx)
	var denied *DeniedError
	if !errors.As(err, &denied) || !strings.Contains(err.Error(), "denied") || !strings.Contains(denied.Hint(), "Always Allow") {
		t.Errorf("denied: %v", err)
	}
	for _, e := range []error{locked, denied} {
		if e != nil && strings.Contains(e.Error(), "passphrase") {
			t.Errorf("security's stderr leaked into the error: %v", e)
		}
	}

	_, err = (&Source{o: Options{Item: claudeItem, Security: Security{Bin: filepath.Join(t.TempDir(), "missing")}, Codec: identity{}}}).Read(ctx)
	var se *SecurityError
	if !errors.As(err, &se) || se.ExitCode != -1 {
		t.Errorf("missing program: %v", err)
	}
	// store: keychain off a Mac: the hint must not say to run the
	// program that is not there.
	if se != nil && (!strings.Contains(se.Hint(), "store: file") || !strings.Contains(se.Hint(), BinEnv)) {
		t.Errorf("missing program hint: %q", se.Hint())
	}
}

func TestHungSecurityIsKilledWithinTheTimeout(t *testing.T) {
	f := newFake(t)
	f.simulate("hang")
	s := f.source(Options{Name: "claude", Kind: claude.Kind, Item: claudeItem, Security: Security{Timeout: 300 * time.Millisecond}})
	start := time.Now()
	_, err := s.Read(context.Background())
	took := time.Since(start)
	var te *TimeoutError
	if !errors.As(err, &te) {
		t.Fatalf("hung security: %v, want *TimeoutError", err)
	}
	// The timeout, plus WaitDelay for the pipe a grandchild holds, at most.
	if took > 300*time.Millisecond+killGrace+2*time.Second {
		t.Errorf("Read returned after %s", took)
	}
	if !strings.Contains(te.Hint(), "Keychain prompt") {
		t.Errorf("timeout hint: %q", te.Hint())
	}
	// The prompt-like child in security's process group is gone too.
	data, err := os.ReadFile(f.store + ".hangpid")
	if err != nil {
		t.Fatal("the fake started no child:", err)
	}
	pid, _ := strconv.Atoi(string(data))
	deadline := time.Now().Add(5 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("the hung security's child %d is still running", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// alive reports whether pid runs (a zombie waiting for its parent does
// not count: it is dead and holds nothing).
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	return len(fields) == 0 || fields[0] != "Z"
}

func TestChangedPollsTheDateWithoutReadingTheSecret(t *testing.T) {
	f := newFake(t)
	s := claudeSource(f)
	ctx := context.Background()
	login := fixture(t, "claude/credentials.valid.json")
	f.put(fakeItem{Service: claudeItem.Service, Account: "dev", Secret: string(login), Mdat: "20261129080000Z"})

	steps := []struct {
		name    string
		prepare func()
		want    bool
	}{
		{"first call", nil, true},
		{"nothing happened", nil, false},
		{"still nothing", nil, false},
		{"Claude rewrote the item", func() {
			it, _ := f.get(claudeItem)
			it.Mdat = "20261129160000Z"
			f.put(it)
		}, true},
		{"quiet again", nil, false},
		{"logged out (item deleted)", func() { f.save(fakeStore{}) }, true},
		{"still logged out", nil, false},
	}
	for _, st := range steps {
		if st.prepare != nil {
			st.prepare()
		}
		got, err := s.Changed(ctx)
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if got != st.want {
			t.Errorf("%s: Changed = %v, want %v", st.name, got, st.want)
		}
	}
	for _, c := range f.calls() {
		if strings.Contains(" "+c+" ", " -w ") || strings.HasSuffix(c, " -w") {
			t.Errorf("Changed read the secret: %q", c)
		}
	}

	f.simulate("locked")
	if _, err := s.Changed(ctx); !errors.As(err, new(*LockedError)) {
		t.Errorf("locked keychain while polling: %v", err)
	}
}

func TestWatchedFiles(t *testing.T) {
	s := New(Options{Watch: []string{LoginKeychain("/Users/dev")}})
	if got := s.WatchedFiles(); len(got) != 1 || got[0] != "/Users/dev/Library/Keychains/login.keychain-db" {
		t.Errorf("WatchedFiles: %v", got)
	}
}

// hostile is a login whose bytes break naive quoting: quotes, spaces,
// backslashes, a newline, a tab, non-ASCII, and a fake option.
var hostile = []byte("{\"claudeAiOauth\":{\"accessToken\":\"sk-ant-oat01-HOSTILE \\\" -w x '$(id)' \\\\n\",\n\t\"refreshToken\":\"sk-ant-ort01-HOSTILE \u00e9\u6f22\",\"expiresAt\":4102444800000,\"scopes\":[\"user:inference\"]}}")

func TestUpdateWritesBackThroughStdinKeepingTheItemsNames(t *testing.T) {
	f := newFake(t)
	s := claudeSource(f)
	ctx := context.Background()
	old := fixture(t, "claude/credentials.valid.json")
	f.put(fakeItem{Service: claudeItem.Service, Account: "dev", Label: "My Claude login", Secret: string(old), Cdat: "20261128080000Z", Mdat: "20261129080000Z"})
	if _, err := s.Changed(ctx); err != nil {
		t.Fatal(err)
	}

	var sawCurrent []byte
	err := s.Update(ctx, func(current []byte, exists bool) ([]byte, bool) {
		if !exists {
			t.Error("decide was told there is no item")
		}
		sawCurrent = current
		return hostile, true
	})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(sawCurrent, old) {
		t.Error("decide did not get the item's current login")
	}
	it, _ := f.get(claudeItem)
	if it.Secret != string(hostile) {
		t.Errorf("the item holds %d bytes, want the %d written, byte for byte", len(it.Secret), len(hostile))
	}
	if it.Label != "My Claude login" || it.Service != claudeItem.Service || it.Account != "dev" {
		t.Errorf("names changed: label %q service %q account %q", it.Label, it.Service, it.Account)
	}
	if got, err := s.Read(ctx); err != nil || !bytes.Equal(got, hostile) {
		t.Errorf("read after write-back: %d bytes, %v", len(got), err)
	}
	if changed, _ := s.Changed(ctx); !changed {
		t.Error("Changed did not notice the write-back's new modification date")
	}
	assertArgvClean(t, f, hostile)
	assertArgvClean(t, f, old)
	sawInteractive := false
	for _, c := range f.calls() {
		sawInteractive = sawInteractive || c == "-i"
	}
	if !sawInteractive {
		t.Error("the write did not go through security -i")
	}
}

func TestUpdateCreatesAMissingItemAndSkipsWhenDecideSaysNo(t *testing.T) {
	f := newFake(t)
	s := claudeSource(f)
	ctx := context.Background()
	login := fixture(t, "claude/credentials.valid.json")
	err := s.Update(ctx, func(current []byte, exists bool) ([]byte, bool) {
		if exists || current != nil {
			t.Errorf("no item, but decide got exists=%v and %d bytes", exists, len(current))
		}
		return login, true
	})
	if err != nil {
		t.Fatal(err)
	}
	it, ok := f.get(claudeItem)
	if !ok || it.Secret != string(login) || it.Label != claudeItem.Service {
		t.Errorf("created item: found=%v label=%q, %d bytes", ok, it.Label, len(it.Secret))
	}

	f.resetCalls()
	if err := s.Update(ctx, func([]byte, bool) ([]byte, bool) { return nil, false }); err != nil {
		t.Fatal(err)
	}
	for _, c := range f.calls() {
		if c == "-i" {
			t.Error("decide said no, but security -i ran")
		}
	}
}

func TestUpdateFailsWhenTheReadBackDiffers(t *testing.T) {
	f := newFake(t)
	s := claudeSource(f)
	f.put(fakeItem{Service: claudeItem.Service, Account: "dev", Secret: string(fixture(t, "claude/credentials.valid.json"))})
	f.simulate("corrupt-write")
	err := s.Update(context.Background(), func([]byte, bool) ([]byte, bool) { return hostile, true })
	var ve *VerifyError
	if !errors.As(err, &ve) {
		t.Fatalf("a write that stored other bytes: %v, want *VerifyError", err)
	}
	if strings.Contains(err.Error(), "HOSTILE") {
		t.Error("the error shows the secret")
	}
}

func TestUpdateRefusesWhatSecurityWouldTruncate(t *testing.T) {
	f := newFake(t)
	s := claudeSource(f)
	old := string(fixture(t, "claude/credentials.valid.json"))
	f.put(fakeItem{Service: claudeItem.Service, Account: "dev", Secret: old})
	big := []byte(`{"claudeAiOauth":{"accessToken":"` + strings.Repeat("A", 2500) + `"}}`)
	err := s.Update(context.Background(), func([]byte, bool) ([]byte, bool) { return big, true })
	var tl *TooLargeError
	if !errors.As(err, &tl) {
		t.Fatalf("a login longer than a security -i line: %v, want *TooLargeError", err)
	}
	if it, _ := f.get(claudeItem); it.Secret != old {
		t.Error("the item was changed")
	}
	// What the refusal prevents: the same line fed to security -i runs cut
	// in two and stores a truncated login.
	line := append([]byte(`add-generic-password -U -s "`+claudeItem.Service+`" -a "dev" -X "`), hex.EncodeToString(big)...)
	line = append(line, "\"\n"...)
	_, _ = (&Security{Bin: f.bin}).run(context.Background(), claudeItem, "add-generic-password", line, "-i")
	if it, _ := f.get(claudeItem); it.Secret == string(big) {
		t.Error("the fake accepted a line longer than the real security -i does")
	}
}

func TestAddCommandRefusesNamesItCannotQuote(t *testing.T) {
	for _, item := range []Item{{Service: `a"b`, Account: "dev"}, {Service: "s", Account: `x\y`}, {Service: "s\n", Account: "dev"}} {
		if _, err := addCommand(item, "", []byte("{}")); !errors.As(err, new(*UnsafeNameError)) {
			t.Errorf("%q: %v, want *UnsafeNameError", item, err)
		}
	}
	line, err := addCommand(Item{Service: "Claude Code-credentials-1a2b3c4d", Account: "j\u00e9"}, "Claude Code-credentials", []byte(`{"a":"b c"}`))
	if err != nil {
		t.Fatal(err)
	}
	want := `add-generic-password -U -s "Claude Code-credentials-1a2b3c4d" -a "j` + "\u00e9" + `" -l "Claude Code-credentials" -X "` + hex.EncodeToString([]byte(`{"a":"b c"}`)) + "\"\n"
	if string(line) != want {
		t.Errorf("line:\n%s\nwant:\n%s", line, want)
	}
}

func TestDecodePassword(t *testing.T) {
	for in, want := range map[string]string{
		"{\"a\":1}\n": `{"a":1}`,
		hex.EncodeToString([]byte("{\n}")) + "\n": "{\n}",
		"plain\n": "plain",
	} {
		if got := string(decodePassword([]byte(in))); got != want {
			t.Errorf("decodePassword(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestUpdateWaitsForClaudesWriteLock(t *testing.T) {
	f := newFake(t)
	configDir := t.TempDir()
	lock := ClaudeWriteLock(configDir)
	s := f.source(Options{Name: "claude", Kind: claude.Kind, Item: claudeItem, WriteLock: lock, LockWait: 300 * time.Millisecond})
	login := fixture(t, "claude/credentials.valid.json")
	write := func(current []byte, exists bool) ([]byte, bool) {
		if _, err := os.Stat(lock); err != nil {
			t.Error("decide ran without holding Claude's write lock")
		}
		return login, true
	}

	// Claude is writing: Update waits, then gives up without writing.
	if err := os.Mkdir(lock, 0o700); err != nil {
		t.Fatal(err)
	}
	err := s.Update(context.Background(), write)
	if !errors.As(err, new(*filelock.DirLockBusyError)) {
		t.Fatalf("lock held: %v, want *LockBusyError", err)
	}
	if len(f.calls()) != 0 {
		t.Error("security ran while Claude held its lock")
	}

	// Claude finishes while Update waits: Update goes on.
	s.o.LockWait = 5 * time.Second
	go func() {
		time.Sleep(200 * time.Millisecond)
		os.Remove(lock)
	}()
	if err := s.Update(context.Background(), write); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(lock); !os.IsNotExist(err) {
		t.Error("Update left the lock behind")
	}

	// A lock left by a dead process (mtime older than 15 s) is taken over.
	os.Mkdir(lock, 0o700)
	old := time.Now().Add(-time.Minute)
	os.Chtimes(lock, old, old)
	if err := s.Update(context.Background(), write); err != nil {
		t.Errorf("stale lock: %v", err)
	}

	// No config directory: nobody to exclude.
	s.o.WriteLock = ClaudeWriteLock(filepath.Join(configDir, "missing"))
	if err := s.Update(context.Background(), func([]byte, bool) ([]byte, bool) { return login, true }); err != nil {
		t.Errorf("no config directory: %v", err)
	}
}

// A login that fits one security -i line is written, however close to the
// line's end: a host login with a few MCP server tokens is that large.
func TestUpdateWritesALoginThatJustFitsTheLine(t *testing.T) {
	f := newFake(t)
	s := claudeSource(f)
	f.put(fakeItem{Service: claudeItem.Service, Account: "dev", Label: claudeItem.Service, Secret: string(fixture(t, "claude/credentials.valid.json"))})
	prefix := `add-generic-password -U -s "` + claudeItem.Service + `" -a "dev" -l "` + claudeItem.Service + `" -X "`
	fits := (interactiveLineCap - 1 - len(prefix) - len("\"\n")) / 2
	mk := func(n int) []byte {
		head, tail := `{"claudeAiOauth":{"accessToken":"sk-ant-oat01-FAKE`, `"}}`
		return []byte(head + strings.Repeat("A", n-len(head)-len(tail)) + tail)
	}
	big := mk(fits)
	if err := s.Update(context.Background(), func([]byte, bool) ([]byte, bool) { return big, true }); err != nil {
		t.Fatalf("a %d-byte login that fits one line: %v", len(big), err)
	}
	if it, _ := f.get(claudeItem); it.Secret != string(big) {
		t.Errorf("the item holds %d bytes, want the %d written", len(it.Secret), len(big))
	}
	err := s.Update(context.Background(), func([]byte, bool) ([]byte, bool) { return mk(fits + 1), true })
	var tl *TooLargeError
	if !errors.As(err, &tl) {
		t.Fatalf("one byte more: %v, want *TooLargeError", err)
	}
	if !strings.Contains(err.Error(), strconv.Itoa(fits)) {
		t.Errorf("the error does not say the largest login that fits (%d): %v", fits, err)
	}
}
