package doctor

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sort"
	"strings"
	"syscall"

	"github.com/mc-broker/mc-broker/broker/kinds/codex"
)

// OverrideSources is where doctor looks for what silently beats a login:
// a variable, a setting or a store choice that makes a CLI use another
// credential, or none, instead of the login mc-broker keeps. Only names
// and places are ever reported, never a value.
type OverrideSources struct {
	Getenv func(string) string
	// Variables maps each variable that beats a CLI's login to the CLI
	// (ANTHROPIC_API_KEY: claude, ...).
	Variables map[string]string
	// ClaudeSettings are the settings files Claude Code reads on this host
	// for the configured accounts (settings.json in each account's
	// directory, the managed settings); CopySettings those in Claude copy
	// directories, which containers write: read bounded, never followed.
	ClaudeSettings, CopySettings []string
	// CodexConfigs are the config.toml files of Codex accounts whose login
	// mc-broker reads from auth.json on this host; CopyCodexConfigs those
	// in Codex copy directories.
	CodexConfigs, CopyCodexConfigs []string
}

// maxSettings caps what is read of a settings file.
const maxSettings = 1 << 20

func checkOverrides(r *Result, o *OverrideSources) {
	found := 0
	add := func(c Check) {
		found++
		r.add(c)
	}
	names := make([]string, 0, len(o.Variables))
	for v := range o.Variables {
		names = append(names, v)
	}
	sort.Strings(names)
	for _, v := range names {
		if o.Getenv != nil && o.Getenv(v) != "" {
			cli := o.Variables[v]
			add(Check{Area: "override", Name: v, Status: Warn,
				Detail: fmt.Sprintf("is set in this environment (value not shown): %s uses it instead of its login, here and in every container that inherits it, without a word", cli),
				Fix:    fmt.Sprintf("unset %s (and remove it from your shell profile), unless that credential is what you want %s to use", v, cli)})
		}
	}
	for _, p := range o.ClaudeSettings {
		for _, c := range claudeSettingsOverrides(p, false, o.Variables) {
			add(c)
		}
	}
	for _, p := range o.CopySettings {
		for _, c := range claudeSettingsOverrides(p, true, o.Variables) {
			add(c)
		}
	}
	for _, p := range o.CodexConfigs {
		if c, ok := codexKeyring(p, false); ok {
			add(c)
		}
	}
	for _, p := range o.CopyCodexConfigs {
		if c, ok := codexKeyring(p, true); ok {
			add(c)
		}
	}
	if found == 0 {
		r.add(Check{Area: "override", Name: "logins", Status: OK, Detail: "no variable, apiKeyHelper or keyring setting overrides the logins"})
	}
}

// claudeSettingsOverrides reports apiKeyHelper, and variables of its env
// block, in a Claude Code settings file.
func claudeSettingsOverrides(path string, inCopy bool, variables map[string]string) []Check {
	data, err := readSmall(path)
	if err != nil {
		return nil // absent, or not a file: nothing set there
	}
	var settings struct {
		APIKeyHelper json.RawMessage            `json:"apiKeyHelper"`
		Env          map[string]json.RawMessage `json:"env"`
	}
	if json.Unmarshal(data, &settings) != nil {
		return nil
	}
	where := "Claude Code on this host"
	if inCopy {
		where = "Claude Code in every container that mounts this copy"
	}
	var out []Check
	if h := strings.TrimSpace(string(settings.APIKeyHelper)); h != "" && h != "null" && h != `""` {
		out = append(out, Check{Area: "override", Name: path, Status: Warn,
			Detail: "sets apiKeyHelper (command not shown): " + where + " runs it for an API key and uses that instead of the login",
			Fix:    "remove apiKeyHelper from " + path + ", unless an API key is what you want Claude Code to use"})
	}
	var envs []string
	for v := range settings.Env {
		if variables[v] == "claude" {
			envs = append(envs, v)
		}
	}
	sort.Strings(envs)
	for _, v := range envs {
		out = append(out, Check{Area: "override", Name: path, Status: Warn,
			Detail: "sets " + v + " in its env block (value not shown): " + where + " uses it instead of the login",
			Fix:    "remove " + v + " from the env block of " + path})
	}
	return out
}

// codexKeyring reports a Codex config that keeps the login in a keyring:
// on this host mc-broker then reads an auth.json Codex no longer writes,
// and in a container Codex looks past the copied auth.json.
func codexKeyring(path string, inCopy bool) (Check, bool) {
	data, err := readSmall(path)
	if err != nil {
		return Check{}, false
	}
	setting := codex.StoreSetting(data)
	if setting != "keyring" && !(inCopy && setting == "auto") {
		return Check{}, false
	}
	c := Check{Area: "override", Name: path, Status: Warn,
		Fix: `set cli_auth_credentials_store = "file" in ` + path}
	if inCopy {
		c.Detail = `sets cli_auth_credentials_store = "` + setting + `": Codex in a container that mounts this copy looks for its login in a keyring, not in the copied auth.json`
	} else {
		c.Detail = `sets cli_auth_credentials_store = "keyring": Codex keeps its login in the OS keyring and no longer updates auth.json, which mc-broker reads on this host and copies: the copies go stale`
		c.Fix += ` and log in again (mc-broker login), so that the login is in auth.json; or, on macOS, give the source store: keychain`
	}
	return c, true
}

// readSmall reads a file that a container may have written: a regular
// file only, never through a symlink, never blocking on a FIFO, at most
// maxSettings bytes.
func readSmall(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	data, err := io.ReadAll(io.LimitReader(f, maxSettings+1))
	if err == nil && len(data) > maxSettings {
		return nil, fs.ErrInvalid
	}
	return data, err
}
