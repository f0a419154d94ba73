package compose

// compose-go is what `docker compose` v2 loads files with. mc-broker does
// not link it (its schema validation costs every command ~10 ms of
// start-up); these tests hold the check's own loader, interpolation, .env
// parsing and short-syntax parsing to what compose-go makes of the same
// input.

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/dotenv"
	"github.com/compose-spec/compose-go/v2/format"
	composeloader "github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/template"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/sirupsen/logrus"
)

func init() {
	logrus.SetLevel(logrus.ErrorLevel) // compose-go's deprecation warnings
}

// composeGoLoad loads files as mc-broker's check did with compose-go:
// no env_file or label_file resolution, and unset required variables as
// placeholders.
func composeGoLoad(files []string, env map[string]string, dir string) (*types.Project, error) {
	var envList []string
	for k, v := range env {
		envList = append(envList, k+"="+v)
	}
	required := func(sub string, m template.Mapping, cfg *template.Config) (string, error) {
		v, _, err := template.DefaultReplacementAppliedFunc(sub, m, cfg)
		var missing *template.MissingRequiredError
		if errors.As(err, &missing) {
			return unsetMarker + missing.Variable, nil
		}
		return v, err
	}
	opts, err := cli.NewProjectOptions(files,
		cli.WithWorkingDirectory(dir), cli.WithEnv(envList), cli.WithEnvFiles(), cli.WithDotEnv,
		cli.WithoutEnvironmentResolution, cli.WithoutLabelsResolution,
		cli.WithLoadOptions(func(lo *composeloader.Options) {
			if lo.Interpolate != nil {
				in := *lo.Interpolate
				in.Substitute = func(s string, m template.Mapping) (string, error) {
					return template.SubstituteWithOptions(s, m, template.WithoutLogging, template.WithReplacementFunction(required))
				}
				lo.Interpolate = &in
			}
		}))
	if err != nil {
		return nil, err
	}
	return opts.LoadProject(context.Background())
}

