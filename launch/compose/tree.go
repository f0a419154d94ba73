package compose

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// node is a YAML value with where it was written: the compose model the
// loader merges, so that every mount keeps its file and line through
// overrides, extends and include.
type node struct {
	kind  kind
	tag   string // a scalar's resolved tag: !!str, !!bool, !!int, ...
	value string // a scalar's text
	pairs []pair // a mapping's entries, in order
	items []*node
	pos   pos
}

type kind uint8

const (
	nullNode kind = iota
	scalarNode
	mapNode
	seqNode
)

type pair struct {
	key string
	pos pos // where the key was written
	val *node
}

type pos struct {
	file string
	line int
}

func (p pos) String() string {
	if p.line == 0 {
		return p.file
	}
	return fmt.Sprintf("%s:%d", p.file, p.line)
}

func (n *node) get(key string) *node {
	if n == nil {
		return nil
	}
	for _, p := range n.pairs {
		if p.key == key {
			return p.val
		}
	}
	return nil
}

func (n *node) has(key string) bool {
	for _, p := range n.pairs {
		if p.key == key {
			return true
		}
	}
	return false
}

// set replaces key's value, or appends it.
func (n *node) set(key string, at pos, val *node) {
	for i, p := range n.pairs {
		if p.key == key {
			n.pairs[i].val = val
			n.pairs[i].pos = at
			return
		}
	}
	n.pairs = append(n.pairs, pair{key, at, val})
}

func (n *node) del(key string) {
	for i, p := range n.pairs {
		if p.key == key {
			n.pairs = append(n.pairs[:i], n.pairs[i+1:]...)
			return
		}
	}
}

// keyPos is where key was written; the mapping's place if nowhere.
func (n *node) keyPos(key string) pos {
	for _, p := range n.pairs {
		if p.key == key {
			return p.pos
		}
	}
	return n.pos
}

func (n *node) str() string {
	if n == nil || n.kind != scalarNode {
		return ""
	}
	return n.value
}

func (n *node) clone() *node {
	if n == nil {
		return nil
	}
	c := *n
	c.pairs = make([]pair, len(n.pairs))
	for i, p := range n.pairs {
		c.pairs[i] = pair{p.key, p.pos, p.val.clone()}
	}
	c.items = make([]*node, len(n.items))
	for i, it := range n.items {
		c.items[i] = it.clone()
	}
	return &c
}

func (n *node) equal(o *node) bool {
	if n.kind != o.kind || n.value != o.value || len(n.pairs) != len(o.pairs) || len(n.items) != len(o.items) {
		return false
	}
	for i, p := range n.pairs {
		if p.key != o.pairs[i].key || !p.val.equal(o.pairs[i].val) {
			return false
		}
	}
	for i, it := range n.items {
		if !it.equal(o.items[i]) {
			return false
		}
	}
	return true
}

func newMapping(at pos) *node { return &node{kind: mapNode, pos: at} }

func scalarAt(s string, at pos) *node {
	return &node{kind: scalarNode, tag: "!!str", value: s, pos: at}
}

// document is one YAML document of a compose file: its model, and the
// paths an override tagged !reset or !override (which drop what earlier
// files set there).
type document struct {
	root   *node
	resets [][]string
}

// maxNodes bounds how far aliases may expand a document, as compose does:
// a few aliases of aliases can otherwise describe billions of nodes.
const maxNodes = 100_000

// parseDocuments reads every YAML document in data.
func parseDocuments(file string, data []byte) ([]document, error) {
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	var docs []document
	for {
		var y yaml.Node
		if err := dec.Decode(&y); errors.Is(err, io.EOF) {
			return docs, nil
		} else if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		c := converter{file: file}
		root, err := c.convert(&y, nil)
		if err != nil {
			return nil, err
		}
		docs = append(docs, document{root: root, resets: c.resets})
	}
}

type converter struct {
	file   string
	resets [][]string
	nodes  int
}

func (c *converter) errorf(y *yaml.Node, format string, args ...any) error {
	return fmt.Errorf("%s: %s", pos{c.file, y.Line}, fmt.Sprintf(format, args...))
}

