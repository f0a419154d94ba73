package agent_test

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mc-broker/mc-broker/broker/kinds/claude"
	"github.com/mc-broker/mc-broker/broker/kinds/codex"

	"github.com/mc-broker/mc-broker/launch/pod/agent"
)

// claudeLogin is a Claude login expiring at expiresAt (epoch ms) with
// tokens named by tag.
func claudeLogin(expiresAt int64, tag string) []byte {
	return fmt.Appendf(nil, `{"claudeAiOauth":{"accessToken":"sk-ant-oat01-FAKE-%s","refreshToken":"sk-ant-ort01-FAKE-%s","expiresAt":%d,"scopes":["user:inference"],"subscriptionType":"max"}}`, tag, tag, expiresAt)
}

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile("../../../testdata/fixtures/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestDecideNewestWinsAndNothingBrokenMoves(t *testing.T) {
	older, newer := claudeLogin(1_000_000, "old"), claudeLogin(2_000_000, "new")
	sameAge := claudeLogin(1_000_000, "other")
	blanked := fixture(t, "claude/credentials.blanked.json")
	truncated := fixture(t, "claude/credentials.truncated.json")
	has := func(b []byte) agent.Side { return agent.Side{Data: b, Exists: true} }
	none := agent.Side{}
	for _, tc := range []struct {
		name        string
		secret, dir agent.Side
		want        agent.Action
	}{
		{"fresh pod: the Secret's login goes in", has(older), none, agent.ToDirectory},
		{"the pod refreshed: back into the Secret", has(older), has(newer), agent.ToSecret},
		{"the host or another pod refreshed: into the pod", has(newer), has(older), agent.ToDirectory},
		{"in step", has(newer), has(newer), agent.Nothing},
		{"same age, other bytes: the Secret wins, as a source does", has(older), has(sameAge), agent.ToDirectory},
		{"a blanked pod login is repaired, never carried", has(older), has(blanked), agent.ToDirectory},
		{"a truncated pod login is repaired, never carried", has(older), has(truncated), agent.ToDirectory},
		// The host fills the Secret; a pod never does (it could hand its
		// siblings any login it likes).
		{"a blanked Secret is left to the host", has(blanked), has(older), agent.Nothing},
		{"an empty Secret is left to the host", none, has(older), agent.Nothing},
		{"both broken: nothing moves", has(blanked), has(truncated), agent.Nothing},
		{"nothing anywhere", none, none, agent.Nothing},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := agent.Decide(claude.Kind, tc.secret, tc.dir).Action
			if got != tc.want {
				t.Errorf("Decide = %s, want %s", got, tc.want)
			}
		})
	}
}

// A login whose age cannot be told (a Codex API key) is never taken back
// from a pod: nothing says it is the one to keep.
func TestDecideNeverTakesBackALoginOfUnknownAge(t *testing.T) {
	apiKey := fixture(t, "codex/auth.apikey.json")
	other := []byte(`{"OPENAI_API_KEY":"sk-FAKE-other-key-0002","tokens":null}`)
	if got := agent.Decide(codex.Kind, agent.Side{}, agent.Side{Data: apiKey, Exists: true}).Action; got != agent.Nothing {
		t.Errorf("empty Secret, API key in the pod: %s, want nothing", got)
	}
	if got := agent.Decide(codex.Kind, agent.Side{Data: apiKey, Exists: true}, agent.Side{Data: other, Exists: true}).Action; got != agent.ToDirectory {
		t.Errorf("different API keys: %s, want the Secret's into the pod", got)
	}
}

// A Deployment's replicas share one Secret: whatever one pod gets into it
// reaches its siblings before the host looks. A login the host would not
// take from a copy (another account's, one claiming to live for years) is
// not taken back into the Secret; the pod gets the Secret's login instead.
func TestDecideTakesBackOnlyWhatTheHostWould(t *testing.T) {
	now := time.Now()
	secret := claudeLogin(now.Add(time.Hour).UnixMilli(), "host")
	has := func(b []byte) agent.Side { return agent.Side{Data: b, Exists: true} }
	otherAccount := []byte(fmt.Sprintf(`{"claudeAiOauth":{"accessToken":"sk-ant-oat01-FAKE-x","refreshToken":"sk-ant-ort01-FAKE-x","expiresAt":%d,"scopes":["user:inference"],"subscriptionType":"pro"}}`, now.Add(2*time.Hour).UnixMilli()))
	for _, tc := range []struct {
		name    string
		dir     []byte
		want    agent.Action
		refused string
	}{
		{"the pod refreshed: back into the Secret", claudeLogin(now.Add(2*time.Hour).UnixMilli(), "pod"), agent.ToSecret, ""},
		{"another account's login", otherAccount, agent.ToDirectory, "another account"},
		{"a login claiming to live for a year", claudeLogin(now.Add(365*24*time.Hour).UnixMilli(), "pod"), agent.ToDirectory, "further ahead"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := agent.Decide(claude.Kind, has(secret), has(tc.dir))
			if d.Action != tc.want || !strings.Contains(d.Refused, tc.refused) {
				t.Fatalf("Decide = %s (refused: %q), want %s refused for %q", d.Action, d.Refused, tc.want, tc.refused)
			}
			switch d.Action {
			case agent.ToDirectory:
				if !bytes.Equal(d.Data, secret) {
					t.Errorf("the pod gets %q, want the Secret's login", d.Data)
				}
			case agent.ToSecret:
				if !bytes.Equal(d.Data, tc.dir) {
					t.Errorf("the Secret gets %q, want the pod's login", d.Data)
				}
			}
		})
	}
}

// Only the login goes back, as from any copy: members the pod's CLI added
// (its own MCP servers' tokens) stay out of the Secret, and so out of the
// sibling pods.
func TestDecideCarriesOnlyTheLoginBack(t *testing.T) {
	now := time.Now()
	secret := claudeLogin(now.Add(time.Hour).UnixMilli(), "host")
	refreshed := claudeLogin(now.Add(2*time.Hour).UnixMilli(), "pod")
	withExtra := bytes.Replace(refreshed, []byte("{"), []byte(`{"mcpOAuth":{"pod-server|1":{"accessToken":"FAKE-POD-MCP"}},`), 1)
	d := agent.Decide(claude.Kind, agent.Side{Data: secret, Exists: true}, agent.Side{Data: withExtra, Exists: true})
	if d.Action != agent.ToSecret {
		t.Fatalf("Decide = %s, want to-secret", d.Action)
	}
	if bytes.Contains(d.Data, []byte("FAKE-POD-MCP")) || !bytes.Contains(d.Data, []byte("FAKE-pod")) {
		t.Errorf("the Secret would get %q: want the pod's login and nothing else it added", d.Data)
	}
}
