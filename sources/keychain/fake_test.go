package keychain

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

var (
	fakeOnce sync.Once
	fakeBin  string
	fakeErr  error
)

// buildFake builds internal/fakesecurity once per test binary.
func buildFake(t *testing.T) string {
	t.Helper()
	fakeOnce.Do(func() {
		dir, err := os.MkdirTemp("", "fakesecurity-")
		if err != nil {
			fakeErr = err
			return
		}
		fakeBin = filepath.Join(dir, "security")
		out, err := exec.Command("go", "build", "-o", fakeBin, "./internal/fakesecurity").CombinedOutput()
		if err != nil {
			fakeErr = &buildError{string(out)}
		}
	})
	if fakeErr != nil {
		t.Fatal(fakeErr)
	}
	return fakeBin
}

type buildError struct{ out string }

func (e *buildError) Error() string { return "building the fake security: " + e.out }

// fake is one fake keychain: a store file and an argv log.
type fake struct {
	t     *testing.T
	bin   string
	store string
	log   string
}

type fakeItem struct {
	Service string `json:"service"`
	Account string `json:"account"`
	Label   string `json:"label"`
	Secret  string `json:"secret"`
	Cdat    string `json:"cdat"`
	Mdat    string `json:"mdat"`
}

type fakeStore struct {
	Simulate string     `json:"simulate,omitempty"`
	Items    []fakeItem `json:"items"`
}

// newFake returns an empty fake keychain. The environment variables that
// point the fake at its files are set for the test (and so inherited by
// every security process it starts).
func newFake(t *testing.T) *fake {
	dir := t.TempDir()
	f := &fake{t: t, bin: buildFake(t), store: filepath.Join(dir, "store.json"), log: filepath.Join(dir, "argv.log")}
	t.Setenv("FAKE_SECURITY_STORE", f.store)
	t.Setenv("FAKE_SECURITY_LOG", f.log)
	f.save(fakeStore{})
	return f
}

func (f *fake) load() fakeStore {
	f.t.Helper()
	var st fakeStore
	data, err := os.ReadFile(f.store)
	if err != nil {
		f.t.Fatal(err)
	}
	if err := json.Unmarshal(data, &st); err != nil {
		f.t.Fatal(err)
	}
	return st
}

func (f *fake) save(st fakeStore) {
	f.t.Helper()
	data, _ := json.Marshal(st)
	if err := os.WriteFile(f.store, data, 0o600); err != nil {
		f.t.Fatal(err)
	}
}

// put stores an item, replacing one with the same service and account.
func (f *fake) put(it fakeItem) {
	f.t.Helper()
	st := f.load()
	for i := range st.Items {
		if st.Items[i].Service == it.Service && st.Items[i].Account == it.Account {
			st.Items[i] = it
			f.save(st)
			return
		}
	}
	st.Items = append(st.Items, it)
	f.save(st)
}

func (f *fake) get(item Item) (fakeItem, bool) {
	for _, it := range f.load().Items {
		if it.Service == item.Service && it.Account == item.Account {
			return it, true
		}
	}
	return fakeItem{}, false
}

func (f *fake) simulate(mode string) {
	st := f.load()
	st.Simulate = mode
	f.save(st)
}

// calls returns the argv of every call so far, one string per call.
func (f *fake) calls() []string {
	data, err := os.ReadFile(f.log)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		f.t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
}

func (f *fake) resetCalls() { os.Remove(f.log) }

// source returns a source reading item through the fake.
func (f *fake) source(o Options) *Source {
	o.Security.Bin = f.bin
	return New(o)
}
