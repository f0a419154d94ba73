package compose

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// The loader reads compose files into the part of the model the check
// needs (services' mounts and secrets, top-level volumes and secrets) the
// way `docker compose` (compose-go) builds its project: interpolation with
// the project's .env, documents and -f files merged in order (mounts by
// target, the last one winning), !reset and !override, extends (in the
// file or from another), include, relative paths against the project
// directory (or the extended or included file's), ~ as the home directory,
// and the project name volumes are named after. It reads no more than
// that: compose-go's full loader validates every attribute against the
// compose-spec JSON schema, and linking it costs every mc-broker command
// ~10 ms of start-up (the schema library's package initialisation), where
// mc-broker runs as a pre-run hook. What the check reads is validated
// here; attributes it does not read are only checked to be known.

// project is what the check sees of a compose project.
type project struct {
	name     string
	services map[string]*service
	volumes  map[string]volumeDef
	secrets  map[string]secretDef
}

type service struct {
	pos      pos
	disabled bool // behind a profile: started only when someone asks
	mounts   []mount
	secrets  []secretRef
	// env are the variables the service sets in environment: (names and
	// where each was written; values are never kept). env_file: is not
	// read.
	env map[string]pos
}

type secretRef struct {
	source string
	pos    pos
}

type volumeDef struct {
	name     string // the engine's name for it
	external bool
	pos      pos
}

type secretDef struct {
	file     string
	external bool
}

// loadError is a problem at a place in a file.
func loadErrorf(at pos, format string, args ...any) error {
	return fmt.Errorf("%s: %s", at, fmt.Sprintf(format, args...))
}

// loader holds what stays the same while one project loads.
type loader struct {
	all     bool // every unset variable becomes unsetMarker+NAME
	display map[string]string
	cwd     string
	bases   map[string]*extendsBase // extends file -> its services
}

// scope is where a set of files is read: the project, or an included one.
type scope struct {
	dir      string // relative paths are resolved against it
	env      map[string]string
	included []string // the include chain, for cycles
}

func (o CheckOptions) loadProject(files []string, all bool) (*project, error) {
	env := o.Env
	if env == nil {
		env = map[string]string{}
		for _, kv := range os.Environ() {
			if k, v, ok := strings.Cut(kv, "="); ok {
				env[k] = v
			}
		}
	}
	dir := o.ProjectDir
	if dir == "" {
		dir = filepath.Dir(files[0])
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if env, err = projectEnv(env, dir); err != nil {
		return nil, err
	}
	cwd, _ := os.Getwd()
	l := &loader{all: all, display: map[string]string{}, cwd: cwd, bases: map[string]*extendsBase{}}
	var abs []string
	for _, f := range files {
		a, err := filepath.Abs(f)
		if err != nil {
			return nil, err
		}
		if _, ok := l.display[a]; !ok {
			l.display[a] = f
		}
		abs = append(abs, a)
	}
	s := scope{dir: dir, env: env}
	model, err := l.loadModel(s, abs)
	if err != nil {
		return nil, err
	}
	if len(model.pairs) == 0 {
		return nil, errors.New("empty compose file")
	}
	return l.project(model, s)
}

// loadModel reads files in order, merged; paths in the result are
// absolute.
func (l *loader) loadModel(s scope, files []string) (*node, error) {
	model := newMapping(pos{})
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			return nil, err
		}
		docs, err := parseDocuments(l.name(file), data)
		if err != nil {
			return nil, err
		}
		fs := s
		fs.included = append(slices.Clip(s.included), file)
		for _, doc := range docs {
			if err := l.merge(fs, model, doc); err != nil {
				return nil, err
			}
		}
	}
	if err := l.finish(model, s.dir); err != nil {
		return nil, err
	}
	return model, nil
}

