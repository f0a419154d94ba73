package config

import (
	"path"
	"path/filepath"

	"github.com/mc-broker/mc-broker/broker"
	"github.com/mc-broker/mc-broker/broker/credential"
	"github.com/mc-broker/mc-broker/sinks/dir"
	"github.com/mc-broker/mc-broker/sinks/volume"
	"github.com/mc-broker/mc-broker/sinks/volume/engine"
	"github.com/mc-broker/mc-broker/sources/file"
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
	for _, s := range c.Sources {
		kind, _ := credential.ByName(s.Kind)
		b.Sources = append(b.Sources, file.New(s.Name, kind, s.Path))
		sourcePaths[resolve(s.Path)] = s.Name
		protect = append(protect, s.Path)
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
					Volume:   sk.Volume,
					Path:     sk.Path,
					FileName: name,
					UID:      sk.UID,
					GID:      sk.GID,
					LockDir:  filepath.Join(env.StateDir(), "locks"),
					Shared:   docker,
				}),
			})
			continue
		}
		target := filepath.Join(sk.Dir, name)
		if other, ok := sourcePaths[resolve(target)]; ok {
			return nil, &Error{File: c.File, Line: sk.Line, Msg: "a copy of " + sk.Source + " would overwrite the source " + other + " at " + target + ": choose another dir"}
		}
		if written[resolve(target)] {
			return nil, &Error{File: c.File, Line: sk.Line, Msg: "two copies write " + target + ": give each copy its own dir"}
		}
		written[resolve(target)] = true
		b.Copies = append(b.Copies, broker.Copy{
			Source:  sk.Source,
			Options: copyOpts,
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
