package service

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestResolveBinary(t *testing.T) {
	root := t.TempDir()
	cellar := filepath.Join(root, "Cellar/mc-broker/1.2.3/bin/mc-broker")
	writeExecutable(t, cellar)
	link := filepath.Join(root, "bin/mc-broker")
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(cellar, link); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(root, "elsewhere/mc-broker")
	writeExecutable(t, other)
	found := func(p string) func(string) (string, error) {
		return func(string) (string, error) { return p, nil }
	}
	notFound := func(string) (string, error) { return "", errors.New("not found") }

	tests := []struct {
		name, exe string
		lookPath  func(string) (string, error)
		want      string
	}{
		// Homebrew: the stable link survives brew upgrade, the Cellar does not.
		{"the link on PATH is this binary", cellar, found(link), link},
		{"started through the link", link, found(link), link},
		{"PATH has another mc-broker", link, found(other), cellar},
		{"not on PATH", link, notFound, cellar},
	}
	for _, tt := range tests {
		got, err := ResolveBinary(tt.exe, tt.lookPath)
		if err != nil || got != tt.want {
			t.Errorf("%s: %s, %v; want %s", tt.name, got, err, tt.want)
		}
	}

	gorun := filepath.Join(root, "go-build123/b001/exe/mc-broker")
	writeExecutable(t, gorun)
	_, err := ResolveBinary(gorun, notFound)
	var tmp *TemporaryBinaryError
	if !errors.As(err, &tmp) {
		t.Errorf("a go run binary: %v, want *TemporaryBinaryError", err)
	}
	if _, err := ResolveBinary(filepath.Join(root, "missing"), notFound); err == nil {
		t.Error("a missing executable was accepted")
	}
}

func TestTransientBinary(t *testing.T) {
	root := t.TempDir()
	// A checkout of mc-broker: make build writes bin/mc-broker.
	checkout := filepath.Join(root, "src", "mc-broker")
	writeFile(t, filepath.Join(checkout, "go.mod"), "// the module\nmodule github.com/mc-broker/mc-broker\n\ngo 1.26.0\n")
	// Another Go project, and a temporary directory.
	other := filepath.Join(root, "src", "other")
	writeFile(t, filepath.Join(other, "go.mod"), "module example.com/other\n")
	tmp := filepath.Join(root, "tmp")

	for _, tt := range []struct {
		path, want string
	}{
		{filepath.Join(checkout, "bin", "mc-broker"), "which is a build inside the source tree " + checkout + ": "},
		{filepath.Join(checkout, "mc-broker"), "which is a build inside the source tree " + checkout + ": "},
		{filepath.Join(tmp, "x", "mc-broker"), "which is in the temporary directory " + tmp + ": "},
		{filepath.Join(other, "bin", "mc-broker"), ""},
		{filepath.Join(root, "home", ".local", "bin", "mc-broker"), ""},
		{filepath.Join(root, "tmpfoo", "mc-broker"), ""}, // only tmp itself and below
	} {
		got := TransientBinary(tt.path, []string{tmp})
		if !strings.HasPrefix(got, tt.want) || (tt.want == "") != (got == "") {
			t.Errorf("%s: %q, want %q...", tt.path, got, tt.want)
		}
		if got != "" && !strings.Contains(got, "make install") {
			t.Errorf("%s: %q does not suggest make install", tt.path, got)
		}
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
