package credential

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
)

func decodeSegment(s string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
}

// member is one top-level member's place in the bytes of a JSON object:
// start is where its span begins (at a separating comma for all but the
// first member), end is just after its value.
type member struct {
	key        string
	start, end int64
}

// scanMembers lists the top-level members of a JSON object, in order.
func scanMembers(data []byte) ([]member, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, fmt.Errorf("not a JSON object")
	}
	var members []member
	for dec.More() {
		start := dec.InputOffset()
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("not a JSON object")
		}
		key, ok := tok.(string)
		if !ok {
			return nil, fmt.Errorf("not a JSON object")
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return nil, fmt.Errorf("not a JSON object")
		}
		members = append(members, member{key, start, dec.InputOffset()})
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return nil, fmt.Errorf("not a JSON object")
	}
	return members, nil
}

// RemoveMember cuts every top-level member called key out of a JSON object
// and leaves all other bytes (order, spacing, number formatting) as they
// were, so that the result differs from the original only where it must.
func RemoveMember(data []byte, key string) ([]byte, error) {
	// JSON allows a key twice; each round cuts one, until none is left.
	for {
		out, err := removeOne(data, key)
		if err != nil || len(out) == len(data) {
			return out, err
		}
		data = out
	}
}

func removeOne(data []byte, key string) ([]byte, error) {
	members, err := scanMembers(data)
	if err != nil {
		return nil, err
	}
	cut := -1
	for i, m := range members {
		if m.key == key {
			cut = i
			break
		}
	}
	if cut < 0 {
		return data, nil
	}
	start, end := members[cut].start, members[cut].end
	if cut == 0 && len(members) > 1 {
		// The next member's span starts with its comma: take the comma too.
		next := data[end:members[1].end]
		end += int64(bytes.IndexByte(next, ',')) + 1
	} else if cut == 0 {
		// The only member: keep the whitespace before the closing brace.
		out := append([]byte{}, data[:start]...)
		return append(out, data[end:]...), nil
	}
	out := append([]byte{}, data[:start]...)
	out = append(out, data[end:]...)
	if !json.Valid(out) {
		return nil, fmt.Errorf("removing %s left invalid JSON", key)
	}
	return out, nil
}

// Member is a key and its raw JSON value.
type Member struct {
	Key   string
	Value json.RawMessage
}

// SetMembers returns data with each member's value replaced by the given
// raw JSON (nil Value: the member removed), members that data lacks added
// before the closing brace, and every other byte kept. data must be a JSON
// object.
func SetMembers(data []byte, set []Member) ([]byte, error) {
	out := data
	for _, m := range set {
		var err error
		if m.Value == nil {
			out, err = RemoveMember(out, m.Key)
		} else {
			out, err = setOne(out, m.Key, m.Value)
		}
		if err != nil {
			return nil, err
		}
	}
	if !json.Valid(out) {
		return nil, fmt.Errorf("the result is not valid JSON")
	}
	return out, nil
}

func setOne(data []byte, key string, value json.RawMessage) ([]byte, error) {
	if !json.Valid(value) {
		return nil, fmt.Errorf("the value of %s is not valid JSON", key)
	}
	// A key given twice: keep the last (what JSON parsers read), drop the
	// others.
	members, err := scanMembers(data)
	if err != nil {
		return nil, err
	}
	last := -1
	for i, m := range members {
		if m.key == key {
			last = i
		}
	}
	if last < 0 {
		end := bytes.LastIndexByte(data, '}')
		sep := ","
		if len(members) == 0 {
			sep = ""
		}
		keyJSON, _ := json.Marshal(key)
		out := append([]byte{}, data[:end]...)
		out = append(out, sep...)
		out = append(out, keyJSON...)
		out = append(out, ':')
		out = append(out, value...)
		return append(out, data[end:]...), nil
	}
	// Replace the value: it ends at end and starts after the colon that
	// follows the key.
	m := members[last]
	valStart := m.start + int64(afterKey(data[m.start:m.end]))
	for valStart < m.end && isSpace(data[valStart]) {
		valStart++
	}
	out := append([]byte{}, data[:valStart]...)
	out = append(out, value...)
	out = append(out, data[m.end:]...)
	// Earlier duplicates go.
	for {
		ms, err := scanMembers(out)
		if err != nil {
			return nil, err
		}
		n := 0
		for _, x := range ms {
			if x.key == key {
				n++
			}
		}
		if n <= 1 {
			return out, nil
		}
		if out, err = removeOne(out, key); err != nil {
			return nil, err
		}
	}
}

// afterKey returns the offset just past the colon that follows the first
// JSON string in span (a member's key, which may itself hold a colon).
func afterKey(span []byte) int {
	i := bytes.IndexByte(span, '"') + 1
	for ; i < len(span); i++ {
		if span[i] == '\\' {
			i++
			continue
		}
		if span[i] == '"' {
			break
		}
	}
	return i + bytes.IndexByte(span[i:], ':') + 1
}

func isSpace(b byte) bool { return b == ' ' || b == '\t' || b == '\n' || b == '\r' }
