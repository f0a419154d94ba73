package cli

import (
	"errors"
	"strings"
	"testing"

	"github.com/mc-broker/mc-broker/broker"
	"github.com/mc-broker/mc-broker/broker/config"
)

func TestStarterConfigParsesWithAndWithoutAnEngine(t *testing.T) {
	env := config.Env{Home: "/home/me", Getenv: func(string) string { return "" }, GOOS: "linux"}
	defaults := config.Default(env)
	report := &broker.Report{Sources: []broker.SourceReport{{Name: "claude", State: broker.SourceValid, Fingerprint: "sha256:0123456789ab", Location: "/home/me/.claude/.credentials.json"}}}
	for _, engineErr := range []error{nil, errors.New("no engine")} {
		text := starterConfig(env, defaults, report, "unix:///var/run/docker.sock", engineErr)
		cfg, err := config.Parse("config.yaml", []byte(text), env)
		if err != nil {
			t.Fatalf("engine err %v: the starter config does not parse: %v\n%s", engineErr, err, text)
		}
		volumes := 0
		for _, sk := range cfg.Sinks {
			if sk.Volume != "" {
				volumes++
			}
			if !sk.Companions {
				t.Errorf("copy of %s without companions", sk.Source)
			}
		}
		if want := map[bool]int{true: 3, false: 0}[engineErr == nil]; volumes != want {
			t.Errorf("engine err %v: %d volume copies, want %d", engineErr, volumes, want)
		}
		if !strings.Contains(text, "~/.local/share/mc-broker/claude") {
			t.Errorf("copy directory not shown under ~:\n%s", text)
		}
	}
}
