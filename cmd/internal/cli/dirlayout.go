package cli

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// dirGitignore is what a --dir layout's root gets: the layout holds live
// logins, and a project's `git add -A` must never stage them.
const dirGitignore = "# Written by mc-broker: everything here is a live login (tokens).\n# Keep it out of git, and out of image build contexts (.dockerignore).\n*\n"

// prepareDirLayout makes the --dir layout's root (0700) and gives it a
// .gitignore when it has none; one the user changed is left alone. When
// the root is inside a git work tree where the logins would not be
// ignored, it says so on w.
func prepareDirLayout(root string, w io.Writer) error {
	if err := os.MkdirAll(root, 0o700); err != nil {
		return fmt.Errorf("cannot create %s: %w", root, err)
	}
	f, err := os.OpenFile(filepath.Join(root, ".gitignore"), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	switch {
	case errors.Is(err, fs.ErrExist):
	case err != nil:
		return fmt.Errorf("cannot write %s: %w", filepath.Join(root, ".gitignore"), err)
	default:
		_, err = f.WriteString(dirGitignore)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	if tracked := gitWouldStage(root); tracked != "" {
		fmt.Fprintf(w, "mc-broker: warning: %s is inside the git work tree %s and not ignored: `git add -A` would stage your logins; restore %s (it holds `*`), or add the directory to the project's .gitignore\n",
			root, tracked, filepath.Join(root, ".gitignore"))
	}
	return nil
}

// gitWouldStage returns the top of the git work tree root is in when a
// login file under root would not be ignored there, else "". Without git,
// or outside a work tree, it returns "".
func gitWouldStage(root string) string {
	git, err := exec.LookPath("git")
	if err != nil {
		return ""
	}
	top, err := gitOutput(git, root, "rev-parse", "--show-toplevel")
	if err != nil || top == "" {
		return ""
	}
	// check-ignore exits 1 when the path is not ignored.
	probe := filepath.Join(root, "claude", ".credentials.json")
	cmd := exec.Command(git, "-C", root, "check-ignore", "-q", "--no-index", probe)
	err = runWithin(cmd, 5*time.Second)
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.ExitCode() == 1 {
		return top
	}
	return ""
}

func gitOutput(git, dir string, args ...string) (string, error) {
	cmd := exec.Command(git, append([]string{"-C", dir}, args...)...)
	out, err := cmd.Output()
	if err != nil {
		return "", err
	}
	return string(trimNL(out)), nil
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

func runWithin(cmd *exec.Cmd, d time.Duration) error {
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		_ = cmd.Process.Kill()
		return <-done
	}
}

// layoutStateDir is where a watcher over the --dir layout at root keeps
// its lock and state: its own, so that it runs beside a background watcher
// of the configured copies.
func layoutStateDir(stateDir, root string) string {
	sum := sha256.Sum256([]byte(filepath.Clean(root)))
	return filepath.Join(stateDir, "layouts", hex.EncodeToString(sum[:])[:16])
}
