package broker_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mc-broker/mc-broker/broker"
	"github.com/mc-broker/mc-broker/broker/credential"
	"github.com/mc-broker/mc-broker/broker/kinds/claude"
	"github.com/mc-broker/mc-broker/broker/kinds/codex"
)

var planNow = time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)

func jwt(claims map[string]any) string {
	enc := func(v any) string {
		b, _ := json.Marshal(v)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	return enc(map[string]string{"alg": "RS256", "typ": "JWT"}) + "." + enc(claims) + ".FAKE-SIGNATURE"
}

// codexLogin is a Codex ChatGPT login of account acct whose access token
// expires in ttl; n makes its tokens unique.
func codexLogin(acct string, ttl time.Duration, n int) []byte {
	auth := map[string]any{"chatgpt_account_id": acct, "chatgpt_user_id": "user-" + acct, "chatgpt_plan_type": "pro"}
	exp := planNow.Add(ttl).Unix()
	doc := map[string]any{
		"auth_mode":      "chatgpt",
		"OPENAI_API_KEY": nil,
		"tokens": map[string]any{
			"id_token":      jwt(map[string]any{"email": acct + "@example.com", "exp": exp, "https://api.openai.com/auth": auth}),
			"access_token":  jwt(map[string]any{"exp": exp, "n": n, "https://api.openai.com/auth": auth}),
			"refresh_token": fmt.Sprintf("rt_FAKE-REFRESH-%s-%d", acct, n),
			"account_id":    acct,
		},
		"last_refresh": planNow.Add(ttl - 10*24*time.Hour).Format(time.RFC3339Nano),
	}
	b, _ := json.MarshalIndent(doc, "", "  ")
	return append(b, '\n')
}

// The logins of the table: L0 < L1 < L2 < L3 of account "me", and a newer
// one of another account.
var (
	l0        = codexLogin("me", 1*time.Hour, 0)
	l1        = codexLogin("me", 2*time.Hour, 1)
	l2        = codexLogin("me", 3*24*time.Hour, 2)
	l3        = codexLogin("me", 5*24*time.Hour, 3)
	other     = codexLogin("someone-else", 6*24*time.Hour, 9)
	blanked   = []byte(`{"auth_mode": "chatgpt", "OPENAI_API_KEY": null, "tokens": {"id_token": "", "access_token": "", "refresh_token": "", "account_id": "me"}}`)
	truncated = l2[:len(l2)/2]
)

func info(t *testing.T, data []byte) credential.Info {
	t.Helper()
	i, err := codex.Kind.Inspect(data)
	if err != nil {
		t.Fatalf("fixture login: %v", err)
	}
	return i
}

func seen(data []byte) broker.Seen {
	if data == nil {
		return broker.Seen{}
	}
	return broker.Seen{Exists: true, Data: data}
}

// TestPlanTable pins what every combination of host and copy does:
// host {valid, older, blanked, truncated, absent} × copy {same, older,
// newer, blanked, truncated, absent, other account}.
func TestPlanTable(t *testing.T) {
	type hostCase struct {
		name string
		data []byte
		last []byte // the last valid login the broker saw at the host
		// The copy states' logins relative to this host.
		same, older, newer []byte
	}
	hosts := []hostCase{
		{"valid", l2, l2, l2, l1, l3},
		// A host that went back to an older login (a restore, a dotfile
		// sync): newest still wins.
		{"older", l1, l2, l1, l0, l3},
		{"blanked", blanked, l2, l2, l1, l3},
		{"truncated", truncated, l2, l2, l1, l3},
		{"absent", nil, l2, l2, l1, l3},
	}
	copies := []string{"same", "older", "newer", "blanked", "truncated", "absent", "other-account"}
	// want[host][copy] = host action / copy outcome (sync) / status.
	want := map[string]map[string]string{
		"valid": {
			"same": "keep/unchanged/in-sync", "older": "keep/updated/older", "newer": "take-back/taken-back/newer",
			"blanked": "keep/repaired/broken", "truncated": "keep/repaired/broken", "absent": "keep/created/missing",
			"other-account": "keep/other-account/other-account",
		},
		"older": {
			"same": "keep/unchanged/in-sync", "older": "keep/updated/older", "newer": "take-back/taken-back/newer",
			"blanked": "keep/repaired/broken", "truncated": "keep/repaired/broken", "absent": "keep/created/missing",
			"other-account": "keep/other-account/other-account",
		},
		"blanked": {
			"same": "skip/skipped/present", "older": "skip/skipped/present", "newer": "take-back/taken-back/newer",
			"blanked": "skip/skipped/broken", "truncated": "skip/skipped/broken", "absent": "skip/skipped/missing",
			"other-account": "skip/skipped/present",
		},
		"truncated": {
			"same": "skip/skipped/present", "older": "skip/skipped/present", "newer": "take-back/taken-back/newer",
			"blanked": "skip/skipped/broken", "truncated": "skip/skipped/broken", "absent": "skip/skipped/missing",
			"other-account": "skip/skipped/present",
		},
		"absent": {
			"same": "skip/skipped/present", "older": "skip/skipped/present", "newer": "skip/skipped/present",
			"blanked": "skip/skipped/broken", "truncated": "skip/skipped/broken", "absent": "skip/skipped/missing",
			"other-account": "skip/skipped/present",
		},
	}
	for _, h := range hosts {
		for _, name := range copies {
			t.Run(h.name+"/"+name, func(t *testing.T) {
				var data []byte
				switch name {
				case "same":
					data = h.same
				case "older":
					data = h.older
				case "newer":
					data = h.newer
				case "blanked":
					data = blanked
				case "truncated":
					data = truncated
				case "other-account":
					data = other
				}
				mem := broker.NewMemory()
				mem.Remember(info(t, h.last))
				in := broker.PlanInput{
					Kind: codex.Kind, Now: planNow, Host: seen(h.data), HostWritable: true,
					Copies: []broker.PlanCopy{{Key: "/copy/auth.json", Seen: seen(data)}},
					Memory: mem,
				}
				res := broker.Plan(in)
				cp := res.Copies[0]
				got := fmt.Sprintf("%s/%s/%s", res.Host.Action, cp.Outcome, cp.Shows)
				if got != want[h.name][name] {
					t.Errorf("host %s, copy %s: got %s, want %s", h.name, name, got, want[h.name][name])
				}
				// Whatever the plan writes is a valid login of the host's
				// account, never the copy's broken or foreign content.
				if cp.Action == broker.Write {
					wi, err := codex.Kind.Inspect(cp.Want)
					if err != nil || wi.Identity != info(t, l2).Identity {
						t.Errorf("writes %v (identity ok: %v)", err, err == nil && wi.Identity == info(t, l2).Identity)
					}
				}
				if res.Host.Action == broker.TakeBack {
					if got := info(t, res.Host.Data); got.Fingerprint != info(t, h.newer).Fingerprint {
						t.Errorf("takes back %s, want the copy's %s", got.Fingerprint, info(t, h.newer).Fingerprint)
					}
				}
			})
		}
	}
}

func plan1(t *testing.T, host, cp []byte, mem *broker.Memory, rules broker.Rules) broker.PlanResult {
	t.Helper()
	if mem == nil {
		mem = broker.NewMemory()
	}
	return broker.Plan(broker.PlanInput{
		Kind: codex.Kind, Now: planNow, Host: seen(host), HostWritable: true,
		Copies: []broker.PlanCopy{{Key: "/copy/auth.json", Seen: seen(cp)}},
		Memory: mem, Rules: rules,
	})
}

// A copy whose newer login is refused is given the host's login, and the
// plan says why.
func TestPlanRefusesUntrustedNewerLogins(t *testing.T) {
	poison := codexLogin("me", 10*365*24*time.Hour, 4) // expires in ten years
	future := bytes.Replace(l3, []byte(planNow.Add(5*24*time.Hour-10*24*time.Hour).Format(time.RFC3339Nano)), []byte(planNow.Add(48*time.Hour).Format(time.RFC3339Nano)), 1)
	var big map[string]any
	_ = json.Unmarshal(l3, &big)
	big["padding"] = strings.Repeat("x", credential.MaxTakeBack)
	bomb, _ := json.Marshal(big)
	apiKey := []byte(`{"auth_mode": "apikey", "OPENAI_API_KEY": "sk-FAKE-KEY", "last_refresh": "2027-01-01T00:00:00Z"}`)

	busy := broker.NewMemory()
	for i := range broker.DefaultMaxTakeBacks {
		busy.Store("/copy/auth.json").TakeBacks = append(busy.Store("/copy/auth.json").TakeBacks, planNow.Add(-time.Duration(i+1)*time.Minute))
	}
	for _, tt := range []struct {
		name string
		copy []byte
		mem  *broker.Memory
		why  string
	}{
		{"expiry years ahead", poison, nil, "further ahead than codex ever issues"},
		{"refreshed in the future", future, nil, "refreshed in the future"},
		{"size bomb", bomb, nil, "more than a login ever is"},
		{"too many take-backs", l3, busy, "logins in the last hour"},
		{"another account", other, nil, "another account"},
		{"switch to an API key", apiKey, nil, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res := plan1(t, l2, tt.copy, tt.mem, broker.Rules{})
			if res.Host.Action == broker.TakeBack {
				t.Fatalf("took back an untrusted login")
			}
			if res.Login == nil || info(t, res.Login.Data).Fingerprint != info(t, l2).Fingerprint {
				t.Fatalf("the login fanned out is not the host's")
			}
			cp := res.Copies[0]
			if tt.why != "" && !strings.Contains(cp.Refused+cp.Problem, tt.why) {
				t.Errorf("refused %q / problem %q, want it to say %q", cp.Refused, cp.Problem, tt.why)
			}
			if strings.Contains(cp.Refused+cp.Problem, "FAKE") {
				t.Errorf("the reason shows a secret")
			}
		})
	}
	// The same copies from the same account with a plausible login are
	// taken back.
	if res := plan1(t, l2, l3, nil, broker.Rules{}); res.Host.Action != broker.TakeBack {
		t.Errorf("a genuine refresh was not taken back: %s", res.Host.Action)
	}
}