// convert turns y into a node, following aliases and merge keys (<<).
// A node tagged !reset is dropped; its path, and that of one tagged
// !override, is recorded. A nil node is one that was dropped.
func (c *converter) convert(y *yaml.Node, path []string) (*node, error) {
	if c.nodes++; c.nodes > maxNodes {
		return nil, c.errorf(y, "more than %d values once aliases are expanded", maxNodes)
	}
	switch y.Tag {
	case "!reset":
		c.resets = append(c.resets, append([]string(nil), path...))
		return nil, nil
	case "!override":
		c.resets = append(c.resets, append([]string(nil), path...))
	}
	at := pos{c.file, y.Line}
	switch y.Kind {
	case yaml.DocumentNode:
		if len(y.Content) == 0 {
			return &node{kind: nullNode, pos: at}, nil
		}
		return c.convert(y.Content[0], path)
	case yaml.AliasNode:
		return c.convert(y.Alias, path)
	case yaml.SequenceNode:
		n := &node{kind: seqNode, pos: at}
		for i, item := range y.Content {
			v, err := c.convert(item, append(path, strconv.Itoa(i)))
			if err != nil {
				return nil, err
			}
			if v != nil {
				n.items = append(n.items, v)
			}
		}
		return n, nil
	case yaml.MappingNode:
		return c.mapping(y, path)
	}
	tag := y.Tag
	if tag == "!override" || tag == "" {
		plain := *y
		plain.Tag = ""
		tag = plain.ShortTag()
	} else {
		tag = y.ShortTag()
	}
	if tag == "!!null" {
		return &node{kind: nullNode, pos: at}, nil
	}
	return &node{kind: scalarNode, tag: tag, value: y.Value, pos: at}, nil
}

func (c *converter) mapping(y *yaml.Node, path []string) (*node, error) {
	n := &node{kind: mapNode, pos: pos{c.file, y.Line}}
	seen := map[string]int{}
	var merges []*yaml.Node
	for i := 0; i+1 < len(y.Content); i += 2 {
		k, v := y.Content[i], y.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return nil, c.errorf(k, "a mapping key must be a string")
		}
		if line, dup := seen[k.Value]; dup {
			return nil, c.errorf(k, "%s is already defined at line %d", k.Value, line)
		}
		seen[k.Value] = k.Line
		if k.ShortTag() == "!!merge" {
			merges = append(merges, v)
			continue
		}
		val, err := c.convert(v, append(path, k.Value))
		if err != nil {
			return nil, err
		}
		if val != nil {
			n.pairs = append(n.pairs, pair{k.Value, pos{c.file, k.Line}, val})
		}
	}
	// Merge keys: explicit keys win, then earlier merged mappings.
	for _, m := range merges {
		sources := []*yaml.Node{m}
		if deref(m).Kind == yaml.SequenceNode {
			sources = deref(m).Content
		}
		for _, s := range sources {
			from, err := c.convert(s, path)
			if err != nil {
				return nil, err
			}
			if from == nil {
				continue
			}
			if from.kind != mapNode {
				return nil, c.errorf(s, "<< must merge a mapping")
			}
			for _, p := range from.pairs {
				if !n.has(p.key) {
					n.pairs = append(n.pairs, p)
				}
			}
		}
	}
	return n, nil
}

func deref(y *yaml.Node) *yaml.Node {
	for y.Kind == yaml.AliasNode {
		y = y.Alias
	}
	return y
}

// pathString renders a model path for messages: services.app.volumes[0].
func pathString(path []string) string {
	var b strings.Builder
	for i, p := range path {
		if _, err := strconv.Atoi(p); err == nil && i > 0 {
			b.WriteString("[" + p + "]")
			continue
		}
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(p)
	}
	return b.String()
}

// list is a sequence's items; nothing for anything else (or no node).
func (n *node) list() []*node {
	if n == nil || n.kind != seqNode {
		return nil
	}
	return n.items
}

// entries is a mapping's pairs; nothing for anything else (or no node).
func (n *node) entries() []pair {
	if n == nil || n.kind != mapNode {
		return nil
	}
	return n.pairs
}
