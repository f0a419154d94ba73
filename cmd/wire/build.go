// Package wire assembles a broker from a config: it is the one place that
// knows every backend (sources/file, sources/keychain, sinks/dir,
// sinks/volume), so that the core (broker/...) imports none of them.
package wire

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/mc-broker/mc-broker/broker"
	"github.com/mc-broker/mc-broker/broker/config"
	"github.com/mc-broker/mc-broker/broker/credential"
	"github.com/mc-broker/mc-broker/broker/kinds"
	"github.com/mc-broker/mc-broker/sinks/dir"
	"github.com/mc-broker/mc-broker/sinks/secret"
	"github.com/mc-broker/mc-broker/sinks/volume"
	"github.com/mc-broker/mc-broker/sinks/volume/engine"
	"github.com/mc-broker/mc-broker/sources/file"
	"github.com/mc-broker/mc-broker/sources/keychain"
)

// Build assembles the broker for c. docker is the run's engine handle,
// shared by every volume copy (nil: one is made from env when a volume copy
// needs it). It refuses layouts that would lose data: two copies writing
// one file, or a copy writing over a source.
func Build(c *config.Config, env config.Env, docker *volume.Shared) (*broker.Broker, error) {
	b := &broker.Broker{StateDir: env.StateDir()}
	b.Rules.MaxTakeBacks = c.Trust.TakeBacksPerHour
	sourcePaths := map[string]string{} // resolved path -> source name
	var protect []string
	hostClaude := map[string]bool{} // resolved; never written on macOS
	for _, s := range c.Sources {
		src, err := buildSource(c, s, env)
		if err != nil {
			return nil, err
		}
		b.Sources = append(b.Sources, src)
		// A Keychain source's file path is protected too: the CLI may
		// fall back to it, or the user may switch store later.
		sourcePaths[resolve(s.Path)] = s.Name
		protect = append(protect, s.Path)
		if s.Kind == "claude" && env.OS() == "darwin" {
			hostClaude[resolve(s.Path)] = true
		}
	}
	if env.OS() == "darwin" {
		// The host's own Claude file, whatever the config reads: macOS
		// Claude Code deletes it, or prefers it over the Keychain.
		own := config.DefaultPath("claude", env.Home, env.Getenv)
		hostClaude[resolve(own)] = true
		protect = append(protect, own)
	}
	written := map[string]bool{}
	// The Kubernetes API clients, shared by all Secret copies, made when
	// one needs them.
	var kube *secret.Clients
	for i, sk := range c.Sinks {
		if sk.Engine != "" {
			if err := engine.CheckHost(sk.Engine); err != nil {
				return nil, &config.Error{File: c.File, Line: sk.Line, Msg: fmt.Sprintf("sinks[%d].engine: %v", i, err)}
			}
		}
		src, _ := c.Source(sk.Source)
		kind, _ := kinds.ByName(src.Kind)
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
			companions = kind.Facts().Companions
		}
		if sk.SecretName != "" {
			if kube == nil {
				kube = secret.NewClients(env.Getenv, env.Home)
			}
			sink := secret.New(secret.Options{
				Namespace: sk.SecretNamespace, Name: sk.SecretName, Key: sk.Key,
				Kubeconfig: sk.Kubeconfig, Context: sk.Context, Adopt: sk.Adopt,
				Clients: kube,
			})
			target := sink.Location() + "\x00" + sk.Kubeconfig
			if written[target] {
				return nil, &config.Error{File: c.File, Line: sk.Line, Msg: "two copies write " + sink.Location() + ": give each copy its own key"}
			}
			written[target] = true
			b.Copies = append(b.Copies, broker.Copy{Source: sk.Source, Options: copyOpts, Sink: sink})
			continue
		}
		if sk.Volume != "" {
			if docker == nil {
				docker = volume.NewShared(engine.NewLazy(env.Getenv, env.Home))
			}
			sink := volume.New(volume.Options{
				Volume:     sk.Volume,
				Path:       sk.Path,
				FileName:   name,
				UID:        sk.UID,
				GID:        sk.GID,
				LockDir:    filepath.Join(env.StateDir(), "locks"),
				Shared:     docker,
				Engine:     engine.Selection{Host: sk.Engine, Context: sk.Context},
				Adopt:      sk.Adopt,
				Companions: companions,
				LockFiles:  kind.Facts().LockFiles,
				WriteLock:  kind.Facts().WriteLock,
			})
			// The location names the volume, the file and the engine: the
			// same volume name on two engines is two copies.
			target := sink.Location()
			if written[target] {
				return nil, &config.Error{File: c.File, Line: sk.Line, Msg: "two copies write " + target + ": give each copy its own volume or path"}
			}
			written[target] = true
			// Companions also on the copy, so that the sync reports the
			// ones the volume got (the sink writes them during Update and
			// answers WriteIfAbsent from that).
			b.Copies = append(b.Copies, broker.Copy{Source: sk.Source, Options: copyOpts, Companions: companions, Sink: sink})
			continue
		}
		target := filepath.Join(sk.Dir, name)
		if why := unsafeCopyDir(sk.Dir, c, env); why != "" {
			return nil, &config.Error{File: c.File, Line: sk.Line, Msg: "a copy of " + sk.Source + " in " + sk.Dir + ": " + why}
		}
		if hostClaude[resolve(target)] {
			return nil, &config.Error{File: c.File, Line: sk.Line, Msg: "a copy of " + sk.Source + " would write " + target + ", the host's own Claude Code file: on macOS Claude Code deletes that file or prefers it over the Keychain; choose another dir"}
		}
		if other, ok := sourcePaths[resolve(target)]; ok {
			return nil, &config.Error{File: c.File, Line: sk.Line, Msg: "a copy of " + sk.Source + " would overwrite the source " + other + " at " + target + ": choose another dir"}
		}
		if written[resolve(target)] {
			return nil, &config.Error{File: c.File, Line: sk.Line, Msg: "two copies write " + target + ": give each copy its own dir"}
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
				LockFiles: kind.Facts().LockFiles,
				WriteLock: kind.Facts().WriteLock,
				LockDir:   filepath.Join(env.StateDir(), "locks"),
				Protect:   protect,
			}),
		})
	}
	return b, nil
}

