package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRunDirIsOneStore is the Quick start's main line: `mc-broker run
// --dir .auth -- CMD` in a project. While CMD runs, a refresh on the host
// reaches .auth and a refresh a container writes into .auth reaches the
// host. The layout gets a .gitignore, so `git add -A` in the project stages
// no login.
func TestRunDirIsOneStore(t *testing.T) {
	git, err := exec.LookPath("git")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("git is not installed")
		}
		t.Skip("git is not installed")
	}
	w := newWorld(t, "claude", 0)
	project := filepath.Join(w.root, "project")
	writeFile(t, filepath.Join(project, "main.go"), []byte("package main\n"))
	gitIn := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(git, append([]string{"-C", project}, args...)...)
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	gitIn("init", "-q")

	auth := filepath.Join(project, ".auth")
	copyFile := filepath.Join(auth, "claude", ".credentials.json")
	done := filepath.Join(w.root, "done")
	p := w.start("run", "--dir", auth, "--", "sh", "-c", "while [ ! -f "+done+" ]; do sleep 0.05; done")
	waitFor(t, 10*time.Second, "run to write the layout", func() (bool, string) {
		return bytes.Equal(read(copyFile), w.forCopy(w.login(1))), "no copy yet"
	})
	// The watcher starts after the first sync: a change may come before
	// its watches are in place, so wait until it runs.
	waitFor(t, 10*time.Second, "the watcher of the layout to run", func() (bool, string) {
		m, _ := filepath.Glob(filepath.Join(w.state, "layouts", "*", "watch.json"))
		return len(m) == 1, "no state file"
	})

	// A refresh on the host reaches .auth.
	w.replace(w.source, w.login(2))
	waitFor(t, 5*time.Second, "the host's refresh to reach .auth", func() (bool, string) {
		return bytes.Equal(read(copyFile), w.forCopy(w.login(2))), "not yet"
	})
	// A container's refresh in .auth reaches the host.
	w.replace(copyFile, w.forCopy(w.login(3)))
	waitFor(t, 5*time.Second, "the container's refresh to reach the host", func() (bool, string) {
		return bytes.Equal(w.forCopy(read(w.source)), w.forCopy(w.login(3))), "not yet"
	})
	writeFile(t, done, nil)
	if code := p.wait(10 * time.Second); code != 0 {
		t.Fatalf("run exited %d:\n%s", code, p.log.String())
	}

	// No login can be staged.
	if got := string(read(filepath.Join(auth, ".gitignore"))); !strings.Contains(got, "\n*\n") {
		t.Errorf(".auth/.gitignore: %q, want it to ignore everything", got)
	}
	gitIn("add", "-A")
	staged := gitIn("diff", "--cached", "--name-only")
	if strings.Contains(staged, ".auth") || !strings.Contains(staged, "main.go") {
		t.Errorf("git add -A staged:\n%s", staged)
	}

	// A .gitignore the user changed is left alone, and a layout whose
	// logins git would stage is called out.
	writeFile(t, filepath.Join(auth, ".gitignore"), []byte("# mine\n"))
	_, errOut, code := w.run("sync", "--dir", auth)
	if code != 0 || !strings.Contains(errOut, "git add -A` would stage your logins") {
		t.Errorf("sync --dir in a work tree that would stage the logins: exit %d, stderr:\n%s", code, errOut)
	}
	if got := string(read(filepath.Join(auth, ".gitignore"))); got != "# mine\n" {
		t.Errorf("the user's .gitignore was replaced: %q", got)
	}
}