// A copy that still holds what the broker gave it is ours to replace, even
// when the host's account changed (the user logged in as someone else).
func TestPlanReplacesWhatItGaveWhenTheAccountChanges(t *testing.T) {
	mem := broker.NewMemory()
	mem.Store("/copy/auth.json").Given = broker.Hash(other)
	res := plan1(t, l2, other, mem, broker.Rules{})
	if cp := res.Copies[0]; cp.Action != broker.Write || cp.Outcome != broker.Updated {
		t.Errorf("copy holding the old account the broker gave: %s/%s, want write/updated", cp.Action, cp.Outcome)
	}
	// Not given by the broker: left alone, unless forced.
	if cp := plan1(t, l2, other, nil, broker.Rules{}).Copies[0]; cp.Action != broker.Refuse {
		t.Errorf("another account's login the broker did not put there: %s, want refuse", cp.Action)
	}
	if cp := plan1(t, l2, other, nil, broker.Rules{Force: true}).Copies[0]; cp.Action != broker.Write {
		t.Errorf("with force: %s, want write", cp.Action)
	}
}

func TestPlanNeverReplacesWhatIsNotALogin(t *testing.T) {
	for _, foreign := range []string{
		"root:x:0:0:root:/root:/bin/bash\n",
		`{"hasCompletedOnboarding": true}`,
		`["a", "list"]`,
		string(claudeLogin(t)),
	} {
		cp := plan1(t, l2, []byte(foreign), nil, broker.Rules{}).Copies[0]
		if cp.Action != broker.Refuse || cp.Outcome != broker.Refused {
			t.Errorf("%.20q: %s/%s, want refuse/refused", foreign, cp.Action, cp.Outcome)
		}
		if cp := plan1(t, l2, []byte(foreign), nil, broker.Rules{Force: true}).Copies[0]; cp.Action != broker.Write {
			t.Errorf("%.20q with force: %s, want write", foreign, cp.Action)
		}
	}
}

