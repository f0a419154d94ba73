package service

import (
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
