package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mc-broker/mc-broker/launch/compose"
)

func TestComposeFlagsReachOptions(t *testing.T) {
	f, _, _ := testFactory(t, nil)
	var got *ComposeOptions
	cmd := NewCmdCompose(f, func(o *ComposeOptions) error { got = o; return nil })
	cmd.SetArgs([]string{"--service", "a=claude,codex", "--service", "b=gemini", "--home", "/home/node",
		"--volumes", "-o", "out.yaml", "--force", "--config", "c.yaml", "--dir", "d"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if strings.Join(got.Services, " ") != "a=claude,codex b=gemini" || got.Home != "/home/node" || !got.Volumes ||
		got.Dirs || got.Output != "out.yaml" || !got.Force || got.ConfigFile != "c.yaml" || got.Dir != "d" {
		t.Errorf("options %+v", got)
	}
}

func TestComposeUsageErrors(t *testing.T) {
	dir := t.TempDir()
	twoCopies := filepath.Join(dir, "two.yaml")
	writeTestFile(t, twoCopies, "sources:\n  claude: {}\n  notes: {kind: file, path: /etc/hostname}\nsinks:\n  - {source: claude, dir: /a}\n  - {source: claude, dir: /b}\n")
	noCopy := filepath.Join(dir, "none.yaml")
	writeTestFile(t, noCopy, "sources:\n  claude: {}\n")
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"compose"}, "name at least one service"},
		{[]string{"compose", "--service", "app"}, "write NAME=CLI[,CLI]"},
		{[]string{"compose", "--service", "app=aider"}, `unknown CLI "aider"`},
		{[]string{"compose", "--service", "app=claude", "--volumes", "--dirs"}, "exclude each other"},
		{[]string{"compose", "--service", "app=claude", "--service", "app=codex"}, "given twice"},
		{[]string{"compose", "--service", "app=claude,claude"}, "two copies of claude"},
		{[]string{"compose", "--service", "app=claude", "--home", "home"}, "absolute path inside the container"},
		{[]string{"compose", "--service", "app=claude", "--config", noCopy}, "claude has no directory copy in " + noCopy},
		{[]string{"compose", "--service", "app=claude", "--config", twoCopies}, "claude has 2 directory copies"},
		{[]string{"compose", "--service", "app=notes", "--config", twoCopies}, "only claude, codex and gemini logins"},
		{[]string{"compose", "check", filepath.Join(dir, "absent.yaml")}, "cannot load"},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) { checkUsageError(t, tt.args, tt.want) })
	}
}

func TestComposeMountsConfiguredSourcesAndLayouts(t *testing.T) {
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "config.yaml")
	writeTestFile(t, cfgFile, "sources:\n  work: {kind: claude, path: /nonexistent/creds.json}\nsinks:\n  - {source: work, dir: "+dir+"/copies/work}\n")

	f, out, errb := testFactory(t, nil)
	if code := Main([]string{"compose", "--config", cfgFile, "--service", "app=work", "--home", "/home/node"}, f); code != 0 {
		t.Fatalf("exit %d: %s", code, errb)
	}
	if !strings.Contains(out.String(), "source: "+dir+"/copies/work\n        target: /home/node/.claude\n") {
		t.Errorf("configured source's copy not mounted as claude's directory:\n%s", out)
	}
	if !strings.Contains(errb.String(), dir+"/copies/work does not exist yet: run mc-broker sync") {
		t.Errorf("no note about the missing copy: %q", errb)
	}

	f, out, _ = testFactory(t, nil)
	if code := Main([]string{"compose", "--dir", filepath.Join(dir, "hook"), "--service", "app=codex"}, f); code != 0 {
		t.Fatal(code)
	}
	if !strings.Contains(out.String(), "source: "+dir+"/hook/codex\n        target: /root/.codex\n") {
		t.Errorf("--dir layout not mounted:\n%s", out)
	}

	f, out, _ = testFactory(t, nil)
	if code := Main([]string{"compose", "--volumes", "--service", "app=gemini,claude"}, f); code != 0 {
		t.Fatal(code)
	}
	for _, want := range []string{"source: mc-gemini-auth\n        target: /root/.gemini", "source: mc-claude-auth\n", "  mc-claude-auth:\n    external: true"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--volumes output lacks %q:\n%s", want, out)
		}
	}

	// Without a config the default copies are mounted: $XDG_DATA_HOME/mc-broker/<cli>.
	f, out, _ = testFactory(t, nil)
	if code := Main([]string{"compose", "--service", "app=claude"}, f); code != 0 {
		t.Fatal(code)
	}
	env, _ := f.Env()
	if !strings.Contains(out.String(), "source: "+filepath.Join(env.DataDir(), "claude")+"\n") {
		t.Errorf("default copy not mounted:\n%s", out)
	}
}