func claudeLogin(t *testing.T) []byte {
	t.Helper()
	return []byte(`{"claudeAiOauth": {"accessToken": "sk-ant-oat01-FAKE-A", "refreshToken": "sk-ant-ort01-FAKE-R", "expiresAt": 1764680400000, "scopes": ["user:inference"], "subscriptionType": "max"}}`)
}

func TestPlanWaitsForHalfWrittenContent(t *testing.T) {
	rules := broker.Rules{Patience: 2 * time.Second}
	res := plan1(t, l2, truncated, nil, rules)
	if cp := res.Copies[0]; cp.Action != broker.Wait || res.Wait <= 0 {
		t.Errorf("half-written copy: %s, wait %v; want wait", cp.Action, res.Wait)
	}
	// Patience spent: repaired.
	mem := broker.NewMemory()
	mem.Store("/copy/auth.json").PartialSince = planNow.Add(-3 * time.Second)
	if cp := plan1(t, l2, truncated, mem, rules).Copies[0]; cp.Action != broker.Write || cp.Outcome != broker.Repaired {
		t.Errorf("copy half-written for longer than the patience: %s/%s, want write/repaired", cp.Action, cp.Outcome)
	}
	// A half-written host: nothing is decided, every copy waits.
	res = plan1(t, truncated, l1, nil, rules)
	if res.Host.Action != broker.Wait || res.Copies[0].Action != broker.Wait || res.Wait <= 0 {
		t.Errorf("half-written host: host %s, copy %s, wait %v", res.Host.Action, res.Copies[0].Action, res.Wait)
	}
}