// merge adds one document to model, as compose applies an override.
func (l *loader) merge(s scope, model *node, doc document) error {
	root := doc.root
	if root.kind != mapNode {
		return loadErrorf(root.pos, "a compose file must be a mapping (services:, volumes:, ...)")
	}
	if err := l.interpolate(root, s.env, nil); err != nil {
		return err
	}
	if err := validate(root); err != nil {
		return err
	}
	if err := canonical(root); err != nil {
		return err
	}
	if err := l.include(s, root, doc.resets); err != nil {
		return err
	}
	applyResets(model, doc.resets)
	if err := l.extends(s, root, doc.resets); err != nil {
		return err
	}
	if err := mergeInto(model, root, nil); err != nil {
		return err
	}
	return unique(model)
}

func (l *loader) substituter(env map[string]string) substituter {
	return substituter{
		lookup: func(k string) (string, bool) { v, ok := env[k]; return v, ok },
		all:    l.all,
	}
}

// interpolate substitutes variables in every string value (not keys), as
// compose does before reading anything; an unset required variable
// becomes unsetMarker+NAME instead of stopping the check.
func (l *loader) interpolate(n *node, env map[string]string, path []string) error {
	switch n.kind {
	case scalarNode:
		if n.tag != "!!str" {
			return nil
		}
		v, err := l.substituter(env).substitute(n.value)
		if err != nil {
			return loadErrorf(n.pos, "%s: %v", pathString(path), err)
		}
		n.value = v
	case mapNode:
		for _, p := range n.pairs {
			if err := l.interpolate(p.val, env, append(path, p.key)); err != nil {
				return err
			}
		}
	case seqNode:
		for i, it := range n.items {
			if err := l.interpolate(it, env, append(path, strconv.Itoa(i))); err != nil {
				return err
			}
		}
	}
	return nil
}

// canonical turns short forms into long ones (mounts, secrets, extends,
// include, external: {name}) and keeps only what the check reads, so that
// merging is compose's merge of those parts.
func canonical(root *node) error {
	keep(root, "name", "services", "volumes", "secrets", "include")
	for _, svc := range root.get("services").entries() {
		s := svc.val
		keep(s, "volumes", "secrets", "extends", "profiles", "environment")
		canonicalEnvironment(s)
		for i, v := range s.get("volumes").list() {
			if v.kind != scalarNode {
				continue
			}
			m, err := parseVolumeSpec(v.value)
			if err != nil {
				return loadErrorf(v.pos, "services.%s.volumes[%d]: %v", svc.key, i, err)
			}
			s.get("volumes").items[i] = m.longForm(v.pos)
		}
		for i, sec := range s.get("secrets").list() {
			if sec.kind == scalarNode {
				long := newMapping(sec.pos)
				long.set("source", sec.pos, sec)
				s.get("secrets").items[i] = long
			}
		}
		if e := s.get("extends"); e != nil && e.kind == scalarNode {
			long := newMapping(e.pos)
			long.set("service", e.pos, e)
			s.set("extends", svc.pos, long)
		}
	}
	for _, v := range root.get("volumes").entries() {
		if err := canonicalExternal(v, "volumes"); err != nil {
			return err
		}
		keep(v.val, "name", "external")
	}
	for _, v := range root.get("secrets").entries() {
		if err := canonicalExternal(v, "secrets"); err != nil {
			return err
		}
		keep(v.val, "name", "external", "file", "environment")
	}
	for i, inc := range root.get("include").list() {
		if inc.kind == scalarNode {
			long := newMapping(inc.pos)
			long.set("path", inc.pos, inc)
			root.get("include").items[i] = long
		}
	}
	return nil
}

// canonicalEnvironment turns a service's environment: list (NAME=value,
// NAME) into the mapping form, which merges by name as compose merges it.
// The values are dropped: the check reads names only.
func canonicalEnvironment(svc *node) {
	env := svc.get("environment")
	if env == nil || env.kind == mapNode {
		if env != nil {
			for i := range env.pairs {
				env.pairs[i].val = &node{kind: nullNode, pos: env.pairs[i].pos}
			}
		}
		return
	}
	m := newMapping(env.pos)
	for _, it := range env.list() {
		if it.kind != scalarNode {
			continue
		}
		name, _, _ := strings.Cut(it.value, "=")
		if name = strings.TrimSpace(name); name != "" {
			m.set(name, it.pos, &node{kind: nullNode, pos: it.pos})
		}
	}
	svc.set("environment", env.pos, m)
}

