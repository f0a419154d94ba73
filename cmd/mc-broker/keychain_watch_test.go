package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mc-broker/mc-broker/broker/kinds/claude"

	"github.com/mc-broker/mc-broker/broker/credential"
)

// fakeKeychain is the fake security's store file (see
// sources/keychain/internal/fakesecurity).
type fakeKeychain struct {
	path string
}

type fakeItem struct {
	Service string `json:"service"`
	Account string `json:"account"`
	Label   string `json:"label"`
	Secret  string `json:"secret"`
	Mdat    string `json:"mdat"`
}

func (k fakeKeychain) items(t *testing.T) []fakeItem {
	t.Helper()
	var st struct {
		Items []fakeItem `json:"items"`
	}
	data, err := os.ReadFile(k.path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &st); err != nil {
		t.Fatal(err)
	}
	return st.Items
}

// put replaces the store with one item, as Claude's own
// `security add-generic-password -U` would leave it.
func (k fakeKeychain) put(t *testing.T, it fakeItem) {
	t.Helper()
	data, err := json.Marshal(map[string]any{"items": []fakeItem{it}})
	if err != nil {
		t.Fatal(err)
	}
	tmp := k.path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, k.path); err != nil {
		t.Fatal(err)
	}
}

// TestWatchKeychainBothWays is issue 5's "done when" on Linux, against the
// fake security: watch notices Claude's refresh of its Keychain item
// within the poll interval, and a container-side refresh lands back in the
// item (after a backup), with no secret in any argv or log.
func TestWatchKeychainBothWays(t *testing.T) {
	root := t.TempDir()
	home := filepath.Join(root, "home")
	copyFile := filepath.Join(home, "auth", "claude", ".credentials.json")
	kc := fakeKeychain{path: filepath.Join(root, "keychain.json")}
	argvLog := filepath.Join(root, "security-argv.log")
	fixture, err := os.ReadFile(filepath.Join(fixturesDir(t), "claude", "credentials.valid.json"))
	if err != nil {
		t.Fatal(err)
	}
	// Expiry a few hours ahead, later for each generation: a login is
	// taken back only when it expires within what Claude ever issues.
	base := time.Now().Add(4 * time.Hour).UnixMilli()
	generation := func(n int) []byte {
		out := bytes.Replace(fixture, []byte(`"expiresAt": 4102444800000`), []byte(`"expiresAt": `+strconv.FormatInt(base+int64(n)*10000, 10)), 1)
		return bytes.Replace(out, []byte("sk-ant-oat01-FAKE"), []byte("sk-ant-oat01-GEN"+string(rune('0'+n))+"-FAKE"), 1)
	}
	kc.put(t, fakeItem{Service: "Claude Code-credentials", Account: "dev", Label: "Claude Code-credentials", Secret: string(generation(1)), Mdat: "20261129080000Z"})
	cfg := filepath.Join(root, "cfg.yaml")
	os.MkdirAll(home, 0o755)
	os.WriteFile(cfg, []byte("sources:\n  claude: {store: keychain}\nsinks:\n  - {source: claude, dir: ~/auth/claude}\n"), 0o600)

	cmd := exec.Command(filepath.Join(binDir, "mc-broker"), "watch", "--config", cfg, "--poll-interval", "100ms", "--log-format", "json")
	cmd.Env = append(os.Environ(), "HOME="+home, "USER=dev", "XDG_STATE_HOME="+filepath.Join(root, "state"),
		"MC_BROKER_SECURITY_BIN="+filepath.Join(binDir, "fakesecurity", "security"),
		"FAKE_SECURITY_STORE="+kc.path, "FAKE_SECURITY_LOG="+argvLog,
		"DOCKER_HOST=unix://"+filepath.Join(root, "no-docker.sock"))
	var logs bytes.Buffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			cmd.Process.Kill()
			cmd.Wait()
		}
	}()
	holds := func(path string, gen int) func() (bool, string) {
		return func() (bool, string) {
			data, _ := os.ReadFile(path)
			return bytes.Contains(data, []byte("sk-ant-oat01-GEN"+string(rune('0'+gen))+"-FAKE")), "not yet"
		}
	}
	waitFor(t, 10*time.Second, "the first copy", holds(copyFile, 1))

	// Claude refreshes on the host: it rewrites its item (new mdat).
	kc.put(t, fakeItem{Service: "Claude Code-credentials", Account: "dev", Label: "Claude Code-credentials", Secret: string(generation(2)), Mdat: "20261129090000Z"})
	took := waitFor(t, 5*time.Second, "the Keychain refresh to reach the copy", holds(copyFile, 2))
	t.Logf("Keychain refresh reached the copy in %v (poll interval 100ms)", took)

	// A container refreshes in its copy: the newer login goes back into the
	// item, keeping the host's MCP tokens, after a backup.
	tmp := copyFile + ".tmp"
	gen3, err := claude.Kind.ForCopy(generation(3), credential.CopyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(tmp, gen3, 0o600)
	os.Rename(tmp, copyFile)
	waitFor(t, 5*time.Second, "the container's refresh to reach the Keychain item", func() (bool, string) {
		items := kc.items(t)
		return len(items) == 1 && strings.Contains(items[0].Secret, "sk-ant-oat01-GEN3-FAKE"), "not yet"
	})
	item := kc.items(t)[0]
	if item.Service != "Claude Code-credentials" || item.Account != "dev" || item.Label != "Claude Code-credentials" {
		t.Errorf("write-back changed the item's names: %+v", item)
	}
	if !strings.Contains(item.Secret, `"mcpOAuth"`) {
		t.Error("write-back dropped the host's mcpOAuth block from the Keychain item")
	}
	backups, _ := filepath.Glob(filepath.Join(root, "state", "mc-broker", "backups", "claude", "*", "*.json"))
	if len(backups) != 1 {
		t.Fatalf("%d backups, want 1", len(backups))
	}
	if b, _ := os.ReadFile(backups[0]); !bytes.Contains(b, []byte("sk-ant-oat01-GEN2-FAKE")) {
		t.Error("the backup does not hold the item's previous login")
	}

	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Errorf("watch after SIGTERM: %v", err)
	}
	stopped = true
	argv, _ := os.ReadFile(argvLog)
	for _, secret := range []string{"sk-ant-", "FAKE"} {
		if strings.Contains(string(argv), secret) {
			t.Errorf("a secret was passed in security's argv")
		}
		if strings.Contains(logs.String(), secret) {
			t.Errorf("a secret is in the watcher's log")
		}
	}
	if !strings.Contains(string(argv), "-i") {
		t.Error("write-back did not go through security -i")
	}
}
