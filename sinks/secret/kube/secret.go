package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
)

// Secret is a Secret as mc-broker reads and writes it. Everything else the
// object holds (annotations, owner references, type, fields of later API
// versions) is kept as it was read and sent back unchanged on Update.
type Secret struct {
	Namespace       string
	Name            string
	ResourceVersion string
	Labels          map[string]string
	Data            map[string][]byte
	// raw is the object as read; nil for a new Secret.
	raw map[string]json.RawMessage
}

func secretPath(namespace, name string) string {
	p := "/api/v1/namespaces/" + url.PathEscape(namespace) + "/secrets"
	if name != "" {
		p += "/" + url.PathEscape(name)
	}
	return p
}

func decodeSecret(body []byte) (*Secret, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, errors.New("the API server sent a Secret that is not a JSON object")
	}
	var view struct {
		Metadata struct {
			Namespace       string            `json:"namespace"`
			Name            string            `json:"name"`
			ResourceVersion string            `json:"resourceVersion"`
			Labels          map[string]string `json:"labels"`
		} `json:"metadata"`
		Data map[string][]byte `json:"data"`
	}
	if err := json.Unmarshal(body, &view); err != nil {
		return nil, errors.New("the API server sent a Secret of the wrong shape")
	}
	return &Secret{
		Namespace:       view.Metadata.Namespace,
		Name:            view.Metadata.Name,
		ResourceVersion: view.Metadata.ResourceVersion,
		Labels:          view.Metadata.Labels,
		Data:            view.Data,
		raw:             raw,
	}, nil
}

// encode renders s for a create or update: the object as read, with
// metadata's name, namespace, resourceVersion and labels and the data set
// from s.
func (s *Secret) encode() ([]byte, error) {
	obj := map[string]json.RawMessage{}
	for k, v := range s.raw {
		obj[k] = v
	}
	meta := map[string]json.RawMessage{}
	if m, ok := obj["metadata"]; ok {
		if err := json.Unmarshal(m, &meta); err != nil {
			return nil, errors.New("the Secret's metadata is not a JSON object")
		}
	}
	set := func(m map[string]json.RawMessage, k string, v any) {
		b, _ := json.Marshal(v)
		m[k] = b
	}
	set(meta, "name", s.Name)
	set(meta, "namespace", s.Namespace)
	if s.ResourceVersion != "" {
		set(meta, "resourceVersion", s.ResourceVersion)
	} else {
		delete(meta, "resourceVersion")
	}
	if len(s.Labels) > 0 {
		set(meta, "labels", s.Labels)
	} else {
		delete(meta, "labels")
	}
	set(obj, "metadata", meta)
	set(obj, "apiVersion", "v1")
	set(obj, "kind", "Secret")
	if _, ok := obj["type"]; !ok {
		set(obj, "type", "Opaque")
	}
	set(obj, "data", s.Data)
	delete(obj, "stringData")
	return json.Marshal(obj)
}

// GetSecret reads a Secret; a missing one is a *StatusError matching
// IsNotFound.
func (c *Client) GetSecret(ctx context.Context, namespace, name string) (*Secret, error) {
	body, err := c.Do(ctx, Request{Method: http.MethodGet, Path: secretPath(namespace, name)})
	if err != nil {
		return nil, err
	}
	return decodeSecret(body)
}

// CreateSecret creates s; one that exists already is a *StatusError
// matching IsAlreadyExists.
func (c *Client) CreateSecret(ctx context.Context, s *Secret) (*Secret, error) {
	body, err := s.encode()
	if err != nil {
		return nil, err
	}
	out, err := c.Do(ctx, Request{Method: http.MethodPost, Path: secretPath(s.Namespace, ""), Body: body})
	if err != nil {
		return nil, err
	}
	return decodeSecret(out)
}

