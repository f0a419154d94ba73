// Package kinds lists the login formats mc-broker knows, one package per
// CLI (claude, codex, gemini) and the opaque "file" kind.
package kinds

import (
	"path/filepath"

	"github.com/mc-broker/mc-broker/broker/credential"
	"github.com/mc-broker/mc-broker/broker/kinds/claude"
	"github.com/mc-broker/mc-broker/broker/kinds/codex"
	"github.com/mc-broker/mc-broker/broker/kinds/file"
	"github.com/mc-broker/mc-broker/broker/kinds/gemini"
)

// Names lists the config names of all kinds, for error messages.
var Names = []string{"claude", "codex", "gemini", "file"}

// ByName returns the kind with the given config name.
func ByName(name string) (credential.Kind, bool) {
	switch name {
	case "claude":
		return claude.Kind, true
	case "codex":
		return codex.Kind, true
	case "gemini":
		return gemini.Kind, true
	case "file":
		return file.Kind, true
	}
	return nil, false
}

// DefaultPath returns where the CLI of kind keeps its login file on this
// host, honouring the CLI's own environment variables; "" for kinds with no
// default (opaque files).
func DefaultPath(kind, home string, getenv func(string) string) string {
	switch kind {
	case "claude":
		return claude.DefaultPath(home, getenv)
	case "codex":
		return codex.DefaultPath(home, getenv)
	case "gemini":
		return gemini.DefaultPath(home, getenv)
	}
	return ""
}

// ConfigDirValue is the value of kind's ConfigDirVariable under which its
// CLI keeps its login at path: "" when that is where the CLI keeps it with
// the variable unset (the variable is then to be removed), ok false when
// no value can (a login file of another name, a Gemini login outside a
// .gemini directory, an opaque file).
func ConfigDirValue(kind, home, path string) (value string, ok bool) {
	switch kind {
	case "claude":
		return configDir(home, path, ".claude", claude.FileName)
	case "codex":
		return configDir(home, path, ".codex", codex.FileName)
	case "gemini":
		// GEMINI_CLI_HOME names a home that holds .gemini.
		if filepath.Base(path) != gemini.FileName || filepath.Base(filepath.Dir(path)) != ".gemini" {
			return "", false
		}
		h := filepath.Dir(filepath.Dir(path))
		if h == filepath.Clean(home) {
			return "", true
		}
		return h, true
	}
	return "", false
}

func configDir(home, path, defaultDir, file string) (string, bool) {
	if filepath.Base(path) != file {
		return "", false
	}
	dir := filepath.Dir(path)
	if dir == filepath.Join(home, defaultDir) {
		return "", true
	}
	return dir, true
}
