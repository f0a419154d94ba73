//go:build linux

package rotation

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeOpenAI plays, for real codex processes, the two services a ChatGPT
// login talks to: auth.openai.com's token endpoint (single-use refresh
// tokens, as OpenAI's are) and the ChatGPT backend, including a minimal
// Responses API so that `codex exec` completes its turns offline.
//
// Each holder gets its own URL prefix, /h/<holder>/, so every request is
// counted against the holder that made it.
//
// What codex 0.171 needs, found by running it against this server:
//   - the token endpoint: POST with a JSON body {client_id, grant_type:
//     "refresh_token", refresh_token, refresh_reason}; it answers 200 with
//     {id_token, access_token, refresh_token}, or 401 with {"error":
//     {"code": "refresh_token_reused"}} (permanent: codex gives up);
//   - POST .../v1/responses: a server-sent event stream with
//     response.created, response.output_item.done (a message or a
//     function_call) and response.completed (with usage);
//   - the backend's other calls (wham/accounts/check, wham/settings/user,
//     v1/models) may answer 404: codex logs it and goes on.
type fakeOpenAI struct {
	url string
	// fresh is how long a new login is fresh: its access token's exp is
	// codexMargin + fresh ahead, so codex wants to refresh it fresh after
	// it was issued.
	fresh time.Duration
	// latency is how long a refresh request takes, drawn uniformly; the
	// refresh token is spent when the request arrives, long before the
	// answer, as with the real server.
	latency [2]time.Duration
	// turn is how long the model takes to answer: it paces each holder.
	turn time.Duration

	mu      sync.Mutex
	seq     int
	head    string               // the one refresh token that works ("" while a refresh is in flight)
	spent   map[string]bool      // refresh tokens already used
	access  map[string]time.Time // access tokens issued, with their exp
	holders map[string]*holderStats
	closing bool // answer every turn with a final message
	trace   []string
}

func (s *fakeOpenAI) tracef(format string, args ...any) {
	s.trace = append(s.trace, time.Now().Format("15:04:05.000000")+" srv "+fmt.Sprintf(format, args...))
}

// codexMargin is how long before its access token's exp codex 0.171
// refreshes a ChatGPT login (measured: a login whose exp is 303 s ahead is
// refreshed 3 s after it was written).
const codexMargin = 300 * time.Second

// account is the ChatGPT account every login belongs to.
const account = "00000000-fake-acct"

// holderStats is what the server saw of one holder.
type holderStats struct {
	Refreshes int // refreshes granted
	Reuses    int // refreshes refused with refresh_token_reused
	Rejected  int // backend requests refused with 401 (an access token dead or unknown)
	Turns     int // model turns answered
}

// login is one issue of tokens.
type login struct {
	IDToken, AccessToken, RefreshToken string
	Exp                                time.Time
}

func newFakeOpenAI(t testing.TB, fresh time.Duration) *fakeOpenAI {
	t.Helper()
	s := &fakeOpenAI{
		fresh:   fresh,
		latency: [2]time.Duration{100 * time.Millisecond, 300 * time.Millisecond},
		turn:    time.Second,
		spent:   map[string]bool{},
		access:  map[string]time.Time{},
		holders: map[string]*holderStats{},
	}
	// 127.0.0.1: containers share the host's network (--network host).
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /h/{holder}/oauth/token", s.token)
	mux.HandleFunc("POST /h/{holder}/v1/responses", s.responses)
	mux.HandleFunc("/h/{holder}/", s.backend)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	s.url = "http://" + ln.Addr().String()
	return s
}

// first issues the login the host starts with.
func (s *fakeOpenAI) first() login {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mint()
}