// UpdateSecret replaces s, on the condition that it still has
// s.ResourceVersion: a Secret changed since it was read is a *StatusError
// matching IsConflict, and nothing is written.
func (c *Client) UpdateSecret(ctx context.Context, s *Secret) (*Secret, error) {
	if s.ResourceVersion == "" {
		return nil, errors.New("UpdateSecret needs the resourceVersion the Secret was read at")
	}
	body, err := s.encode()
	if err != nil {
		return nil, err
	}
	out, err := c.Do(ctx, Request{Method: http.MethodPut, Path: secretPath(s.Namespace, s.Name), Body: body})
	if err != nil {
		return nil, err
	}
	return decodeSecret(out)
}

// EventType is a watch event's type.
type EventType string

const (
	Added    EventType = "ADDED"
	Modified EventType = "MODIFIED"
	Deleted  EventType = "DELETED"
	Bookmark EventType = "BOOKMARK"
)

// SecretEvent is one change of a watched Secret. Bookmarks carry only a
// resource version.
type SecretEvent struct {
	Type            EventType
	Secret          *Secret
	ResourceVersion string
}

// WatchSecret watches one Secret through the API (a long-lived request,
// not polling), from resourceVersion on ("" : the current state first, as
// an ADDED event when it exists). It calls fn for each event until ctx ends,
// the server closes the stream (it does after a few minutes: returns nil,
// watch again from the last resource version), or fn returns an error. An
// expired resource version is a *StatusError matching IsGone.
func (c *Client) WatchSecret(ctx context.Context, namespace, name, resourceVersion string, fn func(SecretEvent) error) error {
	q := url.Values{
		"watch":               {"1"},
		"fieldSelector":       {"metadata.name=" + name},
		"allowWatchBookmarks": {"true"},
		// The server ends the watch after this; the caller watches again
		// from the last resource version (an HTTP/1.1 connection has no
		// pings: this bounds how long a dead one can go unnoticed).
		"timeoutSeconds": {strconv.Itoa(300 + rand.IntN(300))},
	}
	if resourceVersion != "" {
		q.Set("resourceVersion", resourceVersion)
	}
	resp, err := c.send(ctx, Request{Method: http.MethodGet, Path: secretPath(namespace, ""), Query: q})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return statusError(resp.StatusCode, body)
	}
	// Each event is bounded as one response is (Do): a server, or
	// anything between, that streams one endless event cannot make the
	// watcher buffer it. (The decoder reads ahead, so the bound is
	// MaxResponse plus its buffer.)
	budget := &eventBudget{r: resp.Body, n: MaxResponse}
	dec := json.NewDecoder(budget)
	for {
		budget.n = MaxResponse
		var ev struct {
			Type   EventType       `json:"type"`
			Object json.RawMessage `json:"object"`
		}
		if err := dec.Decode(&ev); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return nil
			}
			return &UnreachableError{Server: c.cfg.Server, Err: err}
		}
		if ev.Type == "ERROR" {
			var st struct {
				Code int `json:"code"`
			}
			_ = json.Unmarshal(ev.Object, &st)
			return statusError(st.Code, ev.Object)
		}
		s, err := decodeSecret(ev.Object)
		if err != nil {
			return err
		}
		out := SecretEvent{Type: ev.Type, ResourceVersion: s.ResourceVersion}
		if ev.Type != Bookmark {
			out.Secret = s
		}
		if err := fn(out); err != nil {
			return err
		}
	}
}

// eventBudget reads at most n more bytes of a watch stream, then fails.
type eventBudget struct {
	r io.Reader
	n int64
}

func (b *eventBudget) Read(p []byte) (int, error) {
	if b.n <= 0 {
		return 0, fmt.Errorf("a watch event of more than %d bytes", MaxResponse)
	}
	if int64(len(p)) > b.n {
		p = p[:b.n]
	}
	k, err := b.r.Read(p)
	b.n -= int64(k)
	return k, err
}

// CreateNamespace creates a namespace (tests and benchmarks).
func (c *Client) CreateNamespace(ctx context.Context, name string) error {
	body := fmt.Sprintf(`{"apiVersion":"v1","kind":"Namespace","metadata":{"name":%q}}`, name)
	_, err := c.Do(ctx, Request{Method: http.MethodPost, Path: "/api/v1/namespaces", Body: []byte(body)})
	return err
}
