package config

import (
	"fmt"
	"path"
	"path/filepath"

	"github.com/mc-broker/mc-broker/broker"
	"github.com/mc-broker/mc-broker/broker/credential"
	"github.com/mc-broker/mc-broker/sinks/dir"
	"github.com/mc-broker/mc-broker/sinks/secret"
	"github.com/mc-broker/mc-broker/sinks/volume"
	"github.com/mc-broker/mc-broker/sinks/volume/engine"
	"github.com/mc-broker/mc-broker/sources"
	"github.com/mc-broker/mc-broker/sources/file"
	"github.com/mc-broker/mc-broker/sources/keychain"
)

// cliLockFiles are the lock files a CLI flocks around writing its login in
// its config directory; mc-broker takes the same ones before writing a copy
// there (design brief §2: Codex 0.169).
var cliLockFiles = map[string][]string{
	"codex": {"auth.lock", "auth.json.lock"},
}

// Build assembles the broker. It refuses layouts that would lose data: two
// copies writing one file, or a copy writing over a source.
func (c *Config) Build(env Env) (*broker.Broker, error) {
	b := &broker.Broker{}
	sourcePaths := map[string]string{} // resolved path -> source name
	var protect []string
	hostClaude := map[string]bool{} // resolved; never written on macOS
	for _, s := range c.Sources {
		src, err := c.buildSource(s, env)
		if err != nil {
			return nil, err
		}
		b.Sources = append(b.Sources, src)
		// A Keychain source's file path is protected too: the CLI may
		// fall back to it, or the user may switch store later.
		sourcePaths[resolve(s.Path)] = s.Name
		protect = append(protect, s.Path)
		if s.Kind == "claude" && env.goos() == "darwin" {
			hostClaude[resolve(s.Path)] = true
		}
	}
	if env.goos() == "darwin" {
		// The host's own Claude file, whatever the config reads: macOS
		// Claude Code deletes it, or prefers it over the Keychain.
		own := sources.DefaultPath("claude", env.Home, env.Getenv)
		hostClaude[resolve(own)] = true
		protect = append(protect, own)
	}
	written := map[string]bool{}
	docker := env.Docker
	for _, sk := range c.Sinks {
		src, _ := c.Source(sk.Source)
		kind, _ := credential.ByName(src.Kind)
		name := sk.FileName
		if name == "" {
			name = kind.FileName()
		}
		if name == "" {
			name = filepath.Base(src.Path)
		}
		copyOpts := credential.CopyOptions{IncludeMCPOAuth: sk.IncludeMCPOAuth}
		var companions map[string][]byte
		if sk.Companions {
			companions = credential.Companions(kind)
		}
		if sk.SecretName != "" {
			if env.Kube == nil {
				env.Kube = secret.NewClients(env.Getenv, env.Home)
			}
			sink := secret.New(secret.Options{
				Namespace: sk.SecretNamespace, Name: sk.SecretName, Key: sk.Key,
				Kubeconfig: sk.Kubeconfig, Context: sk.Context, Adopt: sk.Adopt,
				Clients: env.Kube,
			})
			target := sink.Location() + "\x00" + sk.Kubeconfig
			if written[target] {
				return nil, &Error{File: c.File, Line: sk.Line, Msg: "two copies write " + sink.Location() + ": give each copy its own key"}
			}
			written[target] = true
			b.Copies = append(b.Copies, broker.Copy{Source: sk.Source, Options: copyOpts, Sink: sink})
			continue
		}
		if sk.Volume != "" {
			target := "volume " + sk.Volume + ":" + path.Join("/", sk.Path, name)
			if written[target] {
				return nil, &Error{File: c.File, Line: sk.Line, Msg: "two copies write " + target + ": give each copy its own volume or path"}
			}
			written[target] = true
			if docker == nil {
				docker = volume.NewShared(engine.NewLazy(env.Getenv, env.Home))
			}
			b.Copies = append(b.Copies, broker.Copy{
				Source:  sk.Source,
				Options: copyOpts,
				Sink: volume.New(volume.Options{
					Volume:     sk.Volume,
					Path:       sk.Path,
					FileName:   name,
					UID:        sk.UID,
					GID:        sk.GID,
					LockDir:    filepath.Join(env.StateDir(), "locks"),
					Shared:     docker,
					Companions: companions,
				}),
			})
			continue
		}
		target := filepath.Join(sk.Dir, name)
		if hostClaude[resolve(target)] {
			return nil, &Error{File: c.File, Line: sk.Line, Msg: "a copy of " + sk.Source + " would write " + target + ", the host's own Claude Code file: on macOS Claude Code deletes that file or prefers it over the Keychain; choose another dir"}
		}
		if other, ok := sourcePaths[resolve(target)]; ok {
			return nil, &Error{File: c.File, Line: sk.Line, Msg: "a copy of " + sk.Source + " would overwrite the source " + other + " at " + target + ": choose another dir"}
		}
		if written[resolve(target)] {
			return nil, &Error{File: c.File, Line: sk.Line, Msg: "two copies write " + target + ": give each copy its own dir"}
		}
		written[resolve(target)] = true
		b.Copies = append(b.Copies, broker.Copy{
			Source:     sk.Source,
			Options:    copyOpts,
			Companions: companions,
			Sink: dir.New(dir.Options{
				Dir:       sk.Dir,
				FileName:  name,
				UID:       sk.UID,
				GID:       sk.GID,
				LockFiles: cliLockFiles[kind.Name()],
				LockDir:   filepath.Join(env.StateDir(), "locks"),
				Protect:   protect,
			}),
		})
	}
	return b, nil
}

