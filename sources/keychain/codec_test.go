package keychain

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mc-broker/mc-broker/broker/kinds/gemini"
)

func TestGeminiKeychainValueBecomesOAuthCredsAndBack(t *testing.T) {
	stored := fixture(t, "gemini/keychain-item.json")
	file, err := GeminiCodec{}.FromStore(stored)
	if err != nil {
		t.Fatal(err)
	}
	info, err := gemini.Kind.Inspect(file)
	if err != nil {
		t.Fatalf("the converted file is not a Gemini login: %v", err)
	}
	if want := time.UnixMilli(4102444800000).UTC(); !info.Expiry.Equal(want) {
		t.Errorf("expiry %s, want %s (expiresAt becomes expiry_date)", info.Expiry, want)
	}
	var got map[string]any
	json.Unmarshal(file, &got)
	want := map[string]any{
		"access_token":  "ya29.FAKE-ACCESS-TOKEN-0001",
		"refresh_token": "1//0FAKE-REFRESH-TOKEN-0001",
		"token_type":    "Bearer",
		"scope":         "https://www.googleapis.com/auth/cloud-platform openid",
		"expiry_date":   float64(4102444800000),
	}
	if len(got) != len(want) {
		t.Errorf("file has members %v, want exactly %v", keys(got), keys(want))
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: got %v", k, got[k])
		}
	}
	// The same login from the file form has the same fingerprint.
	fromFile, _ := gemini.Kind.Inspect(fixture(t, "gemini/oauth_creds.json"))
	if fromFile.Fingerprint != info.Fingerprint {
		t.Error("the keychain login and the file login get different fingerprints")
	}

	// Back: a container refreshed; serverName and unknown members stay.
	var prev map[string]any
	json.Unmarshal(stored, &prev)
	prev["futureField"] = "kept"
	prev["token"].(map[string]any)["futureTokenField"] = "kept too"
	previous, _ := json.Marshal(prev)
	refreshed := bytes.Replace(file, []byte("ya29.FAKE-ACCESS-TOKEN-0001"), []byte("ya29.FAKE-ACCESS-TOKEN-0002"), 1)
	refreshed = bytes.Replace(refreshed, []byte("4102444800000"), []byte("4102448400000"), 1)
	now := time.UnixMilli(1800000000000)
	back, err := GeminiCodec{Now: func() time.Time { return now }}.ToStore(refreshed, previous)
	if err != nil {
		t.Fatal(err)
	}
	var b struct {
		ServerName  string         `json:"serverName"`
		UpdatedAt   int64          `json:"updatedAt"`
		FutureField string         `json:"futureField"`
		Token       map[string]any `json:"token"`
	}
	if err := json.Unmarshal(back, &b); err != nil {
		t.Fatal(err)
	}
	if b.ServerName != "main-account" || b.UpdatedAt != now.UnixMilli() || b.FutureField != "kept" || b.Token["futureTokenField"] != "kept too" {
		t.Errorf("write-back value: %+v", b)
	}
	if b.Token["accessToken"] != "ya29.FAKE-ACCESS-TOKEN-0002" || b.Token["expiresAt"] != float64(4102448400000) || b.Token["refreshToken"] != "1//0FAKE-REFRESH-TOKEN-0001" {
		t.Errorf("token members not taken from the file: %v", keys(b.Token))
	}
	again, _ := GeminiCodec{}.FromStore(back)
	if !bytes.Equal(again, refreshed) {
		t.Error("file -> keychain -> file does not give the same file back")
	}

	// A file with id_token (Gemini's own file form) loses it: the keychain
	// form has no place for it.
	withID, err := GeminiCodec{}.ToStore(fixture(t, "gemini/oauth_creds.json"), nil)
	if err != nil || bytes.Contains(withID, []byte("id_token")) || !bytes.Contains(withID, []byte(`"serverName":"main-account"`)) {
		t.Errorf("from oauth_creds.json with no previous value: %v", err)
	}
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestGeminiSourceReadsAndWritesTheKeychainForm(t *testing.T) {
	f := newFake(t)
	item := GeminiItem()
	stored := fixture(t, "gemini/keychain-item.json")
	f.put(fakeItem{Service: item.Service, Account: item.Account, Label: item.Service, Secret: string(stored)})
	s := f.source(Options{Name: "gemini", Kind: gemini.Kind, Item: item, Codec: GeminiCodec{}})
	ctx := context.Background()
	file, err := s.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gemini.Kind.Inspect(file); err != nil {
		t.Fatalf("read: %v", err)
	}
	refreshed := bytes.Replace(file, []byte("0001"), []byte("0002"), 2)
	err = s.Update(ctx, func(current []byte, exists bool) ([]byte, bool) {
		if !bytes.Equal(current, file) {
			t.Error("decide got the keychain form, not the file form")
		}
		return refreshed, true
	})
	if err != nil {
		t.Fatal(err)
	}
	it, _ := f.get(item)
	if !bytes.Contains([]byte(it.Secret), []byte(`"accessToken":"ya29.FAKE-ACCESS-TOKEN-0002"`)) {
		t.Error("the item does not hold the refreshed token in the keychain form")
	}
	// Not Gemini's shape at all: returned as it is, for the broker to judge.
	f.put(fakeItem{Service: item.Service, Account: item.Account, Secret: "not json"})
	if got, _ := s.Read(ctx); string(got) != "not json" {
		t.Errorf("unconvertible value: %q", got)
	}
}

func TestCodexKeyringSelection(t *testing.T) {
	tests := []struct {
		config  string
		auth    bool
		goos    string
		want    bool
		setting string
	}{
		{"", false, "darwin", false, ""},
		{`cli_auth_credentials_store = "keyring"` + "\n", false, "linux", true, "keyring"},
		{`cli_auth_credentials_store = "keyring"` + "\n", true, "darwin", false, "keyring"},
		{"model = \"o3\"\ncli_auth_credentials_store='auto' # comment\n", false, "darwin", true, "auto"},
		{"cli_auth_credentials_store = \"auto\"\n", false, "linux", false, "auto"},
		{"cli_auth_credentials_store = \"file\"\n", false, "darwin", false, "file"},
		{"[profiles.x]\ncli_auth_credentials_store = \"keyring\"\n", false, "darwin", false, ""},
	}
	for _, tt := range tests {
		home := t.TempDir()
		if tt.config != "" {
			os.WriteFile(filepath.Join(home, "config.toml"), []byte(tt.config), 0o600)
		}
		if tt.auth {
			os.WriteFile(filepath.Join(home, "auth.json"), []byte("{}"), 0o600)
		}
		setting, err := CodexStoreSetting(home)
		if err != nil || setting != tt.setting {
			t.Errorf("%q: setting %q, %v; want %q", tt.config, setting, err, tt.setting)
		}
		got, err := CodexUsesKeyring(home, tt.goos)
		if err != nil || got != tt.want {
			t.Errorf("%q auth.json=%v on %s: keyring=%v, %v; want %v", tt.config, tt.auth, tt.goos, got, err, tt.want)
		}
	}
}