// systemDirs are directories (with everything under them) that never hold
// a copy: a container would get write access to what is there, and a
// wrong file_name would replace a system file.
var systemDirs = []string{"/etc", "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/boot", "/dev", "/proc", "/sys", "/run"}

// unsafeCopyDir says why dir must not be a copy directory, or "": the root
// or a system directory, a home directory itself, or a CLI's own config
// directory on this host (a copy there would replace, or sit beside, the
// host's own login, and a container would write into the CLI's config).
func unsafeCopyDir(dir string, c *config.Config, env config.Env) string {
	d := resolve(dir)
	switch d {
	case "/", "/home", "/Users", "/root", "/var", "/tmp", resolve(env.Home):
		return "a copy directory is mounted into containers read-write; use a directory of its own (e.g. ~/.local/share/mc-broker/<name>)"
	}
	for _, sys := range systemDirs {
		if d == sys || strings.HasPrefix(d, sys+"/") {
			return "a system directory; use a directory of its own (e.g. ~/.local/share/mc-broker/<name>)"
		}
	}
	for _, k := range kinds.Names {
		if p := config.DefaultPath(k, env.Home, env.Getenv); p != "" && resolve(filepath.Dir(p)) == d {
			return k + "'s own config directory on this host, where it keeps its login; choose another dir"
		}
	}
	for _, s := range c.Sources {
		if resolve(filepath.Dir(s.Path)) == d {
			return "the directory of the source " + s.Name + " (" + s.Path + "); choose another dir"
		}
	}
	return ""
}

// ownLock is mc-broker's own lock file for the CLI's write lock at lock:
// in its state directory's locks/, named by a hash of the lock's path.
func ownLock(env config.Env, lock string) string {
	sum := sha256.Sum256([]byte(filepath.Clean(lock)))
	return filepath.Join(env.StateDir(), "locks", hex.EncodeToString(sum[:])[:16]+".writelock")
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
func StoreFor(s config.Source, env config.Env) (string, error) {
	switch s.Store {
	case "file", "keychain":
		return s.Store, nil
	}
	atDefault := s.Path == config.DefaultPath(s.Kind, env.Home, env.Getenv)
	if env.OS() != "darwin" || !atDefault {
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
		keyring, err := keychain.CodexUsesKeyring(filepath.Dir(s.Path), env.OS())
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
func KeychainItem(s config.Source, env config.Env) keychain.Item {
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
		if s.Path != config.DefaultPath(s.Kind, env.Home, env.Getenv) {
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

func buildSource(c *config.Config, s config.Source, env config.Env) (broker.Source, error) {
	kind, _ := kinds.ByName(s.Kind)
	store, err := StoreFor(s, env)
	if err != nil {
		return nil, &config.Error{File: c.File, Line: s.Line, Msg: fmt.Sprintf("sources.%s: %v", s.Name, err)}
	}
	if store == "file" {
		src := file.New(s.Name, kind, s.Path).WithLockFiles(kind.Facts().LockFiles)
		if s.Kind == "claude" {
			lock := keychain.ClaudeWriteLock(filepath.Dir(s.Path))
			src.WithDirLock(lock).WithOwnLock(ownLock(env, lock))
		}
		if s.NoLockMirror {
			src = src.WithoutLockMirror()
		}
		return src, nil
	}
	o := keychain.Options{
		Name:     s.Name,
		Kind:     kind,
		Item:     KeychainItem(s, env),
		Security: keychain.Security{Bin: keychain.BinFromEnv(env.Getenv), Timeout: s.Timeout},
	}
	switch s.Kind {
	case "gemini":
		o.Codec = keychain.GeminiCodec{}
	case "claude":
		o.WriteLock = keychain.ClaudeWriteLock(filepath.Dir(s.Path))
		o.OwnLock = ownLock(env, o.WriteLock)
		o.ConfigDir, o.NoLockMirror = filepath.Dir(s.Path), s.NoLockMirror
	}
	if env.OS() == "darwin" {
		o.Watch = []string{keychain.LoginKeychain(env.Home)}
	}
	return keychain.New(o), nil
}
