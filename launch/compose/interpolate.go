package compose

import (
	"fmt"
	"strings"
)

// Interpolation as compose does it (compose-go's template package):
// $$ is a literal $; $VAR and ${VAR} are the variable (empty when unset);
// ${VAR:-x} and ${VAR-x} default when unset or empty / unset; ${VAR:+x}
// and ${VAR+x} substitute x when set and non-empty / set; ${VAR:?msg} and
// ${VAR?msg} fail when unset or empty / unset. Defaults nest. A $ not
// followed by a name, { or $ stays as it is; ${ followed by anything else
// is an error. Written out rather than with compose-go's regular
// expression, which costs every mc-broker start its compile time.

// lookupFunc finds a variable; ok is false when it is unset.
type lookupFunc func(name string) (value string, ok bool)

// unsetMarker stands in for an unset variable that compose would stop on:
// a required one (${VAR:?message}), and on the second try any. It is an
// absolute path so that a short-syntax mount stays a bind mount, and the
// missing-source check skips paths that hold it.
const unsetMarker = "/mc-broker-unset-variable-"

// substituter interpolates with lookup. Strict, it fails like compose on
// an unset required variable; otherwise that variable becomes
// unsetMarker+NAME, and with all so does every unset one (compose makes
// those empty).
type substituter struct {
	lookup lookupFunc
	strict bool
	all    bool
}

// templateError is a ${ compose cannot read.
type templateError struct{ template string }

func (e *templateError) Error() string {
	return fmt.Sprintf("invalid interpolation in %q: write a literal $ as $$", e.template)
}

// requiredError is a ${VAR:?message} with VAR unset.
type requiredError struct{ name, reason string }

func (e *requiredError) Error() string {
	if e.reason != "" {
		return fmt.Sprintf("required variable %s is missing a value: %s", e.name, e.reason)
	}
	return fmt.Sprintf("required variable %s is missing a value", e.name)
}

func (s substituter) substitute(t string) (string, error) {
	if !strings.Contains(t, "$") {
		return t, nil
	}
	var b strings.Builder
	for i := 0; i < len(t); {
		if t[i] != '$' || i+1 == len(t) {
			b.WriteByte(t[i])
			i++
			continue
		}
		switch next := t[i+1]; {
		case next == '$':
			b.WriteByte('$')
			i += 2
		case isNameStart(next):
			end := nameEnd(t, i+1)
			b.WriteString(s.plain(t[i+1 : end]))
			i = end
		case next == '{':
			v, end, err := s.braced(t, i)
			if err != nil {
				return "", err
			}
			b.WriteString(v)
			i = end
		default:
			b.WriteByte('$')
			i++
		}
	}
	return b.String(), nil
}

// plain is $NAME or ${NAME}.
func (s substituter) plain(name string) string {
	v, ok := s.lookup(name)
	if !ok && s.all {
		return unsetMarker + name
	}
	return v
}

// braced reads the ${...} starting at t[i] and returns its value and the
// index after it.
func (s substituter) braced(t string, i int) (string, int, error) {
	invalid := &templateError{t}
	start := i + 2
	if start == len(t) || !isNameStart(t[start]) {
		return "", 0, invalid
	}
	end := nameEnd(t, start)
	name := t[start:end]
	if end < len(t) && t[end] == '}' {
		return s.plain(name), end + 1, nil
	}
	op, arg := "", end
	switch {
	case end+1 < len(t) && t[end] == ':' && strings.IndexByte("-+?", t[end+1]) >= 0:
		op, arg = t[end:end+2], end+2
	case end < len(t) && strings.IndexByte("-+?", t[end]) >= 0:
		op, arg = t[end:end+1], end+1
	default:
		return "", 0, invalid
	}
	// The argument runs to the brace that closes ${ (braces nest); without
	// one, to the last } on the line, as compose's pattern matches.
	line := len(t)
	if nl := strings.IndexByte(t[arg:], '\n'); nl >= 0 {
		line = arg + nl
	}
	last := strings.LastIndexByte(t[arg:line], '}')
	if last < 0 {
		return "", 0, invalid
	}
	closing := closingBrace(t[i:arg+last+1], i)
	value, set := s.lookup(name)
	text := t[arg:closing]
	sub := func() (string, error) { return s.substitute(text) }
	switch op {
	case ":-", "-":
		if !set || (op == ":-" && value == "") {
			value, err := sub()
			return value, closing + 1, err
		}
	case ":+", "+":
		if set && (op == "+" || value != "") {
			value, err := sub()
			return value, closing + 1, err
		}
	case ":?", "?":
		if !set || (op == ":?" && value == "") {
			if !s.strict {
				return unsetMarker + name, closing + 1, nil
			}
			reason, err := sub()
			if err != nil {
				return "", 0, err
			}
			return "", 0, &requiredError{name, reason}
		}
	}
	return value, closing + 1, nil
}

// closingBrace is the index (offset by base) of the } closing the ${ that
// starts s, counting nested braces as compose does; the last byte of s
// when they do not balance.
func closingBrace(s string, base int) int {
	open := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '}':
			if open--; open == 0 {
				return base + i
			}
		case '{':
			open++
			i++ // compose skips the byte after a {
		}
	}
	return base + len(s) - 1
}

func isNameStart(c byte) bool {
	return c == '_' || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z')
}

func nameEnd(t string, i int) int {
	for i < len(t) && (isNameStart(t[i]) || ('0' <= t[i] && t[i] <= '9')) {
		i++
	}
	return i
}