// canonicalExternal reads the deprecated external: {name: x} as name: x
// with external: true.
func canonicalExternal(def pair, kind string) error {
	ext := def.val.get("external")
	if ext == nil || ext.kind != mapNode {
		return nil
	}
	at := ext.pos
	def.val.set("external", at, &node{kind: scalarNode, tag: "!!bool", value: "true", pos: at})
	if name := ext.get("name"); name != nil {
		if old := def.val.get("name"); old != nil && old.str() != name.str() {
			return loadErrorf(at, "%s.%s: name and external.name conflict; only use name", kind, def.key)
		}
		def.val.set("name", at, name)
	}
	return nil
}

func keep(n *node, keys ...string) {
	if n == nil || n.kind != mapNode {
		return
	}
	n.pairs = slices.DeleteFunc(n.pairs, func(p pair) bool { return !slices.Contains(keys, p.key) })
}

// finish applies compose's defaults and resolves relative paths against
// dir, once a set of files is merged.
func (l *loader) finish(model *node, dir string) error {
	for _, svc := range model.get("services").entries() {
		for _, m := range svc.val.get("volumes").list() {
			if b := m.get("bind"); b != nil && b.kind == mapNode && !b.has("create_host_path") {
				b.set("create_host_path", b.pos, &node{kind: scalarNode, tag: "!!bool", value: "true", pos: b.pos})
			}
			if m.get("type").str() == "bind" && !m.has("source") {
				return loadErrorf(m.pos, "services.%s: a bind mount needs a source", svc.key)
			}
		}
		resolvePaths(svc.val, dir)
	}
	for _, sec := range model.get("secrets").entries() {
		if f := sec.val.get("file"); f != nil && f.value != "" {
			f.value = hostPath(f.value, dir)
		}
	}
	return nil
}

// resolvePaths makes a service's bind sources absolute.
func resolvePaths(svc *node, dir string) {
	for _, m := range svc.get("volumes").list() {
		if m.get("type").str() != "bind" {
			continue
		}
		if src := m.get("source"); src != nil {
			src.value = hostPath(src.value, dir)
		}
	}
}

// hostPath is p with ~ expanded and, if relative, under dir.
func hostPath(p, dir string) string {
	if strings.HasPrefix(p, "~") {
		if home, err := os.UserHomeDir(); err == nil {
			p = filepath.Join(home, p[1:])
		}
	}
	if path.IsAbs(p) || filepath.IsAbs(p) || isWindowsAbs(p) {
		return p
	}
	return filepath.Join(dir, p)
}

func isWindowsAbs(p string) bool {
	return strings.HasPrefix(p, `\\`) || (len(p) > 2 && p[1] == ':' && (p[2] == '\\' || p[2] == '/'))
}

func absIn(dir, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dir, p)
}

func stringList(n *node) []string {
	if n == nil {
		return nil
	}
	if n.kind == scalarNode {
		return []string{n.value}
	}
	var out []string
	for _, it := range n.items {
		out = append(out, it.str())
	}
	return out
}

// name is how a file is shown: as given on the command line, else
// relative to the working directory when below it.
func (l *loader) name(abs string) string {
	if n, ok := l.display[abs]; ok {
		return n
	}
	if rel, err := filepath.Rel(l.cwd, abs); err == nil && l.cwd != "" && !strings.HasPrefix(rel, "..") {
		return rel
	}
	return abs
}

func (l *loader) names(files []string) []string {
	out := make([]string, len(files))
	for i, f := range files {
		out[i] = l.name(f)
	}
	return out
}

