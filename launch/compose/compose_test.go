package compose

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// tree writes files (path relative to a temp dir -> content; a name ending
// in / is a directory) and returns the directory.
func tree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if strings.HasSuffix(name, "/") {
			if err := os.MkdirAll(p, 0o700); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		writeFile(t, p, content)
	}
	return dir
}

// composeCase is a project, how the check is run on it, and what it must
// find: the summary lines, and words each finding's message must hold.
type composeCase struct {
	name  string
	files map[string]string
	env   map[string]string
	args  []string // compose files, relative to the project
	dir   string   // --project-directory, relative to the project
	want  string
	msgs  []string // substrings of the messages, in finding order; $DIR is the project
}

func (c composeCase) run(t *testing.T) {
	t.Helper()
	dir := tree(t, c.files)
	var files []string
	for _, a := range c.args {
		files = append(files, filepath.Join(dir, a))
	}
	o := CheckOptions{Env: c.env}
	if o.Env == nil {
		o.Env = map[string]string{}
	}
	if c.dir != "" {
		o.ProjectDir = filepath.Join(dir, c.dir)
	}
	fs, err := o.Check(files...)
	if err != nil {
		t.Fatal(err)
	}
	if got := summary(fs); got != c.want {
		t.Errorf("findings:\n%s\nwant:\n%s", got, c.want)
	}
	for i, m := range c.msgs {
		m = strings.ReplaceAll(m, "$DIR", dir)
		if i >= len(fs) || !strings.Contains(fs[i].Message, m) {
			t.Errorf("finding %d does not say %q: %+v", i, m, fs)
		}
	}
}

