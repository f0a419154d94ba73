package broker_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mc-broker/mc-broker/broker/kinds/claude"

	"github.com/mc-broker/mc-broker/broker"
	"github.com/mc-broker/mc-broker/broker/credential"
	"github.com/mc-broker/mc-broker/sinks/dir"
	"github.com/mc-broker/mc-broker/sources/file"
)

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "testdata", "fixtures", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func put(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// world is a host with one claude source and copy directories named by the
// test, all real files.
type world struct {
	t      *testing.T
	root   string
	source string
	b      *broker.Broker
}

func newWorld(t *testing.T, copies ...string) *world {
	w := &world{t: t, root: t.TempDir()}
	w.source = filepath.Join(w.root, "host", ".credentials.json")
	w.b = &broker.Broker{Sources: []broker.Source{file.New("claude", claude.Kind, w.source)}, StateDir: filepath.Join(w.root, "state")}
	for _, name := range copies {
		w.b.Copies = append(w.b.Copies, broker.Copy{Source: "claude", Sink: dir.New(dir.Options{
			Dir: w.copyDir(name), FileName: ".credentials.json", LockDir: filepath.Join(w.root, "locks"),
		})})
	}
	return w
}

func (w *world) copyDir(name string) string { return filepath.Join(w.root, "copies", name) }
func (w *world) copyFile(name string) string {
	return filepath.Join(w.copyDir(name), ".credentials.json")
}

func outcomes(r *broker.Report) map[string]broker.Outcome {
	m := map[string]broker.Outcome{}
	for _, s := range r.Sources {
		for _, c := range s.Copies {
			m[filepath.Base(filepath.Dir(c.Location))] = c.Outcome
		}
	}
	return m
}

// loginAt is a Claude login (with the fixture's mcpOAuth member) whose
// access token expires ttl from now; n makes its tokens its own.
func loginAt(t *testing.T, ttl time.Duration, n int) []byte {
	t.Helper()
	data := fixture(t, "claude/credentials.valid.json")
	data = bytes.ReplaceAll(data, []byte("TOKEN-0001"), []byte(fmt.Sprintf("TOKEN-%04d", n)))
	return bytes.Replace(data, []byte("4102444800000"), []byte(strconv.FormatInt(time.Now().Add(ttl).UnixMilli(), 10)), 1)
}

func forCopy(t *testing.T, data []byte) []byte {
	t.Helper()
	out, err := claude.Kind.ForCopy(data, credential.CopyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestSyncDecidesPerCopy(t *testing.T) {
	w := newWorld(t, "missing", "older", "broken", "newer", "same", "poisoned")
	host := loginAt(t, 4*time.Hour, 1)
	want := forCopy(t, host)
	newer := forCopy(t, loginAt(t, 8*time.Hour, 2))
	poisoned := forCopy(t, loginAt(t, 10*365*24*time.Hour, 3))
	put(t, w.source, host)
	put(t, w.copyFile("older"), fixture(t, "claude/credentials.expired-refreshable.json"))
	put(t, w.copyFile("broken"), fixture(t, "claude/credentials.blanked.json"))
	put(t, w.copyFile("newer"), newer)
	put(t, w.copyFile("same"), want)
	put(t, w.copyFile("poisoned"), poisoned)

	r := w.b.Sync(context.Background(), broker.Options{})
	wantOutcomes := map[string]broker.Outcome{
		"missing": broker.Created, "older": broker.Updated, "broken": broker.Repaired,
		"newer": broker.TakenBack, "same": broker.Updated, "poisoned": broker.Repaired,
	}
	for name, o := range wantOutcomes {
		if got := outcomes(r)[name]; got != o {
			t.Errorf("%s copy: %s, want %s", name, got, o)
		}
	}
	// The newer login was taken back: the host holds it (with its own
	// mcpOAuth member), and every copy got it.
	hostNow := read(t, w.source)
	if !bytes.Equal(forCopy(t, hostNow), newer) || !bytes.Contains(hostNow, []byte("mcpOAuth")) {
		t.Errorf("host holds %s, want the newer login with its own mcpOAuth", credential.Fingerprint(hostNow))
	}
	for name := range wantOutcomes {
		if got := read(t, w.copyFile(name)); !bytes.Equal(got, newer) {
			t.Errorf("%s copy holds %s, want the newer login %s", name, credential.Fingerprint(got), credential.Fingerprint(newer))
		}
	}
	src := r.Sources[0]
	if src.TakenBackFrom != w.copyFile("newer") || src.Backup == "" {
		t.Errorf("taken back from %q, backup %q", src.TakenBackFrom, src.Backup)
	}
	if got, _ := os.ReadFile(src.Backup); !bytes.Equal(got, host) {
		t.Error("the backup does not hold the host's previous login")
	}
	var poisonReport broker.CopyReport
	for _, c := range src.Copies {
		if strings.HasSuffix(c.Location, "poisoned/.credentials.json") {
			poisonReport = c
		}
	}
	if !strings.Contains(poisonReport.Refused, "further ahead than claude ever issues") {
		t.Errorf("the poisoned copy's refusal says %q", poisonReport.Refused)
	}
	if code := r.ExitCode(); code != broker.ExitCopyFailed {
		t.Errorf("exit code %d, want 1 (a copy's login was refused)", code)
	}
	if src.State != broker.SourceValid || src.Fingerprint == "" || src.ExpiresAt == nil {
		t.Errorf("source report %+v", src)
	}
	for _, c := range src.Copies {
		if c.Fingerprint == "" {
			t.Errorf("copy %s has no fingerprint", c.Location)
		}
	}
	// A second sync finds everything in step.
	r = w.b.Sync(context.Background(), broker.Options{})
	for name, o := range outcomes(r) {
		if o != broker.Unchanged {
			t.Errorf("second sync: %s copy %s, want unchanged", name, o)
		}
	}
	if code := r.ExitCode(); code != broker.ExitOK {
		t.Errorf("second sync: exit code %d", code)
	}
}

func TestStatusAndDryRunWriteNothing(t *testing.T) {
	w := newWorld(t, "missing", "older", "broken", "newer", "same")
	valid := loginAt(t, 4*time.Hour, 1)
	want := forCopy(t, valid)
	put(t, w.source, valid)
	put(t, w.copyFile("older"), fixture(t, "claude/credentials.expired-refreshable.json"))
	put(t, w.copyFile("broken"), fixture(t, "claude/credentials.truncated.json"))
	put(t, w.copyFile("newer"), forCopy(t, loginAt(t, 8*time.Hour, 2)))
	put(t, w.copyFile("same"), bytes.Replace(want, []byte("\n"), []byte("\r\n"), 1)) // same login, other bytes
	w.b.Rules.Patience = time.Millisecond
	// Every path under the world, directories and lock files included.
	snapshot := func() map[string]string {
		m := map[string]string{}
		filepath.Walk(w.root, func(p string, info os.FileInfo, err error) error {
			switch {
			case err != nil:
			case info.Mode().IsRegular():
				m[p] = string(read(t, p)) + info.ModTime().String()
			default:
				m[p] = info.Mode().String()
			}
			return nil
		})
		return m
	}
	before := snapshot()

	st := w.b.Status(context.Background(), broker.Options{})
	// Status compares with the login the copies would hold: the newer
	// copy's, which would be taken back; so "same" is older than that.
	wantStatus := map[string]broker.Outcome{"missing": broker.Missing, "older": broker.Older, "broken": broker.Broken, "newer": broker.Newer, "same": broker.Older}
	for name, o := range wantStatus {
		if got := outcomes(st)[name]; got != o {
			t.Errorf("status of %s copy: %s, want %s", name, got, o)
		}
	}
	if st.Sources[0].TakenBackFrom != w.copyFile("newer") {
		t.Errorf("status does not say the newer copy would be taken back: %q", st.Sources[0].TakenBackFrom)
	}
	dry := w.b.Sync(context.Background(), broker.Options{DryRun: true})
	wantDry := map[string]broker.Outcome{"missing": broker.Created, "older": broker.Updated, "broken": broker.Repaired, "newer": broker.TakenBack, "same": broker.Updated}
	for name, o := range wantDry {
		if got := outcomes(dry)[name]; got != o {
			t.Errorf("dry run of %s copy: %s, want %s", name, got, o)
		}
	}
	if !dry.DryRun {
		t.Error("dry-run report not marked")
	}
	after := snapshot()
	if len(before) != len(after) {
		t.Fatalf("files appeared or vanished: %d -> %d", len(before), len(after))
	}
	for p, v := range before {
		if after[p] != v {
			t.Errorf("%s changed", p)
		}
	}
	if _, err := os.Stat(w.copyDir("missing")); !os.IsNotExist(err) {
		t.Error("status or dry run created a copy directory")
	}
}

func TestUnusableSourceLeavesCopiesAlone(t *testing.T) {
	tests := []struct {
		name   string
		source []byte // nil: no file
		opts   broker.Options
		state  broker.SourceState
		code   int
	}{
		{"not logged in", nil, broker.Options{}, broker.SourceNotLoggedIn, broker.ExitOK},
		{"not logged in, asked for", nil, broker.Options{Only: []string{"claude"}}, broker.SourceNotLoggedIn, broker.ExitCredential},
		{"blanked", fixture(t, "claude/credentials.blanked.json"), broker.Options{}, broker.SourceBroken, broker.ExitCredential},
		{"truncated", fixture(t, "claude/credentials.truncated.json"), broker.Options{}, broker.SourceBroken, broker.ExitCredential},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t, "a")
			old := fixture(t, "claude/credentials.expired-refreshable.json")
			put(t, w.copyFile("a"), old)
			if tt.source != nil {
				put(t, w.source, tt.source)
			}
			r := w.b.Sync(context.Background(), tt.opts)
			if got := r.Sources[0].State; got != tt.state {
				t.Errorf("state %s, want %s", got, tt.state)
			}
			if got := outcomes(r)["a"]; got != broker.Skipped {
				t.Errorf("copy %s, want skipped", got)
			}
			if !bytes.Equal(read(t, w.copyFile("a")), old) {
				t.Error("the copy was touched")
			}
			if r.Sources[0].Hint == "" {
				t.Error("no hint for the user")
			}
			if code := r.ExitCode(); code != tt.code {
				t.Errorf("exit code %d, want %d", code, tt.code)
			}
		})
	}
}