// resolve follows the symlinks in path's longest existing prefix, so that a
// symlinked config directory and its target compare equal before either
// file exists. The copy sink checks file identity again before each write.
func resolve(path string) string {
	rest := ""
	for p := filepath.Clean(path); ; p = filepath.Dir(p) {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			return filepath.Join(real, rest)
		}
		if p == filepath.Dir(p) {
			return filepath.Clean(path)
		}
		rest = filepath.Join(filepath.Base(p), rest)
	}
}

// StoreFor says where source s is read on this host: "file" or
// "keychain". store: auto picks the Keychain on macOS where the CLI keeps
// its login there, for a source left at the CLI's default path: Claude
// Code always; Gemini CLI when GEMINI_FORCE_ENCRYPTED_FILE_STORAGE=true;
// Codex when auth.json is absent and config.toml selects keyring or auto.
// store: keychain on Linux works with a security program named by
// MC_BROKER_SECURITY_BIN (tests).
func (s Source) StoreFor(env Env) (string, error) {
	switch s.Store {
	case "file", "keychain":
		return s.Store, nil
	}
	atDefault := s.Path == sources.DefaultPath(s.Kind, env.Home, env.Getenv)
	if env.goos() != "darwin" || !atDefault {
		return "file", nil
	}
	switch s.Kind {
	case "claude":
		return "keychain", nil
	case "gemini":
		if env.Getenv("GEMINI_FORCE_ENCRYPTED_FILE_STORAGE") == "true" {
			return "keychain", nil
		}
	case "codex":
		keyring, err := keychain.CodexUsesKeyring(filepath.Dir(s.Path), env.goos())
		if err != nil {
			return "", fmt.Errorf("cannot read Codex's config.toml to see where it keeps its login: %w", err)
		}
		if keyring {
			return "keychain", nil
		}
	}
	return "file", nil
}

// KeychainItem is the Keychain item a source of kind claude, codex or
// gemini reads with store: keychain, honouring the CLI's variables and the
// config's service and account.
func (s Source) KeychainItem(env Env) keychain.Item {
	var item keychain.Item
	switch s.Kind {
	case "claude":
		// Claude hashes CLAUDE_SECURESTORAGE_CONFIG_DIR instead when set.
		dir := env.Getenv("CLAUDE_SECURESTORAGE_CONFIG_DIR")
		if dir == "" {
			dir = env.Getenv("CLAUDE_CONFIG_DIR")
		}
		// A path other than the default names another config directory:
		// the item Claude run with CLAUDE_CONFIG_DIR set to it keeps (none
		// set for ~/.claude), not the default item of another login.
		if s.Path != sources.DefaultPath(s.Kind, env.Home, env.Getenv) {
			dir = filepath.Dir(s.Path)
			if dir == filepath.Join(env.Home, ".claude") {
				dir = ""
			}
		}
		item = keychain.ClaudeItem(dir, env.User)
	case "gemini":
		item = keychain.GeminiItem()
	case "codex":
		item = keychain.CodexItem(filepath.Dir(s.Path))
	}
	if s.Service != "" {
		item.Service = s.Service
	}
	if s.Account != "" {
		item.Account = s.Account
	}
	return item
}

func (c *Config) buildSource(s Source, env Env) (broker.Source, error) {
	kind, _ := credential.ByName(s.Kind)
	store, err := s.StoreFor(env)
	if err != nil {
		return nil, &Error{File: c.File, Line: s.Line, Msg: fmt.Sprintf("sources.%s: %v", s.Name, err)}
	}
	if store == "file" {
		src := file.New(s.Name, kind, s.Path).WithLockFiles(cliLockFiles[kind.Name()])
		if s.Kind == "claude" {
			src.WithDirLock(keychain.ClaudeWriteLock(filepath.Dir(s.Path)))
		}
		if s.NoLockMirror {
			src = src.WithoutLockMirror()
		}
		return src, nil
	}
	o := keychain.Options{
		Name:     s.Name,
		Kind:     kind,
		Item:     s.KeychainItem(env),
		Security: keychain.Security{Bin: keychain.BinFromEnv(env.Getenv), Timeout: s.Timeout},
	}
	switch s.Kind {
	case "gemini":
		o.Codec = keychain.GeminiCodec{}
	case "claude":
		o.WriteLock = keychain.ClaudeWriteLock(filepath.Dir(s.Path))
		o.ConfigDir, o.NoLockMirror = filepath.Dir(s.Path), s.NoLockMirror
	}
	if env.goos() == "darwin" {
		o.Watch = []string{keychain.LoginKeychain(env.Home)}
	}
	return keychain.New(o), nil
}
