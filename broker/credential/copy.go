package credential

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// CopyOptions are the deliberate changes made to a login on its way into a
// container copy. Everything not named here is kept byte for byte.
type CopyOptions struct {
	// IncludeMCPOAuth keeps Claude's mcpOAuth block (tokens for the host's
	// own MCP servers). Off by default: least privilege for containers.
	IncludeMCPOAuth bool
}

// ForCopy returns the bytes a copy of a valid login should hold.
func ForCopy(k Kind, data []byte, o CopyOptions) ([]byte, error) {
	if _, isClaude := k.(claude); !isClaude || o.IncludeMCPOAuth {
		return data, nil
	}
	// JSON allows a key twice; each pass cuts one, until none is left.
	for {
		out, err := removeMember(data, "mcpOAuth")
		if err != nil || len(out) == len(data) {
			return out, err
		}
		data = out
	}
}

// removeMember cuts one top-level member out of a JSON object and leaves all
// other bytes (order, spacing, number formatting) as they were, so that the
// copy differs from the original only where it must.
func removeMember(data []byte, key string) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, fmt.Errorf("not a JSON object")
	}
	type span struct{ start, end int64 }
	var members []span
	cut := -1
	for dec.More() {
		start := dec.InputOffset()
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("not a JSON object")
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return nil, fmt.Errorf("not a JSON object")
		}
		if tok == key {
			cut = len(members)
		}
		members = append(members, span{start, dec.InputOffset()})
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

// ForHost returns what the host's store should hold when it adopts a newer
// login from a copy made with options o: the copy's bytes, with what ForCopy
// left out of copies taken back from the host's current content. Without
// that, adopting a container's refresh would drop the tokens of the host's
// own MCP servers. host may be empty (no current login).
func ForHost(k Kind, host, fromCopy []byte, o CopyOptions) ([]byte, error) {
	if _, isClaude := k.(claude); !isClaude || o.IncludeMCPOAuth {
		return fromCopy, nil
	}
	out, err := ForCopy(k, fromCopy, o)
	if err != nil {
		return nil, err
	}
	var members map[string]json.RawMessage
	if json.Unmarshal(host, &members) != nil || members["mcpOAuth"] == nil {
		return out, nil
	}
	end := bytes.LastIndexByte(out, '}')
	if end < 0 {
		return nil, fmt.Errorf("not a JSON object")
	}
	sep := ","
	if open := bytes.IndexByte(out, '{'); len(bytes.TrimSpace(out[open+1:end])) == 0 {
		sep = ""
	}
	merged := append([]byte{}, out[:end]...)
	merged = append(merged, sep+`"mcpOAuth":`...)
	merged = append(merged, members["mcpOAuth"]...)
	merged = append(merged, out[end:]...)
	if !json.Valid(merged) {
		return nil, fmt.Errorf("adding back mcpOAuth left invalid JSON")
	}
	return merged, nil
}
