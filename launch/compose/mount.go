package compose

import (
	"errors"
	"fmt"
	"path"
	"strings"
	"unicode"
	"unicode/utf8"
)

// mount is one entry of a service's volumes:, in compose's long form.
type mount struct {
	typ            string // bind, volume, tmpfs, ...
	source         string
	target         string
	readOnly       bool
	createHostPath bool // a missing bind source is created (empty, root's)
	pos            pos
}

// parseVolumeSpec reads the short syntax SOURCE:TARGET[:OPTIONS] (or
// TARGET alone, an anonymous volume) as compose-go's format.ParseVolume
// does, Windows drive letters (C:\dir) included.
func parseVolumeSpec(spec string) (mount, error) {
	var m mount
	switch len(spec) {
	case 0:
		return m, errors.New("invalid empty volume spec")
	case 1, 2:
		m.typ, m.target = "volume", spec
		return m, nil
	}
	var buf []rune
	depth := 0 // inside ${...}: a : there does not separate fields
	field := 0
	for i, c := range spec + "\x00" {
		switch {
		case c == '$' && i+1 < len(spec) && spec[i+1] == '{':
			depth++
			buf = append(buf, c)
		case c == '}' && depth > 0:
			depth--
			buf = append(buf, c)
		case c == ':' && len(buf) == 1 && unicode.IsLetter(buf[0]): // a drive letter
			buf = append(buf, c)
		case (c == ':' || c == 0) && depth == 0:
			s := string(buf)
			switch {
			case s == "":
				return m, fmt.Errorf("invalid spec: %s: empty section between colons", spec)
			case field == 0 && c == 0:
				m.target = s
			case field == 0:
				m.source = s
			case field == 1:
				m.target = s
			case c == ':':
				return m, fmt.Errorf("invalid spec: %s: too many colons", spec)
			default:
				for _, opt := range strings.Split(s, ",") {
					switch opt {
					case "ro":
						m.readOnly = true
					case "rw":
						m.readOnly = false
					}
				}
			}
			field++
			buf = nil
		default:
			buf = append(buf, c)
		}
	}
	m.typ = "volume"
	if isFilePath(m.source) {
		// Short-syntax binds create a missing source, as docker-compose 1 did.
		m.typ, m.createHostPath = "bind", true
	}
	if m.target != "" {
		m.target = path.Clean(m.target)
	}
	return m, nil
}

func isFilePath(source string) bool {
	if source == "" {
		return false
	}
	switch source[0] {
	case '.', '/', '~':
		return true
	}
	if strings.HasPrefix(source, `\\`) { // a Windows named pipe
		return true
	}
	first, n := utf8.DecodeRuneInString(source)
	return len(source) > n && source[n] == ':' && unicode.IsLetter(first)
}

// longForm is the short syntax as the long one compose turns it into.
func (m mount) longForm(at pos) *node {
	n := newMapping(at)
	n.set("type", at, scalarAt(m.typ, at))
	if m.source != "" {
		n.set("source", at, scalarAt(m.source, at))
	}
	n.set("target", at, scalarAt(m.target, at))
	if m.readOnly {
		n.set("read_only", at, &node{kind: scalarNode, tag: "!!bool", value: "true", pos: at})
	}
	if m.createHostPath {
		bind := newMapping(at)
		bind.set("create_host_path", at, &node{kind: scalarNode, tag: "!!bool", value: "true", pos: at})
		n.set("bind", at, bind)
	}
	return n
}

// boolValue reads a boolean compose accepts: true/false, or a string such
// as "true", "yes" or "off" (what interpolation leaves).
func boolValue(n *node) (bool, error) {
	if n == nil || n.kind == nullNode {
		return false, nil
	}
	if n.kind != scalarNode {
		return false, errors.New("must be true or false")
	}
	switch strings.ToLower(n.value) {
	case "true", "y", "yes", "on":
		return true, nil
	case "false", "n", "no", "off":
		return false, nil
	}
	return false, fmt.Errorf("%q is not a boolean (true or false)", n.value)
}
