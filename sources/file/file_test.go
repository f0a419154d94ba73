package file

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/mc-broker/mc-broker/broker/kinds/claude"
	"github.com/mc-broker/mc-broker/broker/kinds/codex"

	"github.com/mc-broker/mc-broker/broker/credential"
)

func TestRead(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "auth.json")
	s := New("codex", codex.Kind, path)

	if _, err := s.Read(context.Background()); !errors.Is(err, credential.ErrNotLoggedIn) {
		t.Errorf("missing file: %v, want not logged in", err)
	}

	os.WriteFile(path, []byte(`{"OPENAI_API_KEY":"sk-FAKE"}`), 0o600)
	link := filepath.Join(dir, "link.json")
	os.Symlink(path, link)
	// Sources follow symlinks: dotfile managers link the CLIs' directories.
	if data, err := New("codex", codex.Kind, link).Read(context.Background()); err != nil || len(data) == 0 {
		t.Errorf("through a symlink: %q, %v", data, err)
	}

	big := make([]byte, credential.MaxSize+100)
	os.WriteFile(path, big, 0o600)
	data, err := s.Read(context.Background())
	if err != nil || len(data) != credential.MaxSize+1 {
		t.Errorf("oversized file: read %d bytes, %v; want MaxSize+1 so it is judged broken", len(data), err)
	}

	os.Remove(path)
	os.Mkdir(path, 0o700)
	_, err = s.Read(context.Background())
	var notFile *NotAFileError
	if !errors.As(err, &notFile) || err.Error() != "auth.json is a directory, not a file" {
		t.Errorf("a directory where the file belongs: %v, want auth.json is a directory, not a file", err)
	} else if !strings.Contains(notFile.Hint(), "rmdir "+path) {
		t.Errorf("hint %q does not say to remove the directory", notFile.Hint())
	}
}

func TestReadRefusesAFIFOWithoutHanging(t *testing.T) {
	path := filepath.Join(t.TempDir(), ".credentials.json")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Skip("mkfifo:", err)
	}
	_, err := New("claude", claude.Kind, path).Read(context.Background())
	if err == nil || err.Error() != ".credentials.json is a named pipe (FIFO), not a file" {
		t.Errorf("FIFO: %v, want .credentials.json is a named pipe (FIFO), not a file", err)
	}
}

func TestClaudeFileOnMacOSIsNeverWrittenBack(t *testing.T) {
	s := New("claude", claude.Kind, "/Users/dev/.claude/.credentials.json")
	if err := s.CheckWriteBack("darwin"); !errors.As(err, new(*HostFileError)) {
		t.Errorf("claude on macOS: %v, want *HostFileError", err)
	}
	if err := s.CheckWriteBack("linux"); err != nil {
		t.Errorf("claude on Linux: %v", err)
	}
	if err := New("codex", codex.Kind, "/Users/dev/.codex/auth.json").CheckWriteBack("darwin"); err != nil {
		t.Errorf("codex on macOS: %v", err)
	}
}

func TestMissingClaudeFileOnMacOSPointsAtTheKeychain(t *testing.T) {
	if got := missingReason(claude.Kind, "darwin"); !strings.Contains(got, "Keychain") || !strings.Contains(got, "store: auto") {
		t.Errorf("macOS: %q does not point at the Keychain", got)
	}
	if got := missingReason(claude.Kind, "linux"); got != "no file here" {
		t.Errorf("linux: %q", got)
	}
	if got := missingReason(codex.Kind, "darwin"); got != "no file here" {
		t.Errorf("codex on macOS: %q", got)
	}
}
