// Package sources finds where each CLI keeps its login on this host. The
// backends that read a store live in sub-packages, one per kind of store
// (sources/file, sources/keychain for the macOS Keychain).
package sources

import "path/filepath"

// DefaultPath returns where the CLI of kind keeps its login file on this
// host, honouring the CLI's own environment variables, as an absolute path
// (a relative CLAUDE_CONFIG_DIR is taken from the working directory, as the
// CLI would). It returns "" for kinds with no default (opaque files).
func DefaultPath(kind, home string, getenv func(string) string) string {
	p := defaultPath(kind, home, getenv)
	if p == "" {
		return ""
	}
	if abs, err := filepath.Abs(p); err == nil {
		return abs
	}
	return p
}

func defaultPath(kind, home string, getenv func(string) string) string {
	switch kind {
	case "claude":
		if d := getenv("CLAUDE_CONFIG_DIR"); d != "" {
			return filepath.Join(d, ".credentials.json")
		}
		return filepath.Join(home, ".claude", ".credentials.json")
	case "codex":
		if d := getenv("CODEX_HOME"); d != "" {
			return filepath.Join(d, "auth.json")
		}
		return filepath.Join(home, ".codex", "auth.json")
	case "gemini":
		if d := getenv("GEMINI_CLI_HOME"); d != "" {
			return filepath.Join(d, ".gemini", "oauth_creds.json")
		}
		return filepath.Join(home, ".gemini", "oauth_creds.json")
	}
	return ""
}
