package compose

import (
	"errors"
	"io"
	"os"
	"path"
	"strings"

	"github.com/compose-spec/compose-go/v2/format"
	interp "github.com/compose-spec/compose-go/v2/interpolation"
	"github.com/compose-spec/compose-go/v2/template"
	"go.yaml.in/yaml/v3"
)

// lineMap remembers where each mount was written. compose-go's merged
// model has no line numbers, so each file is read again as yaml.Nodes and
// mounts are matched by service and target, later files winning as they
// do in compose's merge.
type lineMap struct {
	first    string
	services map[string]pos            // service -> its key
	volumes  map[string]map[string]pos // service -> target -> entry
	secrets  map[string]map[string]pos // service -> secret -> entry
	envs     map[string]map[string]pos // service -> variable -> entry
	top      map[string]pos            // top-level volume -> its key
}

type pos struct {
	file string
	line int
}

func readLines(files []string, env interp.LookupValue, interpolate substitute) (*lineMap, error) {
	m := &lineMap{
		first:    files[0],
		services: map[string]pos{},
		volumes:  map[string]map[string]pos{},
		secrets:  map[string]map[string]pos{},
		envs:     map[string]map[string]pos{},
		top:      map[string]pos{},
	}
	subst := func(s string) string {
		out, err := interpolate(s, template.Mapping(env))
		if err != nil {
			return s
		}
		return out
	}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			return nil, err
		}
		var doc yaml.Node
		if err := yaml.Unmarshal(data, &doc); err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		if len(doc.Content) == 0 {
			continue
		}
		root := doc.Content[0]
		each(get(root, "volumes"), func(k, _ *yaml.Node) {
			m.top[subst(k.Value)] = pos{file, k.Line}
		})
		each(get(root, "services"), func(k, svc *yaml.Node) {
			name := k.Value
			m.services[name] = pos{file, k.Line}
			if m.volumes[name] == nil {
				m.volumes[name] = map[string]pos{}
				m.secrets[name] = map[string]pos{}
				m.envs[name] = map[string]pos{}
			}
			// environment: a mapping, or a list of NAME=value / NAME.
			env := get(svc, "environment")
			each(env, func(k, _ *yaml.Node) { m.envs[name][k.Value] = pos{file, k.Line} })
			for _, e := range seq(env) {
				key, _, _ := strings.Cut(e.Value, "=")
				m.envs[name][strings.TrimSpace(key)] = pos{file, e.Line}
			}
			for _, v := range seq(get(svc, "volumes")) {
				if t := mountTarget(v, subst); t != "" {
					m.volumes[name][t] = pos{file, v.Line}
				}
			}
			for _, s := range seq(get(svc, "secrets")) {
				src := s.Value
				if s.Kind == yaml.MappingNode {
					if n := get(s, "source"); n != nil {
						src = n.Value
					}
				}
				m.secrets[name][subst(src)] = pos{file, s.Line}
			}
		})
	}
	return m, nil
}

// mountTarget is the container path of a volumes: entry, short or long.
func mountTarget(v *yaml.Node, subst func(string) string) string {
	switch v.Kind {
	case yaml.ScalarNode:
		parsed, err := format.ParseVolume(subst(v.Value))
		if err != nil || parsed.Target == "" {
			return ""
		}
		return path.Clean(parsed.Target)
	case yaml.MappingNode:
		if t := get(v, "target"); t != nil && t.Value != "" {
			return path.Clean(subst(t.Value))
		}
	}
	return ""
}

// volume is where a service's mount at target was written; when the merge
// brought it from elsewhere (extends, include), where the service was.
func (m *lineMap) volume(service, target string) (string, int) {
	if p, ok := m.volumes[service][target]; ok {
		return p.file, p.line
	}
	return m.service(service)
}

func (m *lineMap) secret(service, name string) (string, int) {
	if p, ok := m.secrets[service][name]; ok {
		return p.file, p.line
	}
	return m.service(service)
}

func (m *lineMap) env(service, name string) (string, int) {
	if p, ok := m.envs[service][name]; ok {
		return p.file, p.line
	}
	return m.service(service)
}

func (m *lineMap) service(service string) (string, int) {
	if p, ok := m.services[service]; ok {
		return p.file, p.line
	}
	return m.first, 0
}

// topVolume is where a top-level volume was declared; line 0 if nowhere.
func (m *lineMap) topVolume(name string) (string, int) {
	p := m.top[name]
	return p.file, p.line
}

// deref follows a YAML alias (*name) to its anchor.
func deref(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

func get(n *yaml.Node, key string) *yaml.Node {
	n = deref(n)
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if strings.TrimSpace(n.Content[i].Value) == key {
			return deref(n.Content[i+1])
		}
	}
	return nil
}

func each(n *yaml.Node, visit func(k, v *yaml.Node)) {
	n = deref(n)
	if n == nil || n.Kind != yaml.MappingNode {
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		visit(n.Content[i], deref(n.Content[i+1]))
	}
}

func seq(n *yaml.Node) []*yaml.Node {
	n = deref(n)
	if n == nil || n.Kind != yaml.SequenceNode {
		return nil
	}
	out := make([]*yaml.Node, len(n.Content))
	for i, c := range n.Content {
		out[i] = deref(c)
	}
	return out
}