// composeCases are the compose features that decide which mounts a
// service gets. TestLoaderAgreesWithComposeGo loads each with compose-go
// too.
var composeCases = []composeCase{{
	name: "extends in the same file",
	files: map[string]string{"auth/codex/": "", "compose.yaml": `services:
  base:
    image: x
    volumes:
      - ./auth/codex:/root/.codex:ro
  app:
    extends: base
`},
	args: []string{"compose.yaml"},
	// The inherited mount is reported where it is written.
	want: "compose.yaml:5 app read-only\ncompose.yaml:5 base read-only",
}, {
	name: "extends from another file resolves paths against that file",
	files: map[string]string{"compose.yaml": `services:
  app:
    image: x
    extends:
      file: common/base.yaml
      service: agent
`, "common/base.yaml": `services:
  agent:
    image: y
    volumes:
      - ./creds/.credentials.json:/root/.claude/.credentials.json
`},
	args: []string{"compose.yaml"},
	want: "base.yaml:5 app single-file-mount",
	msgs: []string{"$DIR/common/creds/.credentials.json is bind-mounted on its own"},
}, {
	name: "include brings services, their paths and their .env",
	files: map[string]string{"compose.yaml": `include:
  - sub/compose.sub.yaml
services:
  app:
    image: x
`, "sub/compose.sub.yaml": `services:
  db:
    image: x
    volumes:
      - ${CODEX:?}:/root/.codex:ro
`, "sub/.env": "CODEX=./codex\n", "sub/codex/": ""},
	args: []string{"compose.yaml"},
	want: "compose.sub.yaml:5 db read-only",
}, {
	name: "a service behind a profile is still checked",
	files: map[string]string{"compose.yaml": `services:
  debug:
    image: x
    profiles: [debug]
    volumes:
      - ./auth/.credentials.json:/root/.claude/.credentials.json
`},
	args: []string{"compose.yaml"},
	want: "compose.yaml:6 debug single-file-mount",
}, {
	name: "the project's .env, with export, quotes and references",
	files: map[string]string{".env": "# where the copies are\nBASE=./nowhere\nexport AUTH=\"${BASE}/claude\" # inline\nRO='ro'\n",
		"compose.yaml": `services:
  app:
    image: x
    volumes:
      - ${AUTH}:/root/.claude:${RO}
`},
	args: []string{"compose.yaml"},
	want: "compose.yaml:5 app missing-source\ncompose.yaml:5 app read-only",
	msgs: []string{"$DIR/nowhere/claude, mounted at /root/.claude for claude, does not exist"},
}, {
	name: "the environment wins over .env",
	files: map[string]string{".env": "AUTH=./nowhere\n", "auth/claude/": "", "compose.yaml": `services:
  app:
    image: x
    volumes:
      - ${AUTH}:/root/.claude
`},
	env:  map[string]string{"AUTH": "./auth/claude"},
	args: []string{"compose.yaml"},
	want: "",
}, {
	name: "--project-directory: relative paths and .env from there",
	files: map[string]string{"files/compose.yaml": `services:
  app:
    image: x
    volumes:
      - ${CODEX}:/root/.codex
`, "proj/.env": "CODEX=./codex\n"},
	args: []string{"files/compose.yaml"},
	dir:  "proj",
	want: "compose.yaml:5 app missing-source",
	msgs: []string{"$DIR/proj/codex, mounted at"},
}, {
	name: "an override in another directory resolves against the project",
	files: map[string]string{"compose.yaml": "services:\n  app:\n    image: x\n",
		"over/override.yaml": "services:\n  app:\n    volumes:\n      - ./codex:/root/.codex\n"},
	args: []string{"compose.yaml", "over/override.yaml"},
	want: "override.yaml:4 app missing-source",
	msgs: []string{"$DIR/codex, mounted at"},
}, {
	name: "documents in one file merge like files",
	files: map[string]string{"auth/codex/": "", "compose.yaml": `services:
  app:
    image: x
    volumes:
      - ./auth/codex:/root/.codex:ro
      - ./auth/claude:/root/.claude:ro
---
services:
  app:
    volumes:
      - ./auth/codex:/root/.codex
`},
	args: []string{"compose.yaml"},
	want: "compose.yaml:6 app missing-source\ncompose.yaml:6 app read-only",
}, {
	name: "anchors, aliases and merge keys",
	files: map[string]string{"auth/codex/": "", "compose.yaml": `x-logins: &logins
  volumes: &mounts
    - ./auth/codex:/root/.codex:ro
services:
  app:
    <<: *logins
    image: x
  web:
    image: x
    volumes: *mounts
`},
	args: []string{"compose.yaml"},
	want: "compose.yaml:3 app read-only\ncompose.yaml:3 web read-only",
}, {
	name: "!reset drops what earlier files mount",
	files: map[string]string{"auth/codex/": "", "compose.yaml": `services:
  app:
    image: x
    volumes:
      - ./auth/codex:/root/.codex:ro
`, "override.yaml": "services:\n  app:\n    volumes: !reset []\n"},
	args: []string{"compose.yaml", "override.yaml"},
	want: "",
}, {
	name: "!override replaces instead of merging",
	files: map[string]string{"auth/codex/": "", "compose.yaml": `services:
  app:
    image: x
    volumes:
      - ./auth/codex:/root/.codex:ro
`, "override.yaml": `services:
  app:
    volumes: !override
      - ./auth/.credentials.json:/root/.claude/.credentials.json
`},
	args: []string{"compose.yaml", "override.yaml"},
	want: "override.yaml:4 app single-file-mount",
}, {
	name: "the last mount of a target wins",
	files: map[string]string{"auth/codex/": "", "compose.yaml": `services:
  app:
    image: x
    volumes:
      - ./auth/codex:/root/.codex/:ro
      - type: bind
        source: ./auth/codex
        target: /root/.codex
`},
	args: []string{"compose.yaml"},
	want: "",
}, {
	name: "mount options and interpolated booleans",
	files: map[string]string{"auth/codex/": "", "auth/gemini/": "", "auth/claude/": "", "compose.yaml": `services:
  app:
    image: x
    volumes:
      - ./auth/codex:/root/.codex/:ro,z
      - ./auth/gemini:/root/.gemini:z
      - type: bind
        source: ./auth/claude
        target: /root/.claude
        read_only: ${RO:-true}
      - type: bind
        source: ./gone/.claude
        target: /home/u/.claude
        read_only: "yes"
        bind:
          create_host_path: ${CREATE:-true}
`},
	args: []string{"compose.yaml"},
	want: "compose.yaml:5 app read-only\ncompose.yaml:7 app read-only\ncompose.yaml:11 app missing-source\ncompose.yaml:11 app read-only",
	msgs: []string{"/root/.codex", "/root/.claude", "empty directory owned by root"},
}, {
	name: "volume names, external and the project name",
	files: map[string]string{"compose.yaml": `name: Team_Proj
services:
  app:
    image: x
    volumes:
      - logins:/data
      - codex:/root/.codex
      - legacy:/root/.gemini
volumes:
  logins:
    name: mc-claude-auth
  codex: {}
  legacy:
    external:
      name: mc-gemini-auth
`},
	args: []string{"compose.yaml"},
	want: "compose.yaml:10 app volume-not-external\ncompose.yaml:12 app volume-not-external",
	msgs: []string{"compose owns it as mc-claude-auth", "compose owns it as team_proj_codex"},
}, {
	name:  "COMPOSE_PROJECT_NAME names the project",
	files: map[string]string{"compose.yaml": "name: ignored\nservices:\n  app:\n    image: x\n    volumes: [codex:/root/.codex]\nvolumes:\n  codex:\n"},
	env:   map[string]string{"COMPOSE_PROJECT_NAME": "mine"},
	args:  []string{"compose.yaml"},
	want:  "compose.yaml:7 app volume-not-external",
	msgs:  []string{"compose owns it as mine_codex"},
}, {
	name: "secrets, short and long",
	files: map[string]string{"compose.yaml": `services:
  app:
    image: x
    secrets:
      - source: creds
        target: /run/creds
      - token
secrets:
  creds:
    file: ./auth/oauth_creds.json
  token:
    environment: TOKEN
`},
	args: []string{"compose.yaml"},
	want: "compose.yaml:5 app single-file-mount",
	msgs: []string{"$DIR/auth/oauth_creds.json"},
}, {
	name: "~ is the user's home",
	files: map[string]string{"compose.yaml": `services:
  app:
    image: x
    volumes:
      - ~/.codex:/root/.codex:ro
`},
	args: []string{"compose.yaml"},
	want: "compose.yaml:5 app missing-source\ncompose.yaml:5 app read-only",
	msgs: []string{"/home-of-the-test/.codex"},
}}

