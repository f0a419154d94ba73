package keychain

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/mc-broker/mc-broker/broker/kinds/codex"
)

// CodexStoreSetting returns the value of cli_auth_credentials_store in
// $CODEX_HOME/config.toml ("file", "keyring", "auto"), or "" when the file
// or the key is absent (codex.StoreSetting reads it).
func CodexStoreSetting(codexHome string) (string, error) {
	data, err := os.ReadFile(filepath.Join(codexHome, "config.toml"))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return codex.StoreSetting(data), nil
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
