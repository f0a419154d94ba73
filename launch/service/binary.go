package service

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// ResolveBinary picks the path the service should run for the running
// executable exe (os.Executable). When the mc-broker that lookPath finds on
// PATH is the same file, that path is kept as the user wrote it: package
// managers (Homebrew's bin/, a Nix profile) point a stable link at a
// versioned directory that an upgrade removes, and the service must outlive
// upgrades. Otherwise it is exe with symlinks resolved. A binary that
// `go run` built in a temporary directory is refused: it is deleted when
// go run exits.
func ResolveBinary(exe string, lookPath func(string) (string, error)) (string, error) {
	resolved, err := filepath.EvalSymlinks(exe)
	if err != nil {
		return "", fmt.Errorf("cannot find this mc-broker's binary %s: %w", exe, err)
	}
	if resolved, err = filepath.Abs(resolved); err != nil {
		return "", err
	}
	for _, part := range strings.Split(filepath.ToSlash(resolved), "/") {
		if strings.HasPrefix(part, "go-build") {
			return "", &TemporaryBinaryError{Path: resolved}
		}
	}
	if lookPath == nil {
		return resolved, nil
	}
	onPath, err := lookPath("mc-broker")
	if err != nil {
		return resolved, nil
	}
	if onPath, err = filepath.Abs(onPath); err != nil {
		return resolved, nil
	}
	a, errA := os.Stat(onPath)
	b, errB := os.Stat(resolved)
	if errA == nil && errB == nil && os.SameFile(a, b) {
		return onPath, nil
	}
	return resolved, nil
}

// TemporaryBinaryError: the running mc-broker will not exist for long.
type TemporaryBinaryError struct{ Path string }

func (e *TemporaryBinaryError) Error() string {
	return fmt.Sprintf("this mc-broker (%s) is a temporary build by go run, which is deleted when it exits", e.Path)
}

// module is mc-broker's module path, as its go.mod names it.
const module = "github.com/mc-broker/mc-broker"

// TempDirs are the directories whose contents do not last: $TMPDIR (or
// /tmp) and /tmp, with symlinks resolved (macOS: /private/tmp and
// /private/var/folders/...).
func TempDirs() []string {
	var dirs []string
	for _, d := range []string{os.TempDir(), "/tmp"} {
		if r, err := filepath.EvalSymlinks(d); err == nil {
			d = r
		}
		dirs = append(dirs, filepath.Clean(d))
	}
	return dirs
}

// TransientBinary says why the binary at path is a poor one for a service
// to run, as a clause ("which is ..."), or "" when it looks installed: a build inside mc-broker's own
// source tree (./bin/mc-broker from make build, ./mc-broker from go build)
// changes with every rebuild or checkout and goes with make clean; one in a
// temporary directory (tempDirs) goes when that is cleaned. Either way the
// service later runs something else, or fails to start.
func TransientBinary(path string, tempDirs []string) string {
	const install = "install mc-broker where it stays (make install puts it in ~/.local/bin) and run launch install with that binary"
	if tree := sourceTree(filepath.Dir(path)); tree != "" {
		return fmt.Sprintf("which is a build inside the source tree %s: a rebuild, a checkout or make clean changes or removes what the service runs; %s", tree, install)
	}
	for _, d := range tempDirs {
		if d != "" && d != "/" && strings.HasPrefix(path, d+string(filepath.Separator)) {
			return fmt.Sprintf("which is in the temporary directory %s: once that is cleaned the service fails to start; %s", d, install)
		}
	}
	return ""
}

// sourceTree is the nearest directory from dir upwards whose go.mod is
// mc-broker's, or "".
func sourceTree(dir string) string {
	for {
		if isModuleRoot(filepath.Join(dir, "go.mod")) {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

func isModuleRoot(goMod string) bool {
	f, err := os.Open(goMod)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) == 2 && fields[0] == "module" {
			return strings.Trim(fields[1], `"`) == module
		}
	}
	return false
}