// mint issues a new login and makes its refresh token the one that works.
// s.mu is held.
func (s *fakeOpenAI) mint() login {
	s.seq++
	now := time.Now()
	exp := now.Add(codexMargin + s.fresh)
	auth := map[string]any{"chatgpt_plan_type": "pro", "chatgpt_account_id": account, "chatgpt_user_id": "user-fake"}
	l := login{
		IDToken:      fakeJWT(map[string]any{"email": "dev@example.com", "exp": now.Add(time.Hour).Unix(), "iat": now.Unix(), "https://api.openai.com/auth": auth}),
		AccessToken:  fakeJWT(map[string]any{"exp": exp.Unix(), "iat": now.Unix(), "jti": fmt.Sprintf("FAKE-ACCESS-%06d", s.seq), "https://api.openai.com/auth": auth}),
		RefreshToken: fmt.Sprintf("rt_FAKE-ROTATION-%06d", s.seq),
		Exp:          exp,
	}
	s.head = l.RefreshToken
	s.access[l.AccessToken] = exp
	return l
}

// fakeJWT is an unsigned JWT with the given claims, as codex reads them
// (it never checks the signature).
func fakeJWT(claims map[string]any) string {
	enc := func(v any) string {
		data, _ := json.Marshal(v)
		return base64.RawURLEncoding.EncodeToString(data)
	}
	return enc(map[string]any{"alg": "RS256", "typ": "JWT"}) + "." + enc(claims) + ".FAKE-SIGNATURE"
}

// authJSON is the auth.json codex keeps for l.
func authJSON(l login) []byte {
	data, _ := json.MarshalIndent(map[string]any{
		"auth_mode":      "chatgpt",
		"OPENAI_API_KEY": nil,
		"tokens": map[string]any{
			"id_token": l.IDToken, "access_token": l.AccessToken, "refresh_token": l.RefreshToken, "account_id": account,
		},
		"last_refresh": time.Now().UTC().Format(time.RFC3339Nano),
	}, "", "  ")
	return data
}

// refreshTokenOf reads the refresh token from an auth.json.
func refreshTokenOf(data []byte) string {
	var f struct {
		Tokens struct {
			RefreshToken string `json:"refresh_token"`
		} `json:"tokens"`
	}
	if json.Unmarshal(data, &f) != nil {
		return ""
	}
	return f.Tokens.RefreshToken
}

func (s *fakeOpenAI) stats(holder string) *holderStats {
	st := s.holders[holder]
	if st == nil {
		st = &holderStats{}
		s.holders[holder] = st
	}
	return st
}