func TestComposeOutputFile(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "compose.mc-broker.yaml")
	// --dir: the same output whatever the test's home directory.
	args := []string{"compose", "--dir", filepath.Join(dir, "hook"), "--service", "app=claude", "-o", target}

	f, out, errb := testFactory(t, nil)
	if code := Main(args, f); code != 0 {
		t.Fatalf("exit %d: %s", code, errb)
	}
	if !strings.HasPrefix(out.String(), "wrote "+target) {
		t.Errorf("stdout %q", out)
	}
	st, err := os.Stat(target)
	if err != nil || st.Mode().Perm() != 0o644 {
		t.Fatalf("override %v, mode %v; want 0644", err, st.Mode())
	}

	// The same content again: not rewritten (no new inode, no new mtime).
	f, out, _ = testFactory(t, nil)
	if code := Main(args, f); code != 0 || !strings.HasPrefix(out.String(), "unchanged "+target) {
		t.Errorf("second identical write: exit %d, stdout %q", code, out)
	}
	if st2, _ := os.Stat(target); !os.SameFile(st, st2) || !st2.ModTime().Equal(st.ModTime()) {
		t.Error("an unchanged override was rewritten")
	}

	// A file someone else wrote is kept, unless --force.
	writeTestFile(t, target, "services: {}\n")
	f, _, errb = testFactory(t, nil)
	if code := Main(args, f); code != 2 || !strings.Contains(errb.String(), "not written by mc-broker compose") || !strings.Contains(errb.String(), "--force") {
		t.Errorf("exit %d, stderr %q", code, errb)
	}
	if data, _ := os.ReadFile(target); string(data) != "services: {}\n" {
		t.Error("someone else's file was replaced")
	}
	f, _, _ = testFactory(t, nil)
	if code := Main(append(args, "--force"), f); code != 0 {
		t.Fatal(code)
	}
	if data, _ := os.ReadFile(target); !strings.HasPrefix(string(data), compose.Marker) {
		t.Error("--force did not replace the file")
	}
}

func TestComposeCheckExitCodesAndJSON(t *testing.T) {
	bad := filepath.Join("..", "..", "..", "launch", "compose", "testdata", "bad", "compose.yaml")
	good := filepath.Join("..", "..", "..", "launch", "compose", "testdata", "good", "compose.yaml")

	f, out, _ := testFactory(t, nil)
	if code := Main([]string{"compose", "check", good}, f); code != 0 {
		t.Errorf("good file: exit %d: %s", code, out)
	}
	if !strings.Contains(out.String(), "no problems found in "+good) {
		t.Errorf("stdout %q", out)
	}

	f, out, _ = testFactory(t, nil)
	if code := Main([]string{"compose", "check", bad}, f); code != ExitFindings {
		t.Errorf("bad file: exit %d, want %d", code, ExitFindings)
	}
	for _, want := range []string{bad + ":6: service single-file: ", "\n  fix: ", "7 problems in " + bad} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}

	f, out, _ = testFactory(t, nil)
	Main([]string{"compose", "check", "--json", bad}, f)
	var doc struct {
		Findings []compose.Finding `json:"findings"`
		ExitCode int               `json:"exit_code"`
	}
	if err := json.Unmarshal(out.Bytes(), &doc); err != nil || doc.ExitCode != ExitFindings || len(doc.Findings) != 7 ||
		doc.Findings[0].Problem != compose.SingleFile || doc.Findings[0].Line != 6 || doc.Findings[0].Fix == "" {
		t.Errorf("JSON %v: %s", err, out)
	}

	f, out, _ = testFactory(t, nil)
	if code := Main([]string{"compose", "check", "--json", filepath.Join(t.TempDir(), "absent.yaml")}, f); code != 2 ||
		!strings.Contains(out.String(), `"exit_code": 2`) {
		t.Errorf("exit %d, stdout %q", code, out)
	}
}

// compose check never reads a login, but a mounted file holds one: prove
// nothing of it reaches the output.
func TestComposeCheckPrintsNoSecret(t *testing.T) {
	dir := t.TempDir()
	for _, fx := range []struct{ fixture, dest string }{
		{"claude/credentials.valid.json", "claude/.credentials.json"},
		{"codex/auth.chatgpt.json", "codex/auth.json"},
		{"gemini/oauth_creds.json", "gemini/oauth_creds.json"},
	} {
		data, err := os.ReadFile(filepath.Join("..", "..", "..", "testdata", "fixtures", fx.fixture))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(fx.dest)), 0o700); err != nil {
			t.Fatal(err)
		}
		writeTestFile(t, filepath.Join(dir, fx.dest), string(data))
	}
	file := filepath.Join(dir, "compose.yaml")
	writeTestFile(t, file, `services:
  app:
    image: x
    volumes:
      - ./claude/.credentials.json:/root/.claude/.credentials.json:ro
      - ./codex:/root/.codex:ro
      - ./gemini/oauth_creds.json:/root/.gemini/oauth_creds.json
`)
	for _, args := range [][]string{{"compose", "check", file}, {"compose", "check", "--json", file}} {
		f, out, errb := testFactory(t, nil)
		if code := Main(args, f); code != ExitFindings {
			t.Errorf("%v: exit %d", args, code)
		}
		for _, s := range []string{"FAKE", "eyJ", "sk-ant-", "ya29.", "rt_"} {
			if strings.Contains(out.String()+errb.String(), s) {
				t.Errorf("%v prints a secret (contains %q; output not repeated here)", args, s)
			}
		}
	}
}

