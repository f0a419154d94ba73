// Package kinds lists the login formats mc-broker knows, one package per
// CLI (claude, codex, gemini) and the opaque "file" kind.
package kinds

import (
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