func (s *fakeOpenAI) token(w http.ResponseWriter, r *http.Request) {
	holder := r.PathValue("holder")
	var req struct {
		GrantType    string `json:"grant_type"`
		RefreshToken string `json:"refresh_token"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&req); err != nil || req.GrantType != "refresh_token" {
		http.Error(w, `{"error":{"code":"invalid_request"}}`, http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	ok := req.RefreshToken != "" && req.RefreshToken == s.head
	reused := s.spent[req.RefreshToken]
	if ok {
		s.spent[req.RefreshToken] = true
		s.head = ""
		s.tracef("%s refresh %s start", holder, req.RefreshToken[len(req.RefreshToken)-3:])
	} else if reused {
		s.stats(holder).Reuses++
		s.tracef("%s refresh %s REUSED", holder, req.RefreshToken[len(req.RefreshToken)-3:])
	}
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if !ok {
		code := "refresh_token_invalidated"
		if reused {
			code = "refresh_token_reused"
		}
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprintf(w, `{"error":{"code":%q,"message":"the refresh token cannot be used"}}`, code)
		return
	}
	time.Sleep(s.latency[0] + rand.N(s.latency[1]-s.latency[0]+1))
	s.mu.Lock()
	l := s.mint()
	s.stats(holder).Refreshes++
	s.tracef("%s refresh granted -> %s", holder, l.RefreshToken[len(l.RefreshToken)-3:])
	s.mu.Unlock()
	json.NewEncoder(w).Encode(map[string]string{"id_token": l.IDToken, "access_token": l.AccessToken, "refresh_token": l.RefreshToken})
}

// authorized checks the bearer token as the backend would: one it issued
// that has not expired, for the account the request names.
func (s *fakeOpenAI) authorized(r *http.Request, holder string) bool {
	tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	s.mu.Lock()
	defer s.mu.Unlock()
	exp, ok := s.access[tok]
	if !ok || time.Now().After(exp) || r.Header.Get("Chatgpt-Account-Id") != account {
		s.stats(holder).Rejected++
		return false
	}
	return true
}

func (s *fakeOpenAI) backend(w http.ResponseWriter, r *http.Request) {
	if !s.authorized(r, r.PathValue("holder")) {
		http.Error(w, `{"detail":"unauthorized"}`, http.StatusUnauthorized)
		return
	}
	http.NotFound(w, r)
}

// responses answers a turn. The prompt "turns N" asks for N tool calls
// (get_goal, which touches nothing) before the final message, so that one
// codex process makes N+1 model requests, each preceded by codex's check
// whether its login needs a refresh.
func (s *fakeOpenAI) responses(w http.ResponseWriter, r *http.Request) {
	holder := r.PathValue("holder")
	if !s.authorized(r, holder) {
		http.Error(w, `{"error":{"message":"unauthorized"}}`, http.StatusUnauthorized)
		return
	}
	var req struct {
		Input []struct {
			Type    string `json:"type"`
			Role    string `json:"role"`
			Content []struct {
				Text string `json:"text"`
			} `json:"content"`
		} `json:"input"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 8<<20)).Decode(&req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	want, done := 0, 0
	for _, in := range req.Input {
		switch {
		case in.Type == "function_call_output":
			done++
		case in.Role == "user":
			for _, c := range in.Content {
				fmt.Sscanf(c.Text, "turns %d", &want)
			}
		}
	}
	select {
	case <-time.After(s.turn):
	case <-r.Context().Done():
		return
	}
	s.mu.Lock()
	s.stats(holder).Turns++
	final := done >= want || s.closing
	s.mu.Unlock()

	w.Header().Set("Content-Type", "text/event-stream")
	event := func(typ string, v map[string]any) {
		v["type"] = typ
		data, _ := json.Marshal(v)
		fmt.Fprintf(w, "event: %s\ndata: %s\n\n", typ, data)
	}
	id := fmt.Sprintf("resp_%d", done)
	event("response.created", map[string]any{"response": map[string]any{"id": id}})
	if final {
		event("response.output_item.done", map[string]any{"item": map[string]any{
			"type": "message", "role": "assistant", "id": "msg_" + id,
			"content": []any{map[string]any{"type": "output_text", "text": "done"}},
		}})
	} else {
		event("response.output_item.done", map[string]any{"item": map[string]any{
			"type": "function_call", "id": "fc_" + id, "call_id": "call_" + id, "name": "get_goal", "arguments": "{}",
		}})
	}
	event("response.completed", map[string]any{"response": map[string]any{
		"id": id, "usage": map[string]any{"input_tokens": 1, "output_tokens": 1, "total_tokens": 2},
	}})
}

// close makes every further turn the last one of its codex process.
func (s *fakeOpenAI) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closing = true
}

// live is the refresh token that works now ("" while a refresh is in
// flight).
func (s *fakeOpenAI) live() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.head
}

// stale reports whether a store holding rt is behind: rt was spent and
// the login that replaced it exists (no refresh is in flight), so a codex
// that refreshed from that store now would be refused.
func (s *fakeOpenAI) stale(rt string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.spent[rt] && s.head != ""
}

// isSpent reports whether rt was already used.
func (s *fakeOpenAI) isSpent(rt string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.spent[rt]
}

// snapshot copies the per-holder counts.
func (s *fakeOpenAI) snapshot() map[string]holderStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	stats := map[string]holderStats{}
	for n, st := range s.holders {
		stats[n] = *st
	}
	return stats
}
