package compose

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// include: and extends: bring services from other files, each read in
// its own directory.

// include loads each included project (in its own directory, with its
// own .env) and adds its services, volumes and secrets to root; where both
// define one, root's definition is merged over the included one.
func (l *loader) include(s scope, root *node, resets [][]string) error {
	includes := root.get("include")
	root.del("include")
	if includes == nil {
		return nil
	}
	for _, inc := range includes.items {
		var files []string
		for _, p := range stringList(inc.get("path")) {
			files = append(files, absIn(s.dir, p))
		}
		if len(files) == 0 {
			return loadErrorf(inc.pos, "include: no path")
		}
		if slices.Contains(s.included, files[0]) {
			return loadErrorf(inc.pos, "include cycle: %s includes %s", strings.Join(l.names(s.included), " includes "), l.name(files[0]))
		}
		dir := filepath.Dir(files[0])
		if pd := inc.get("project_directory").str(); pd != "" {
			dir = absIn(s.dir, pd)
		}
		var envFiles []string
		for _, f := range stringList(inc.get("env_file")) {
			if f == "/dev/null" {
				continue
			}
			f = absIn(s.dir, f)
			if st, err := os.Stat(f); err != nil {
				return loadErrorf(inc.pos, "include env_file: %v", err)
			} else if st.IsDir() {
				return loadErrorf(inc.pos, "include env_file: %s is a directory", f)
			}
			envFiles = append(envFiles, f)
		}
		if inc.get("env_file") == nil {
			if st, err := os.Stat(filepath.Join(dir, ".env")); err == nil && !st.IsDir() {
				envFiles = []string{filepath.Join(dir, ".env")}
			}
		}
		env, err := withEnvFiles(s.env, envFiles)
		if err != nil {
			return loadErrorf(inc.pos, "include: %v", err)
		}
		for _, f := range files {
			if _, err := os.Stat(f); err != nil {
				return loadErrorf(inc.pos, "include: %v", err)
			}
		}
		imported, err := l.loadModel(scope{dir: dir, env: env, included: s.included}, files)
		if err != nil {
			return err
		}
		for _, key := range []string{"services", "volumes", "secrets"} {
			from := imported.get(key)
			if from == nil {
				continue
			}
			to := root.get(key)
			if to == nil {
				to = newMapping(from.pos)
				root.set(key, from.pos, to)
			}
			for _, p := range from.pairs {
				mine := to.get(p.key)
				switch {
				case mine == nil:
					to.set(p.key, p.pos, p.val)
				case !mine.equal(p.val):
					wrapper := newMapping(p.pos)
					wrapper.set(p.key, p.pos, p.val)
					applyResets(wrapper, resetsUnder(resets, key))
					base := wrapper.get(p.key)
					if base == nil {
						continue
					}
					merged, err := mergeValue(base, mine, []string{key, p.key})
					if err != nil {
						return err
					}
					to.set(p.key, to.keyPos(p.key), merged)
				}
			}
		}
	}
	return nil
}

// extendsBase is an extends file's services, paths resolved against its
// directory.
type extendsBase struct {
	services *node
	resets   [][]string
	file     string
}

type serviceRef struct{ file, service string }

// extends merges each service of root that extends another over a copy of
// that one, as compose does before merging the document.
func (l *loader) extends(s scope, root *node, resets [][]string) error {
	services := root.get("services")
	if services == nil {
		return nil
	}
	file := ""
	if len(s.included) > 0 {
		file = s.included[len(s.included)-1]
	}
	for _, p := range services.pairs {
		if _, err := l.extendService(s, p.key, services, file, resets, nil); err != nil {
			return err
		}
	}
	return nil
}

func (l *loader) extendService(s scope, name string, services *node, file string, resets [][]string, chain []serviceRef) (*node, error) {
	svc := services.get(name)
	ext := svc.get("extends")
	if svc == nil || ext == nil {
		return svc, nil
	}
	ref := ext.get("service").str()
	baseServices, baseFile, baseResets := services, file, resets
	if f := ext.get("file"); f != nil {
		b, err := l.extendsBase(s, f.str(), ext.pos)
		if err != nil {
			return nil, err
		}
		if b.services.get(ref) == nil {
			return nil, loadErrorf(ext.pos, "service %s extends %s, which %s does not define", name, ref, l.name(b.file))
		}
		baseServices, baseFile, baseResets = b.services.clone(), b.file, b.resets
	} else if services.get(ref) == nil {
		return nil, loadErrorf(ext.pos, "service %s extends %s, which is not defined in %s", name, ref, l.name(file))
	}
	here := serviceRef{baseFile, name}
	if slices.Contains(chain, here) {
		return nil, loadErrorf(ext.pos, "service %s extends itself through %s", name, ref)
	}
	base, err := l.extendService(s, ref, baseServices, baseFile, baseResets, append(chain, here))
	if err != nil {
		return nil, err
	}
	wrapper := newMapping(base.pos)
	wrapper.set(name, base.pos, base.clone())
	applyResets(wrapper, resetsUnder(resets, "services"))
	merged := wrapper.get(name)
	if merged == nil {
		merged = newMapping(svc.pos)
	}
	svc.del("extends")
	merged, err = mergeValue(merged, svc, []string{"services", name})
	if err != nil {
		return nil, err
	}
	merged.del("extends")
	services.set(name, services.keyPos(name), merged)
	single := newMapping(pos{})
	single.set("services", pos{}, services)
	return merged, unique(single)
}

// extendsBase loads the file an extends: names (relative to the scope's
// directory) once per project.
func (l *loader) extendsBase(s scope, file string, at pos) (*extendsBase, error) {
	abs := absIn(s.dir, file)
	if b, ok := l.bases[abs]; ok {
		return b, nil
	}
	data, err := os.ReadFile(abs)
	if err != nil {
		return nil, loadErrorf(at, "extends: %v", err)
	}
	docs, err := parseDocuments(l.name(abs), data)
	if err != nil {
		return nil, err
	}
	model := newMapping(pos{})
	var resets [][]string
	for _, doc := range docs {
		if doc.root.kind != mapNode {
			return nil, loadErrorf(doc.root.pos, "a compose file must be a mapping")
		}
		if err := l.interpolate(doc.root, s.env, nil); err != nil {
			return nil, err
		}
		if err := mappingOf(doc.root, "services", validateService); err != nil {
			return nil, err
		}
		if err := canonical(doc.root); err != nil {
			return nil, err
		}
		applyResets(model, doc.resets)
		if err := mergeInto(model, doc.root, nil); err != nil {
			return nil, err
		}
		resets = doc.resets
	}
	services := model.get("services")
	if services == nil {
		return nil, loadErrorf(at, "extends: %s has no services", l.name(abs))
	}
	dir := filepath.Dir(abs)
	for _, p := range services.pairs {
		resolvePaths(p.val, dir)
		if f := p.val.get("extends").get("file"); f != nil {
			f.value = absIn(dir, f.value)
		}
	}
	b := &extendsBase{services: services, resets: resets, file: abs}
	l.bases[abs] = b
	return b, nil
}