// project turns the merged model into what the check reads, naming the
// project and its volumes as compose does, and refuses what compose
// refuses about mounts: undefined volumes and secrets.
func (l *loader) project(model *node, s scope) (*project, error) {
	p := &project{services: map[string]*service{}, volumes: map[string]volumeDef{}, secrets: map[string]secretDef{}}
	if name := s.env["COMPOSE_PROJECT_NAME"]; name != "" {
		if normalizeProjectName(name) != name {
			return nil, fmt.Errorf("COMPOSE_PROJECT_NAME %q: a project name has lowercase letters, digits, - and _ only, and starts with a letter or digit", name)
		}
		p.name = name
	} else if name := normalizeProjectName(model.get("name").str()); name != "" {
		p.name = name
	} else if p.name = normalizeProjectName(filepath.Base(s.dir)); p.name == "" {
		return nil, fmt.Errorf("cannot name the project after its directory %s: give it a name: or set COMPOSE_PROJECT_NAME", s.dir)
	}
	for _, v := range model.get("volumes").entries() {
		def := volumeDef{name: v.val.get("name").str(), pos: v.pos}
		ext, err := boolValue(v.val.get("external"))
		if err != nil {
			return nil, loadErrorf(v.pos, "volumes.%s.external: %v", v.key, err)
		}
		def.external = ext
		if def.name == "" {
			def.name = p.name + "_" + v.key
			if ext {
				def.name = v.key
			}
		}
		p.volumes[v.key] = def
	}
	for _, sec := range model.get("secrets").entries() {
		ext, err := boolValue(sec.val.get("external"))
		if err != nil {
			return nil, loadErrorf(sec.pos, "secrets.%s.external: %v", sec.key, err)
		}
		if !ext && sec.val.get("file").str() == "" && sec.val.get("environment").str() == "" {
			return nil, loadErrorf(sec.pos, "secret %s must declare either file: or environment:", sec.key)
		}
		p.secrets[sec.key] = secretDef{file: sec.val.get("file").str(), external: ext}
	}
	for _, svc := range model.get("services").entries() {
		sv := &service{pos: svc.pos, disabled: len(svc.val.get("profiles").list()) > 0}
		targets := map[string]bool{}
		for i, v := range svc.val.get("volumes").list() {
			m := mount{typ: v.get("type").str(), source: v.get("source").str(), target: path.Clean(v.get("target").str()), pos: v.pos}
			var err error
			if m.readOnly, err = boolValue(v.get("read_only")); err != nil {
				return nil, loadErrorf(v.pos, "services.%s.volumes[%d].read_only: %v", svc.key, i, err)
			}
			if m.createHostPath, err = boolValue(v.get("bind").get("create_host_path")); err != nil {
				return nil, loadErrorf(v.pos, "services.%s.volumes[%d].bind.create_host_path: %v", svc.key, i, err)
			}
			if !sv.disabled {
				if targets[m.target] {
					return nil, loadErrorf(v.pos, "service %s mounts two things at %s", svc.key, m.target)
				}
				targets[m.target] = true
				if _, ok := p.volumes[m.source]; m.typ == "volume" && m.source != "" && !ok {
					return nil, loadErrorf(v.pos, "service %s refers to undefined volume %s: declare it under the top-level volumes:", svc.key, m.source)
				}
			}
			sv.mounts = append(sv.mounts, m)
		}
		for _, e := range svc.val.get("environment").entries() {
			if sv.env == nil {
				sv.env = map[string]pos{}
			}
			sv.env[e.key] = e.pos
		}
		for _, sec := range svc.val.get("secrets").list() {
			ref := secretRef{source: sec.get("source").str(), pos: sec.pos}
			if _, ok := p.secrets[ref.source]; !ok && !sv.disabled {
				return nil, loadErrorf(sec.pos, "service %s refers to undefined secret %s: declare it under the top-level secrets:", svc.key, ref.source)
			}
			sv.secrets = append(sv.secrets, ref)
		}
		p.services[svc.key] = sv
	}
	return p, nil
}

// normalizeProjectName is compose's: lowercase, only a-z 0-9 _ -, not
// starting with _ or -.
func normalizeProjectName(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		if r == '_' || r == '-' || ('a' <= r && r <= 'z') || ('0' <= r && r <= '9') {
			b.WriteRune(r)
		}
	}
	return strings.TrimLeft(b.String(), "_-")
}
