package config

import (
	"path/filepath"

	"github.com/mc-broker/mc-broker/broker"
	"github.com/mc-broker/mc-broker/broker/credential"
	"github.com/mc-broker/mc-broker/sinks/dir"
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
		src := file.New(s.Name, kind, s.Path).WithLockFiles(cliLockFiles[kind.Name()])
		if s.NoLockMirror {
			src = src.WithoutLockMirror()
		}
		b.Sources = append(b.Sources, src)
		sourcePaths[resolve(s.Path)] = s.Name
		protect = append(protect, s.Path)
	}
	written := map[string]bool{}
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
		target := filepath.Join(sk.Dir, name)
		if other, ok := sourcePaths[resolve(target)]; ok {
			return nil, &Error{File: c.File, Line: sk.Line, Msg: "a copy of " + sk.Source + " would overwrite the source " + other + " at " + target + ": choose another dir"}
		}
		if written[resolve(target)] {
			return nil, &Error{File: c.File, Line: sk.Line, Msg: "two copies write " + target + ": give each copy its own dir"}
		}
		written[resolve(target)] = true
		var companions map[string][]byte
		if sk.Companions {
			companions = credential.Companions(kind)
		}
		b.Copies = append(b.Copies, broker.Copy{
			Source:     sk.Source,
			Options:    credential.CopyOptions{IncludeMCPOAuth: sk.IncludeMCPOAuth},
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