// view is a loaded project as text, the same for both loaders.
func viewComposeGo(p *types.Project) string {
	var b strings.Builder
	fmt.Fprintf(&b, "project %s\n", p.Name)
	all := maps.Clone(p.Services)
	maps.Copy(all, p.DisabledServices)
	for _, name := range slices.Sorted(maps.Keys(all)) {
		s := all[name]
		fmt.Fprintf(&b, "service %s disabled=%v\n", name, len(s.Profiles) > 0)
		for _, v := range s.Volumes {
			create := v.Bind != nil && bool(v.Bind.CreateHostPath)
			fmt.Fprintf(&b, "  mount %s %q -> %q ro=%v create=%v\n", v.Type, v.Source, v.Target, v.ReadOnly, create)
		}
		for _, sec := range s.Secrets {
			fmt.Fprintf(&b, "  secret %s\n", sec.Source)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(p.Volumes)) {
		fmt.Fprintf(&b, "volume %s name=%s external=%v\n", name, p.Volumes[name].Name, bool(p.Volumes[name].External))
	}
	for _, name := range slices.Sorted(maps.Keys(p.Secrets)) {
		fmt.Fprintf(&b, "secret %s file=%s external=%v\n", name, p.Secrets[name].File, bool(p.Secrets[name].External))
	}
	return b.String()
}

func viewOwn(p *project) string {
	var b strings.Builder
	fmt.Fprintf(&b, "project %s\n", p.name)
	for _, name := range sortedKeys(p.services) {
		s := p.services[name]
		fmt.Fprintf(&b, "service %s disabled=%v\n", name, s.disabled)
		for _, m := range s.mounts {
			fmt.Fprintf(&b, "  mount %s %q -> %q ro=%v create=%v\n", m.typ, m.source, m.target, m.readOnly, m.createHostPath)
		}
		for _, sec := range s.secrets {
			fmt.Fprintf(&b, "  secret %s\n", sec.source)
		}
	}
	for _, name := range sortedKeys(p.volumes) {
		fmt.Fprintf(&b, "volume %s name=%s external=%v\n", name, p.volumes[name].name, p.volumes[name].external)
	}
	for _, name := range sortedKeys(p.secrets) {
		fmt.Fprintf(&b, "secret %s file=%s external=%v\n", name, p.secrets[name].file, p.secrets[name].external)
	}
	return b.String()
}

// loaderCases are projects whose loaded model (not findings) must match.
var loaderCases = []composeCase{{
	name: "include with project_directory and env_file",
	files: map[string]string{"compose.yaml": `include:
  - path: [lib/a.yaml, lib/a.override.yaml]
    project_directory: shared
    env_file: lib/vars.env
services:
  app:
    image: x
`, "lib/a.yaml": "services:\n  a:\n    image: x\n    volumes: ['${A}:/root/.codex']\n",
		"lib/a.override.yaml": "services:\n  a:\n    volumes: ['./b:/root/.claude:ro']\n",
		"lib/vars.env":        "A=./from-env\n", "shared/": ""},
	args: []string{"compose.yaml"},
}, {
	name: "a service in both the file and an include is merged, the file's winning",
	files: map[string]string{"compose.yaml": `include: [inc.yaml]
services:
  a:
    image: x
    volumes: ['./mine:/root/.codex']
`, "inc.yaml": "services:\n  a:\n    image: y\n    volumes: ['./theirs:/root/.codex:ro', './more:/root/.claude']\n"},
	args: []string{"compose.yaml"},
}, {
	name: "nested extends across files, paths relative to each file",
	files: map[string]string{"compose.yaml": `services:
  app:
    extends: {file: one/base.yaml, service: mid}
    volumes: ['./here:/root/.gemini']
`, "one/base.yaml": "services:\n  mid:\n    extends: {file: ../two/root.yaml, service: root}\n    volumes: ['./one-src:/root/.codex']\n",
		"two/root.yaml": "services:\n  root:\n    image: x\n    volumes: ['./two-src:/root/.codex:ro', '~/x:/root/.claude']\n"},
	args: []string{"compose.yaml"},
}, {
	name: "an extending service replaces a mount at the same target",
	files: map[string]string{"compose.yaml": `services:
  base:
    image: x
    volumes: ['./a:/root/.codex:ro', 'logins:/root/.claude']
  app:
    extends: base
    volumes: [{type: bind, source: ./b, target: /root/.codex}]
volumes:
  logins:
    external: ${EXT:-true}
`},
	args: []string{"compose.yaml"},
}, {
	name: "!reset of a whole service, and of a volume's external",
	files: map[string]string{"compose.yaml": `services:
  a:
    image: x
    volumes: ['./a:/root/.codex']
  b:
    image: x
    volumes: ['v:/root/.claude']
volumes:
  v:
    external: true
`, "override.yaml": "services:\n  a: !reset\nvolumes:\n  v:\n    external: !reset\n    name: other\n"},
	args: []string{"compose.yaml", "override.yaml"},
}, {
	name: "a second document resets the first",
	files: map[string]string{"compose.yaml": `services:
  a:
    image: x
    volumes: ['./a:/root/.codex', './b:/root/.claude']
---
services:
  a:
    volumes: !override ['./c:/root/.gemini:ro']
`},
	args: []string{"compose.yaml"},
}, {
	name: "odd short syntax: drive letters, options, anonymous, tmpfs, nocopy",
	files: map[string]string{"compose.yaml": `services:
  a:
    image: x
    volumes:
      - 'C:\data:/data'
      - 'ab'
      - '/anon'
      - './x:/root/.claude:rw,z,rshared'
      - 'named:/n:nocopy,ro'
      - '${UNSET:-./d}:/d'
      - '${UNSET_REQ:?}:/r'
      - type: tmpfs
        target: /t
      - type: bind
        source: ''
        target: /e
      - type: bind
        source: ./b
        target: /root/.gemini/
        bind: {propagation: rprivate}
volumes:
  named:
`},
	args: []string{"compose.yaml"},
}, {
	name: "a disabled service may name an undeclared volume",
	files: map[string]string{"compose.yaml": `services:
  a:
    image: x
    profiles: [p]
    volumes: ['undeclared:/root/.claude']
`},
	args: []string{"compose.yaml"},
}, {
	name: ".env quirks",
	files: map[string]string{".env": "A=one # comment\nB=\"two\\n${A}\"\nC='${A}'\nexport D=x\\$y\nE\n F : spaced\n",
		"compose.yaml": "services:\n  a:\n    image: x\n    volumes: ['./${A}-${B}-${C}-${D}-${E}-${F}:/x']\n"},
	env:  map[string]string{"E": "from-env"},
	args: []string{"compose.yaml"},
}, {
	name: "secrets from files, ~ and environment",
	files: map[string]string{"compose.yaml": `services:
  a:
    image: x
    secrets: [s1, {source: s2, target: /t}, s3]
secrets:
  s1: {file: ~/creds.json}
  s2: {file: ./auth/.credentials.json}
  s3: {environment: TOKEN}
`},
	args: []string{"compose.yaml"},
}}

var moreLoaderCases = []composeCase{{
	name: "null overrides, extensions, quoted booleans, an interpolated name",
	files: map[string]string{"compose.yaml": `name: ${PROJ:-Abc-Def}
x-common: &common
  image: x
services:
  a:
    <<: *common
    x-note: hello
    volumes:
      - {type: bind, source: ./a, target: /root/.codex, read_only: "false", x-why: because}
      - {type: volume, source: v, target: /root/.claude, read_only: "true"}
volumes:
  v:
    external: "true"
    x-owner: me
`, "override.yaml": "services:\n  a:\n    volumes:\n"},
	args: []string{"compose.yaml", "override.yaml"},
}, {
	name: "extends chains in one file, and a service extending its namesake elsewhere",
	files: map[string]string{"compose.yaml": `services:
  c:
    image: x
    volumes: ['./c:/root/.codex']
  b:
    extends: c
    volumes: ['./b:/root/.claude:ro']
  a:
    extends: b
  app:
    extends: {file: base.yaml, service: app}
`, "base.yaml": "services:\n  app:\n    image: y\n    volumes: ['./base:/root/.gemini']\n"},
	args: []string{"compose.yaml"},
}, {
	name:  "an empty first file, a comment-only second",
	files: map[string]string{"one.yaml": "", "two.yaml": "# nothing\n", "three.yaml": "services:\n  a:\n    image: x\n    volumes: ['v:/root/.codex']\nvolumes:\n  v: {name: mc-codex-auth}\n"},
	args:  []string{"one.yaml", "two.yaml", "three.yaml"},
}, {
	name: "an included service uses the includer's volume",
	files: map[string]string{"compose.yaml": "include: [sub/inc.yaml]\nvolumes:\n  logins: {external: true}\n",
		"sub/inc.yaml": "services:\n  a:\n    image: x\n    volumes: ['logins:/root/.claude']\nvolumes:\n  logins:\n"},
	args: []string{"compose.yaml"},
}}

func TestLoaderAgreesWithComposeGo(t *testing.T) {
	t.Setenv("HOME", "/home-of-the-test")
	for _, c := range slices.Concat(composeCases, loaderCases, moreLoaderCases) {
		t.Run(c.name, func(t *testing.T) {
			dir := tree(t, c.files)
			var files []string
			for _, a := range c.args {
				files = append(files, filepath.Join(dir, a))
			}
			env := c.env
			if env == nil {
				env = map[string]string{}
			}
			project := ""
			if c.dir != "" {
				project = filepath.Join(dir, c.dir)
			}
			want, err := composeGoLoad(files, env, project)
			if err != nil {
				t.Fatalf("compose-go: %v", err)
			}
			got, err := CheckOptions{Env: env, ProjectDir: project}.loadProject(files, false)
			if err != nil {
				t.Fatal(err)
			}
			if g, w := viewOwn(got), viewComposeGo(want); g != w {
				t.Errorf("loaded:\n%s\ncompose-go:\n%s", g, w)
			}
		})
	}
}

// Every file the check refuses, compose-go refuses too.
func TestLoaderRefusesWhatComposeGoRefuses(t *testing.T) {
	for _, tt := range refusedFiles {
		t.Run(tt.name, func(t *testing.T) {
			dir := tree(t, map[string]string{"compose.yaml": tt.file})
			if _, err := composeGoLoad([]string{filepath.Join(dir, "compose.yaml")}, map[string]string{}, ""); err == nil {
				t.Errorf("compose-go loads it")
			}
		})
	}
}

func TestInterpolationAgreesWithComposeGo(t *testing.T) {
	env := map[string]string{"SET": "value", "EMPTY": "", "PATH_": "/p"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	for _, s := range []string{
		"", "plain", "$SET", "${SET}", "$$SET", "$$", "$", "a$", "$5", "${SET}x${EMPTY}y",
		"${UNSET:-default}", "${EMPTY:-default}", "${EMPTY-default}", "${UNSET-default}",
		"${SET:+alt}", "${EMPTY:+alt}", "${EMPTY+alt}", "${UNSET+alt}",
		"${SET:?msg}", "${SET?msg}", "${EMPTY?msg}",
		"${UNSET:-${SET}}", "${UNSET:-${ALSO_UNSET:-deep}}/x", "${UNSET:-a}/b/${SET}", "${UNSET:-{x}}",
		"${UNSET:-x}}", "${UNSET:-a:b}", "${SET}${SET}", "pre${SET}post", "${set}", "$SET_suffix", "${SET}_suffix",
		"${UNSET:-x\n}", "${UNSET:-x}\n${SET}", "${PATH_:-/d}/sub",
	} {
		want, wantErr := template.Substitute(s, lookup)
		got, gotErr := substituter{lookup: lookup, strict: true}.substitute(s)
		if (gotErr == nil) != (wantErr == nil) || (wantErr == nil && got != want) {
			t.Errorf("%q: got %q, %v; compose-go %q, %v", s, got, gotErr, want, wantErr)
		}
	}
	for _, s := range []string{"${", "${}", "${1}", "${SET:x}", "${SET", "${UNSET:?required}", "${UNSET?}", "${EMPTY:?}", "a ${ b"} {
		_, wantErr := template.Substitute(s, lookup)
		_, gotErr := substituter{lookup: lookup, strict: true}.substitute(s)
		if wantErr == nil || gotErr == nil {
			t.Errorf("%q: error %v; compose-go %v", s, gotErr, wantErr)
		}
	}
}

func TestDotEnvAgreesWithComposeGo(t *testing.T) {
	env := map[string]string{"HOST_VAR": "host"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	for _, src := range []string{
		"A=1\nB=2\n", "A=1", "# c\n\nA = spaced  \n", "export A=1\nexport\tB=2\n", "A: yaml\n",
		"A=x # comment\nB=x#not\n", "A='single ${HOST_VAR} \\n'\n", "A=\"double ${HOST_VAR} \\n \\t \\\\ \\$x \\\" \\0101 \\012 \\c\"\n",
		"A=\"multi\nline\"\n", "A=${HOST_VAR}\nB=${A}-x\nC=$$A\n", "HOST_VAR\nUNSET_VAR\n", "A=\"quote \\\" in\"\n",
		"\uFEFFA=bom\n", "A=1\r\nB=2\r\n", "A.b-c[0]=ok\n", "A=\nB=\n", "A=${UNSET:-dflt}\n",
	} {
		want, wantErr := dotenv.ParseWithLookup(strings.NewReader(src), lookup)
		got := map[string]string{}
		gotErr := parseDotEnv(src, lookup, got)
		if (gotErr == nil) != (wantErr == nil) || (wantErr == nil && !maps.Equal(got, want)) {
			t.Errorf("%q: got %q, %v; compose-go %q, %v", src, got, gotErr, want, wantErr)
		}
	}
	for _, src := range []string{"A B=1\n", "A=\"unterminated\n", "A*=1\n", "A=${UNSET:?needed}\n", "A=${\n"} {
		gotErr := parseDotEnv(src, lookup, map[string]string{})
		if _, wantErr := dotenv.ParseWithLookup(strings.NewReader(src), lookup); wantErr == nil || gotErr == nil {
			t.Errorf("%q: error %v; compose-go %v", src, gotErr, wantErr)
		}
	}
}

func TestVolumeSpecAgreesWithComposeGo(t *testing.T) {
	for _, spec := range []string{
		"/data", "ab", "a", "vol:/data", "./src:/dst", "./src:/dst:ro", "./src:/dst:rw", "./src:/dst:ro,z", "~/x:/y",
		"/a:/b:nocopy", "C:\\x:/y", "c:/x:/y", "\\\\pipe\\x:/y", "v:/x", "${A:-./a}:/b", "${A:-x:y}:/b:ro", "./a:/b/",
		"./a:/b/../c", "./a:b:c:d", "../up:/x",
	} {
		want, wantErr := format.ParseVolume(spec)
		got, gotErr := parseVolumeSpec(spec)
		if (gotErr == nil) != (wantErr == nil) {
			t.Errorf("%q: error %v; compose-go %v", spec, gotErr, wantErr)
			continue
		}
		if wantErr != nil {
			continue
		}
		create := want.Bind != nil && bool(want.Bind.CreateHostPath)
		if want.Target != "" {
			want.Target = filepath.Clean(want.Target) // compose cleans it when it reads the file
		}
		if got.typ != want.Type || got.source != want.Source || got.target != want.Target || got.readOnly != want.ReadOnly || got.createHostPath != create {
			t.Errorf("%q: got %+v; compose-go %+v", spec, got, want)
		}
	}
	for _, spec := range []string{"", ":/x", "./a:/b:ro:z", "./a::/b"} {
		_, gotErr := parseVolumeSpec(spec)
		if _, wantErr := format.ParseVolume(spec); wantErr == nil || gotErr == nil {
			t.Errorf("%q: error %v; compose-go %v", spec, gotErr, wantErr)
		}
	}
}
