package wire

import (
	"errors"
	"strings"
	"testing"

	"github.com/mc-broker/mc-broker/broker/config"
)

func TestMirrorRefreshLockKey(t *testing.T) {
	cfg, err := config.Parse("cfg.yaml", []byte("sources:\n  claude: {mirror_refresh_lock: false}\n  work: {kind: claude, path: /w/.credentials.json, mirror_refresh_lock: true}\n  other: {kind: claude, path: /o/.credentials.json}\n"), testEnv(nil))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Build(cfg, testEnv(nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"claude": false, "work": true, "other": true}
	for _, s := range b.Sources {
		m, ok := s.(interface{ MirrorRefreshLock() bool })
		if !ok {
			t.Fatalf("source %s does not say whether its lock may be mirrored", s.Name())
		}
		if got := m.MirrorRefreshLock(); got != want[s.Name()] {
			t.Errorf("%s: MirrorRefreshLock() = %v, want %v", s.Name(), got, want[s.Name()])
		}
	}

	for yaml, msg := range map[string]string{
		"sources:\n  claude: {mirror_refresh_lock: no-thanks}\n": "sources.claude.mirror_refresh_lock must be true or false",
		"sources:\n  codex: {mirror_refresh_lock: false}\n":      "sources.codex.mirror_refresh_lock applies to claude sources only",
		"sources:\n  gemini: {mirror_refresh_lock: true}\n":      "sources.gemini.mirror_refresh_lock applies to claude sources only",
	} {
		_, err := config.Parse("cfg.yaml", []byte(yaml), testEnv(nil))
		var ce *config.Error
		if !errors.As(err, &ce) || !strings.Contains(err.Error(), msg) || !strings.HasPrefix(err.Error(), "cfg.yaml:2: ") {
			t.Errorf("%q: error %v, want cfg.yaml:2: ...%s", yaml, err, msg)
		}
	}
}