func TestFailedCopyDoesNotStopTheOthers(t *testing.T) {
	w := newWorld(t, "a", "blocked", "c")
	put(t, w.source, fixture(t, "claude/credentials.valid.json"))
	// A file where the copy directory belongs.
	put(t, w.copyDir("blocked"), []byte("not a directory"))
	r := w.b.Sync(context.Background(), broker.Options{})
	o := outcomes(r)
	if o["a"] != broker.Created || o["c"] != broker.Created || o["blocked"] != broker.Failed {
		t.Errorf("outcomes %v", o)
	}
	if code := r.ExitCode(); code != broker.ExitCopyFailed {
		t.Errorf("exit code %d, want %d", code, broker.ExitCopyFailed)
	}
}

func TestMinTTLFlagsButStillWrites(t *testing.T) {
	w := newWorld(t, "a")
	put(t, w.source, fixture(t, "claude/credentials.valid.json"))
	w.b.Now = func() time.Time { return time.Date(2099, 12, 31, 23, 30, 0, 0, time.UTC) }
	r := w.b.Sync(context.Background(), broker.Options{MinTTL: time.Hour})
	s := r.Sources[0]
	if !s.ExpiresSoon || s.ExpiresInSeconds != 1800 {
		t.Errorf("expires soon=%v in %ds, want true in 1800s", s.ExpiresSoon, s.ExpiresInSeconds)
	}
	if r.ExitCode() != broker.ExitCredential {
		t.Errorf("exit code %d", r.ExitCode())
	}
	if outcomes(r)["a"] != broker.Created {
		t.Error("the copy was not written")
	}
	r = w.b.Sync(context.Background(), broker.Options{MinTTL: 10 * time.Minute})
	if r.Sources[0].ExpiresSoon || r.ExitCode() != broker.ExitOK {
		t.Error("30 minutes left is not sooner than a 10 minute --min-ttl")
	}
}

func TestOnlySelectsSources(t *testing.T) {
	w := newWorld(t, "a")
	put(t, w.source, fixture(t, "claude/credentials.valid.json"))
	r := w.b.Sync(context.Background(), broker.Options{Only: []string{"codex"}})
	if len(r.Sources) != 0 {
		t.Errorf("--only codex still synced %d sources", len(r.Sources))
	}
	if _, err := os.Stat(w.copyFile("a")); !os.IsNotExist(err) {
		t.Error("an unselected copy was written")
	}
}