// A copy that a container rewrote between the plan and the write is
// decided again with what it holds then: a newer login is never
// overwritten.
func TestDecideCopyUnderTheLockSeesANewerLogin(t *testing.T) {
	in := broker.PlanInput{
		Kind: codex.Kind, Now: planNow, Host: seen(l2), HostWritable: true,
		Copies: []broker.PlanCopy{{Key: "/copy/auth.json", Seen: seen(l1)}},
	}
	res := broker.Plan(in)
	if res.Copies[0].Action != broker.Write {
		t.Fatalf("older copy: %s, want write", res.Copies[0].Action)
	}
	now := res.DecideCopy(in, 0, seen(l3))
	if now.Action != broker.Keep || !now.Again {
		t.Errorf("copy rewritten with a newer login before the write: %s again=%v, want keep and pass again", now.Action, now.Again)
	}
	if now := res.DecideCopy(in, 0, seen(l1)); now.Action != broker.Write {
		t.Errorf("unchanged since the plan: %s, want write", now.Action)
	}
}

// Only the login's own members are taken back: what else a container put
// into its copy never reaches the host, and the host keeps its own extras.
func TestTakeBackTakesOnlyTheLogin(t *testing.T) {
	host := bytes.Replace(l2, []byte(`"auth_mode"`), []byte(`"host_setting": "mine", "auth_mode"`), 1)
	cp := bytes.Replace(l3, []byte(`"auth_mode"`), []byte(`"injected": {"evil": true}, "auth_mode"`), 1)
	res := plan1(t, host, cp, nil, broker.Rules{})
	if res.Host.Action != broker.TakeBack {
		t.Fatalf("not taken back: %s", res.Host.Action)
	}
	if bytes.Contains(res.Host.Data, []byte("injected")) {
		t.Error("the copy's other members reached the host")
	}
	if !bytes.Contains(res.Host.Data, []byte(`"host_setting": "mine"`)) {
		t.Error("the host lost its own member")
	}
	if got := info(t, res.Host.Data).Fingerprint; got != info(t, l3).Fingerprint {
		t.Errorf("host login %s, want the copy's %s", got, info(t, l3).Fingerprint)
	}
}

// A host that cannot take a login back leaves the newer copy as it is.
func TestPlanWithAHostThatCannotTakeBack(t *testing.T) {
	res := broker.Plan(broker.PlanInput{
		Kind: codex.Kind, Now: planNow, Host: seen(l2),
		Copies: []broker.PlanCopy{{Key: "a", Seen: seen(l3)}, {Key: "b", Seen: seen(l1)}},
	})
	if res.Host.Action != broker.Keep || res.Copies[0].Outcome != broker.KeptNewer || res.Copies[1].Outcome != broker.Updated {
		t.Errorf("host %s, newer copy %s, older copy %s; want keep, kept-newer, updated", res.Host.Action, res.Copies[0].Outcome, res.Copies[1].Outcome)
	}
}

// Claude's file names no account: a login of another plan is refused.
func TestClaudeIdentityPinsThePlan(t *testing.T) {
	mk := func(sub string, ttl time.Duration, n int) []byte {
		return []byte(fmt.Sprintf(`{"claudeAiOauth": {"accessToken": "sk-ant-oat01-FAKE-%d", "refreshToken": "sk-ant-ort01-FAKE-%d", "expiresAt": %d, "scopes": ["user:inference", "user:profile"], "subscriptionType": %q}}`,
			n, n, planNow.Add(ttl).UnixMilli(), sub))
	}
	res := broker.Plan(broker.PlanInput{
		Kind: claude.Kind, Now: planNow, Host: seen(mk("max", 2*time.Hour, 1)), HostWritable: true,
		Copies: []broker.PlanCopy{{Key: "a", Seen: seen(mk("pro", 8*time.Hour, 2))}, {Key: "b", Seen: seen(mk("max", 7*time.Hour, 3))}},
	})
	if res.Host.Action != broker.TakeBack || res.Host.From != 1 {
		t.Errorf("host %s from %d; want the same plan's newer login (copy 1)", res.Host.Action, res.Host.From)
	}
	if res.Copies[0].Outcome != broker.OtherAccount {
		t.Errorf("another plan's login: %s, want other-account", res.Copies[0].Outcome)
	}
}
