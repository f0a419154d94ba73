package wire

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/mc-broker/mc-broker/broker/config"
	"github.com/mc-broker/mc-broker/sinks/secret"
)

func TestSecretCopies(t *testing.T) {
	cfg, err := config.Parse("cfg.yaml", []byte(`
sources:
  claude: {}
  notes: {kind: file, path: /etc/notes.txt}
sinks:
  - source: claude
    secret: agents/logins
    kubeconfig: ~/.kube/work
    context: prod
    adopt: true
  - {source: claude, secret: agents/logins, key: spare.json}
  - {source: notes, secret: agents/logins}
`), testEnv(nil))
	if err != nil {
		t.Fatal(err)
	}
	k := cfg.Sinks[0]
	if k.SecretNamespace != "agents" || k.SecretName != "logins" || k.Key != ".credentials.json" ||
		k.Kubeconfig != "/home/dev/.kube/work" || k.Context != "prod" || !k.Adopt {
		t.Errorf("secret sink: %+v", k)
	}
	if cfg.Sinks[1].Key != "spare.json" || cfg.Sinks[2].Key != "notes.txt" {
		t.Errorf("keys %q, %q: want the configured key, and a file source's file name", cfg.Sinks[1].Key, cfg.Sinks[2].Key)
	}
	b, err := Build(cfg, testEnv(nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range b.Copies {
		if _, ok := c.Sink.(*secret.Sink); !ok {
			t.Errorf("%s is a %T", c.Sink.Location(), c.Sink)
		}
		got = append(got, c.Sink.Location())
	}
	want := []string{"secret agents/logins:.credentials.json (context prod)", "secret agents/logins:spare.json", "secret agents/logins:notes.txt"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("locations %q, want %q", got, want)
	}

	twice, err := config.Parse("cfg.yaml", []byte("sources:\n  claude: {}\nsinks:\n  - {source: claude, secret: a/s}\n  - {source: claude, secret: a/s, key: .credentials.json}\n"), testEnv(nil))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Build(twice, testEnv(nil), nil); err == nil || !strings.Contains(err.Error(), "two copies write secret a/s:.credentials.json") {
		t.Errorf("two copies under one key: %v", err)
	}
}

func TestSecretCopyErrorsNameKeyAndLine(t *testing.T) {
	const head = "sources:\n  claude: {}\nsinks:\n"
	for _, tt := range []struct {
		name, yaml string
		line       int
		want       string
	}{
		{"no namespace", head + "  - {source: claude, secret: logins}\n", 4, "sinks[0].secret must be NAMESPACE/NAME"},
		{"bad name", head + "  - {source: claude, secret: agents/Logins}\n", 4, `"Logins" is not a Secret name`},
		{"bad namespace", head + "  - {source: claude, secret: a.b/logins}\n", 4, "not a Kubernetes namespace name"},
		{"bad key", head + "  - {source: claude, secret: a/s, key: 'a/b'}\n", 4, `sinks[0].key "a/b" is not a Secret key`},
		{"secret and dir", head + "  - {source: claude, secret: a/s, dir: /x}\n", 4, "give one of dir, volume and secret"},
		{"key without secret", head + "  - source: claude\n    dir: /x\n    key: k\n", 6, "sinks[0].key applies to secret: copies only"},
		{"context on a dir copy", head + "  - source: claude\n    dir: /x\n    context: prod\n", 6, "sinks[0].context applies to volume and secret: copies only"},
		{"kubeconfig on a volume", head + "  - source: claude\n    volume: v1\n    kubeconfig: /k\n", 6, "sinks[0].kubeconfig applies to secret: copies only"},
		{"file_name on a secret", head + "  - source: claude\n    secret: a/s\n    file_name: x.json\n", 6, "use key:"},
		{"uid on a secret", head + "  - source: claude\n    secret: a/s\n    uid: 1000\n", 6, "kube manifest --uid"},
		{"companions on a secret", head + "  - source: claude\n    secret: a/s\n    companions: true\n", 6, "the pod's agent writes them"},
		{"path on a secret", head + "  - {source: claude, secret: a/s, path: /x}\n", 4, "path applies to volume copies only"},
		{"adopt not a bool", head + "  - {source: claude, secret: a/s, adopt: yes please}\n", 4, "adopt must be true or false"},
		{"relative kubeconfig", head + "  - {source: claude, secret: a/s, kubeconfig: kube/config}\n", 4, "kubeconfig must be an absolute path"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config.Parse("cfg.yaml", []byte(tt.yaml), testEnv(nil))
			var ce *config.Error
			if !errors.As(err, &ce) {
				t.Fatalf("want *config.Error, got %v", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
			if !strings.HasPrefix(err.Error(), "cfg.yaml:"+strconv.Itoa(tt.line)+": ") {
				t.Errorf("error %q does not point at line %d", err, tt.line)
			}
		})
	}
}
