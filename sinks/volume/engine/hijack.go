package engine

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// ErrNoHijack is Hijack on an engine the Docker client hijacks itself.
var ErrNoHijack = errors.New("the engine client takes over connections itself")

// Hijack posts body (JSON) to the API path (e.g. /containers/ID/attach)
// asking to take the connection over, as `docker attach` and `docker
// exec` do, and returns the connection and a reader of what follows the
// answer. Only ssh:// engines need it (ErrNoHijack otherwise): the Docker
// client dials a hijacked connection by its address alone, which for
// ssh:// is a placeholder, so mc-broker dials through ssh itself.
func (e *Engine) Hijack(ctx context.Context, path string, query url.Values, body any) (net.Conn, *bufio.Reader, error) {
	if !strings.HasPrefix(e.Endpoint.Host, "ssh://") {
		return nil, nil, ErrNoHijack
	}
	sp, err := parseSSH(e.Endpoint.Host)
	if err != nil {
		return nil, nil, err
	}
	conn, err := dialSSH(ctx, sp, &e.seen.ssh)
	if err != nil {
		return nil, nil, err
	}
	fail := func(err error) (net.Conn, *bufio.Reader, error) {
		conn.Close()
		return nil, nil, err
	}
	var data []byte
	if body != nil {
		if data, err = json.Marshal(body); err != nil {
			return fail(err)
		}
	}
	u := "http://docker/v" + e.APIVersion + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(data))
	if err != nil {
		return fail(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "tcp")
	req.Header.Set("User-Agent", "mc-broker")
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	if err := req.Write(conn); err != nil {
		return fail(err)
	}
	br := bufio.NewReader(conn)
	res, err := http.ReadResponse(br, req)
	if err != nil {
		return fail(err)
	}
	if res.StatusCode != http.StatusSwitchingProtocols && res.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
		var m struct{ Message string }
		if json.Unmarshal(msg, &m) == nil && m.Message != "" {
			msg = []byte(m.Message)
		}
		return fail(fmt.Errorf("%s: %s", res.Status, strings.TrimSpace(string(msg))))
	}
	_ = conn.SetDeadline(time.Time{})
	return conn, br, nil
}