// Each compose feature the check relies on, read as `docker compose`
// reads it.
func TestCheckReadsComposeLikeCompose(t *testing.T) {
	for _, c := range composeCases {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv("HOME", "/home-of-the-test")
			c.run(t)
		})
	}
}

// refusedFiles are compose files compose refuses, and a word the check's
// error must say.
var refusedFiles = []struct{ name, file, want string }{
	{"undefined volume", "services:\n  app:\n    image: x\n    volumes: [logins:/root/.claude]\n", "undefined volume logins"},
	{"undefined secret", "services:\n  app:\n    image: x\n    secrets: [creds]\n", "undefined secret creds"},
	{"secret without a source", "services:\n  app:\n    image: x\n    secrets: [creds]\nsecrets:\n  creds: {}\n", "creds"},
	{"too many colons", "services:\n  app:\n    image: x\n    volumes: ['./a:/b:ro:z']\n", "too many colons"},
	{"bind without a source", "services:\n  app:\n    image: x\n    volumes: [{type: bind, target: /x}]\n", "source"},
	{"long syntax without a type", "services:\n  app:\n    image: x\n    volumes: [{source: ./a, target: /x}]\n", "type"},
	{"a mount that is a number", "services:\n  app:\n    image: x\n    volumes: [12]\n", "volumes"},
	{"a misspelt mount key", "services:\n  app:\n    image: x\n    volumes: [{type: bind, source: ./a, target: /root/.claude, readonly: true}]\n", "readonly"},
	{"a misspelt service key", "services:\n  app:\n    image: x\n    volume: [./a:/root/.claude]\n", "volume"},
	{"a misspelt top-level key", "service:\n  app:\n    image: x\n", "service"},
	{"a duplicate key", "services:\n  app:\n    image: x\n  app:\n    image: y\n", "app"},
	{"a bad template", "services:\n  app:\n    image: x\n    command: echo ${\n", "$$"},
	{"a bad boolean", "services:\n  app:\n    image: x\n    volumes: [{type: bind, source: ./a, target: /x, read_only: maybe}]\n", "maybe"},
	{"an empty file", "", "empty"},
	{"a list at the top", "- services\n", "mapping"},
	{"extends of a missing service", "services:\n  app:\n    image: x\n    extends: nothing\n", "nothing"},
	{"extends of a missing file", "services:\n  app:\n    image: x\n    extends: {file: gone.yaml, service: a}\n", "gone.yaml"},
	{"include of a missing file", "include: [gone.yaml]\nservices:\n  app:\n    image: x\n", "gone.yaml"},
	{"an include cycle", "include: [compose.yaml]\nservices:\n  app:\n    image: x\n", "cycle"},
	{"an extends cycle", "services:\n  a:\n    image: x\n    extends: b\n  b:\n    image: x\n    extends: a\n", "extends"},
	{"aliases that expand without end", "x-a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\nx-b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nx-c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n" +
		"x-d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\nx-e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nx-f: [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\nservices: {}\n", "aliases"},
}

// What compose refuses, the check refuses too: exit 2, not a clean pass.
func TestCheckRefusesWhatComposeRefuses(t *testing.T) {
	for _, tt := range refusedFiles {
		t.Run(tt.name, func(t *testing.T) {
			dir := tree(t, map[string]string{"compose.yaml": tt.file})
			_, err := CheckOptions{Env: map[string]string{}}.Check(filepath.Join(dir, "compose.yaml"))
			var le *LoadError
			if !errors.As(err, &le) {
				t.Fatalf("err = %v, want a *LoadError", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}

// The name checks are the patterns they replace, written as loops so that
// nothing compiles at package initialisation.
func TestNameChecksMatchTheirPatterns(t *testing.T) {
	name := regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._-]*$`)
	auth := regexp.MustCompile(`^mc-.+-auth$`)
	for _, s := range []string{"", "a", "A9", "app.web_1-x", "-a", ".a", "_a", "a b", "a/b", "é", "mc-claude-auth", "mc--auth",
		"mc-auth", "mc-a-auth-auth", "xmc-a-auth", "mc-a-authx", "mc-\n-auth", "mc-é-auth"} {
		if got, want := isName(s), name.MatchString(s); got != want {
			t.Errorf("isName(%q) = %v, want %v", s, got, want)
		}
		if got, want := isAuthVolume(s), auth.MatchString(s); got != want {
			t.Errorf("isAuthVolume(%q) = %v, want %v", s, got, want)
		}
	}
}
