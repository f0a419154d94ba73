package wire

import (
	"fmt"
	"path"
	"path/filepath"
	"strings"

	"github.com/mc-broker/mc-broker/broker"
	"github.com/mc-broker/mc-broker/broker/config"
	"github.com/mc-broker/mc-broker/broker/kinds"
	"github.com/mc-broker/mc-broker/sinks/dir"
	"github.com/mc-broker/mc-broker/sinks/volume"
	"github.com/mc-broker/mc-broker/sinks/volume/engine"
)

// CopyAt is the copy of source s at location, as a Sink's Location names
// it (a host path, or "volume NAME:/path/file"): revoke uses it to reach
// copies the memory knows that are not in the config any more (earlier
// --dir layouts). The same rules as Build apply: never a system or home
// directory, a CLI's own config directory, or a source's file.
func CopyAt(c *config.Config, s config.Source, location string, env config.Env, docker *volume.Shared) (broker.Sink, error) {
	kind, ok := kinds.ByName(s.Kind)
	if !ok {
		return nil, fmt.Errorf("unknown kind %q", s.Kind)
	}
	locks := filepath.Join(env.StateDir(), "locks")
	if rest, ok := strings.CutPrefix(location, "volume "); ok {
		name, p, ok := strings.Cut(rest, ":")
		if !ok || !volume.ValidName.MatchString(name) || !path.IsAbs(p) {
			return nil, fmt.Errorf("%q is not a volume copy's location", location)
		}
		if docker == nil {
			docker = volume.NewShared(engine.NewLazy(env.Getenv, env.Home))
		}
		return volume.New(volume.Options{Volume: name, Path: path.Dir(p), FileName: path.Base(p), LockDir: locks, Shared: docker}), nil
	}
	if strings.HasPrefix(location, "secret ") {
		// Its cluster (kubeconfig, context) is only in the config.
		return nil, fmt.Errorf("a Secret copy that is no longer in the config: take the key out with kubectl edit secret")
	}
	if !filepath.IsAbs(location) {
		return nil, fmt.Errorf("%q is not a copy's location", location)
	}
	d := filepath.Dir(location)
	if why := unsafeCopyDir(d, c, env); why != "" {
		return nil, fmt.Errorf("%s: %s", d, why)
	}
	var protect []string
	for _, src := range c.Sources {
		if resolve(src.Path) == resolve(location) {
			return nil, fmt.Errorf("%s is the source %s's own login", location, src.Name)
		}
		protect = append(protect, src.Path)
	}
	protect = append(protect, config.DefaultPath("claude", env.Home, env.Getenv))
	return dir.New(dir.Options{
		Dir:       d,
		FileName:  filepath.Base(location),
		LockFiles: kind.Facts().LockFiles,
		WriteLock: kind.Facts().WriteLock,
		LockDir:   locks,
		Protect:   protect,
	}), nil
}
