package keychain

import (
	"bufio"
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// CodexStoreSetting returns the value of cli_auth_credentials_store in
// $CODEX_HOME/config.toml ("file", "keyring", "auto"), or "" when the file
// or the key is absent. It reads top-level `key = "value"` lines only,
// before the first [table] header, which is where Codex reads that key; it
// needs no TOML library for that.
func CodexStoreSetting(codexHome string) (string, error) {
	data, err := os.ReadFile(filepath.Join(codexHome, "config.toml"))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "[") {
			break // a table: the key is top-level only
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok || strings.TrimSpace(key) != "cli_auth_credentials_store" {
			continue
		}
		value = strings.TrimSpace(value)
		if i := strings.Index(value, "#"); i >= 0 && !strings.HasPrefix(value, `"`) && !strings.HasPrefix(value, "'") {
			value = strings.TrimSpace(value[:i])
		}
		for _, q := range []string{`"`, "'"} {
			if strings.HasPrefix(value, q) {
				if end := strings.Index(value[1:], q); end >= 0 {
					value = value[1 : 1+end]
				}
			}
		}
		return value, nil
	}
	return "", sc.Err()
}

// CodexUsesKeyring reports whether Codex keeps its login in the keyring
// rather than in $CODEX_HOME/auth.json: auth.json is absent and config.toml
// selects "keyring", or "auto" on macOS (goos "darwin"), where auto finds
// the Keychain.
func CodexUsesKeyring(codexHome, goos string) (bool, error) {
	if _, err := os.Stat(filepath.Join(codexHome, "auth.json")); err == nil {
		return false, nil
	}
	setting, err := CodexStoreSetting(codexHome)
	if err != nil {
		return false, err
	}
	return setting == "keyring" || setting == "auto" && goos == "darwin", nil
}