func writeTestFile(t *testing.T, name, content string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// --volumes mounts the volume copies the config names, as --dirs mounts
// its directory copies: a service must not get a volume sync never fills.
func TestComposeVolumesFollowTheConfig(t *testing.T) {
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "config.yaml")
	writeTestFile(t, cfgFile, "sources:\n  work: {kind: claude, path: /nonexistent/creds.json}\n  codex: {}\n  gemini: {}\n"+
		"sinks:\n  - {source: work, volume: team-claude}\n  - {source: codex, dir: "+dir+"/codex}\n"+
		"  - {source: gemini, volume: shared-auth, path: /home/.gemini}\n")

	f, out, errb := testFactory(t, nil)
	if code := Main([]string{"compose", "--config", cfgFile, "--volumes", "--service", "app=work"}, f); code != 0 {
		t.Fatalf("exit %d: %s", code, errb)
	}
	for _, want := range []string{"source: team-claude\n        target: /root/.claude", "  team-claude:\n    external: true"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the configured volume is not mounted (want %q):\n%s", want, out)
		}
	}
	for _, tt := range []struct{ service, want string }{
		{"app=codex", "codex has no volume copy in " + cfgFile},
		{"app=gemini", "gemini's volume copy is in /home/.gemini inside shared-auth"},
	} {
		f, out, errb := testFactory(t, nil)
		if code := Main([]string{"compose", "--config", cfgFile, "--volumes", "--service", tt.service}, f); code != 2 {
			t.Errorf("%s: exit %d, want 2", tt.service, code)
		}
		if !strings.Contains(errb.String(), tt.want) || out.Len() != 0 {
			t.Errorf("%s: stderr %q lacks %q (stdout %q)", tt.service, errb, tt.want, out)
		}
	}
}

// With no FILE, compose check checks what `docker compose up` would read.
func TestComposeCheckFindsTheFilesComposeWould(t *testing.T) {
	root := t.TempDir()
	sub := filepath.Join(root, "app", "src")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	noEnv := func(string) string { return "" }
	for _, tt := range []struct {
		name   string
		files  []string // created under root/app
		wd     string
		getenv func(string) string
		want   []string
	}{
		{"compose.yaml wins over docker-compose.yml", []string{"docker-compose.yml", "compose.yaml"}, "app", noEnv, []string{"compose.yaml"}},
		{"docker-compose.yml alone", []string{"docker-compose.yml"}, "app", noEnv, []string{"docker-compose.yml"}},
		{"the override beside it", []string{"compose.yml", "compose.override.yaml", "docker-compose.override.yml"}, "app", noEnv, []string{"compose.yml", "compose.override.yaml"}},
		{"found in a parent", []string{"compose.yaml"}, "app/src", noEnv, []string{"../compose.yaml"}},
		{"COMPOSE_FILE first", []string{"compose.yaml"}, "app", func(k string) string {
			return map[string]string{"COMPOSE_FILE": "a.yaml:b.yaml"}[k]
		}, []string{"a.yaml", "b.yaml"}},
		{"COMPOSE_PATH_SEPARATOR", nil, "app", func(k string) string {
			return map[string]string{"COMPOSE_FILE": "a.yaml;b.yaml", "COMPOSE_PATH_SEPARATOR": ";"}[k]
		}, []string{"a.yaml", "b.yaml"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for _, n := range append(composeFileNames, composeOverrideNames...) {
				os.Remove(filepath.Join(root, "app", n))
			}
			for _, n := range tt.files {
				writeTestFile(t, filepath.Join(root, "app", n), "services: {}\n")
			}
			got, err := composeFiles(filepath.Join(root, tt.wd), tt.getenv)
			if err != nil || strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Errorf("files %q, %v; want %q", got, err, tt.want)
			}
		})
	}

	// None here or above: a usage error naming the names it looked for.
	for _, n := range append(composeFileNames, composeOverrideNames...) {
		os.Remove(filepath.Join(root, "app", n))
	}
	if above, _ := composeFiles(filepath.Dir(root), noEnv); above != nil {
		t.Skipf("a parent of the test directory holds %v", above)
	}
	t.Chdir(sub)
	f, out, errb := testFactory(t, nil)
	if code := Main([]string{"compose", "check"}, f); code != 2 {
		t.Errorf("exit %d, want 2", code)
	}
	if want := "mc-broker: error: no compose file in " + sub + " or its parents (looked for compose.yaml, compose.yml, docker-compose.yml, docker-compose.yaml)"; !strings.Contains(errb.String(), want) || out.Len() != 0 {
		t.Errorf("stdout %q, stderr %q; want %q", out, errb, want)
	}
}
