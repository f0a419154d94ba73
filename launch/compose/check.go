package compose

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// Problem names what is wrong with a mount; the values are stable, for
// scripts reading --json.
type Problem string

const (
	// SingleFile: a login file bind-mounted on its own. The mount pins the
	// file's inode: when the host CLI refreshes and replaces the file by
	// rename, the container keeps the old, dead login, and the CLI inside
	// cannot replace the file either (rename onto a mount point: EBUSY).
	SingleFile Problem = "single-file-mount"
	// ReadOnly: a CLI config directory or copy mounted read-only. The CLI
	// cannot write its refreshed login, and the refresh token it used is
	// already dead.
	ReadOnly Problem = "read-only"
	// NotExternal: a credentials volume compose owns. `docker compose down
	// -v` deletes it, and with it the login.
	NotExternal Problem = "volume-not-external"
	// MissingSource: a credential bind-mount source that does not exist.
	// The short syntax creates it as an empty directory (the CLI starts
	// logged out, and the directory belongs to root); the long syntax
	// stops `up` with an error.
	MissingSource Problem = "missing-source"
	// LoginOverride: a service that mounts a login also sets a variable
	// that makes the CLI use another credential (an API key, a token of
	// its own): the mounted login is ignored without a word.
	LoginOverride Problem = "login-override"
)

// Finding is one problem in one mount of one service.
type Finding struct {
	File    string  `json:"file"`
	Line    int     `json:"line,omitempty"` // where the mount (or volume) is written
	Service string  `json:"service"`
	Problem Problem `json:"problem"`
	Message string  `json:"message"`
	Fix     string  `json:"fix"`
}

// String renders the finding as file:line: service: message.
func (f Finding) String() string {
	where := f.File
	if f.Line > 0 {
		where = fmt.Sprintf("%s:%d", f.File, f.Line)
	}
	return fmt.Sprintf("%s: service %s: %s", where, f.Service, f.Message)
}

// LoadError is a compose file that cannot be read or is not valid compose.
type LoadError struct {
	Files []string
	Err   error
}

func (e *LoadError) Error() string {
	return fmt.Sprintf("cannot load %s: %v", strings.Join(e.Files, ", "), e.Err)
}

func (e *LoadError) Unwrap() error { return e.Err }

// CheckOptions qualify a check; the zero value checks as `docker compose`
// would run in the first file's directory.
type CheckOptions struct {
	// Env holds the variables interpolated into the files; nil means the
	// process environment. A .env file in the project directory adds to it,
	// as it does for compose. Unset variables become empty, as in compose,
	// and ${VAR:?} does not fail the check.
	Env map[string]string
	// ProjectDir is what relative paths are resolved against; default: the
	// first file's directory, like compose without --project-directory.
	ProjectDir string
	// CopyDirs are mc-broker's copy directories: bind mounts of these are
	// credential mounts whatever their target.
	CopyDirs []string
	// Overrides maps each environment variable that beats a CLI's login
	// to that CLI (ANTHROPIC_API_KEY: claude, ...): a service that mounts
	// a login and sets one of them is reported, never the value.
	Overrides map[string]string
}

// Check reads the compose files, merged as `docker compose -f a -f b`
// merges them, and reports the mounts that lose or break logins.
func Check(files ...string) ([]Finding, error) {
	return CheckOptions{}.Check(files...)
}

// Check is Check with these options.
func (o CheckOptions) Check(files ...string) ([]Finding, error) {
	if len(files) == 0 {
		return nil, &LoadError{Err: errors.New("no compose file given")}
	}
	for _, f := range files {
		if st, err := os.Stat(f); err != nil {
			return nil, &LoadError{Files: []string{f}, Err: errors.Unwrap(err)}
		} else if !st.Mode().IsRegular() {
			return nil, &LoadError{Files: []string{f}, Err: errors.New("not a regular file")}
		}
	}
	project, err := o.loadProject(files, false)
	if err != nil {
		// An unset variable may have left an empty path (":/root/.claude"):
		// compose would stop there; the check tries again with every unset
		// variable as a placeholder path, and reports the first error only
		// if that fails too.
		var retryErr error
		if project, retryErr = o.loadProject(files, true); retryErr != nil {
			return nil, &LoadError{Files: files, Err: err}
		}
	}
	c := checker{project: project, copyDirs: o.CopyDirs, overrides: o.Overrides}
	for _, name := range sortedKeys(project.services) {
		c.service(name, project.services[name]) // behind a profile or not: someone starts it
	}
	order := map[string]int{}
	for i, f := range files {
		order[f] = i + 1
	}
	rank := func(file string) int {
		if r, ok := order[file]; ok {
			return r
		}
		return len(files) + 1 // an included or extended file
	}
	sort.SliceStable(c.findings, func(i, j int) bool {
		a, b := c.findings[i], c.findings[j]
		if a.File != b.File {
			if rank(a.File) != rank(b.File) {
				return rank(a.File) < rank(b.File) // in -f order, as compose reads them
			}
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		if a.Service != b.Service {
			return a.Service < b.Service
		}
		return a.Problem < b.Problem
	})
	return c.findings, nil
}

// Names that make a mount a credential mount.
var (
	loginFiles = map[string]string{
		".credentials.json": "claude",
		"auth.json":         "codex",
		"oauth_creds.json":  "gemini",
	}
	configDirs = map[string]string{".claude": "claude", ".codex": "codex", ".gemini": "gemini"}
)

// isAuthVolume matches the names users (and mc-broker) give login
// volumes: mc-<something>-auth.
func isAuthVolume(name string) bool {
	mid, ok := strings.CutPrefix(name, "mc-")
	mid, ok2 := strings.CutSuffix(mid, "-auth")
	return ok && ok2 && mid != "" && !strings.Contains(mid, "\n")
}

type checker struct {
	project   *project
	copyDirs  []string
	overrides map[string]string
	findings  []Finding
	reported  map[string]bool // volumes already reported as not external
	// mounted holds, while a service is checked, the CLIs whose login it
	// mounts ("" for a copy directory of an unknown CLI).
	mounted map[string]bool
}

func (c *checker) add(at pos, service string, p Problem, msg, fix string) {
	c.findings = append(c.findings, Finding{File: at.file, Line: at.line, Service: service, Problem: p, Message: msg, Fix: fix})
}

func (c *checker) service(name string, s *service) {
	c.mounted = map[string]bool{}
	for _, v := range s.mounts {
		switch v.typ {
		case "bind":
			c.bind(name, v)
		case "volume":
			c.volume(name, v)
		}
	}
	for _, sec := range s.secrets {
		def, ok := c.project.secrets[sec.source]
		if !ok || def.file == "" {
			continue
		}
		if cli, ok := loginFiles[filepath.Base(def.file)]; ok {
			c.mounted[cli] = true
			c.add(sec.pos, name, SingleFile,
				fmt.Sprintf("secret %s hands %s's login file %s to the container as a single file: it goes stale when %s refreshes, and the CLI inside cannot write its refreshed login", sec.source, cli, def.file, cli),
				fmt.Sprintf("drop the secret and mount the copy directory read-write as %s's config directory (mc-broker compose writes that override)", cli))
		}
	}
	c.environment(name, s)
}

func (c *checker) bind(service string, v mount) {
	src := v.source
	st, statErr := os.Stat(src)
	exists := statErr == nil
	cli, isFile := loginFiles[path.Base(v.target)]
	if !isFile {
		cli, isFile = loginFiles[filepath.Base(src)]
		isFile = isFile && !(exists && st.IsDir())
	}
	if isFile {
		c.mounted[cli] = true
		c.add(v.pos, service, SingleFile,
			fmt.Sprintf("%s is bind-mounted on its own at %s: the container keeps the old login after %s refreshes on the host (the file is replaced by rename), and a refresh inside fails (EBUSY)", src, v.target, cli),
			fmt.Sprintf("mount the directory that holds it, read-write, as %s's config directory: e.g. `mc-broker sync --dir .auth` and `- ./.auth/%s:%s`", cli, cli, path.Dir(v.target)))
		return
	}
	cli, isDir := c.credentialDir(src, v.target)
	if !isDir {
		return
	}
	if _, known := configDirsByCLI[cli]; known {
		c.mounted[cli] = true
	} else {
		c.mounted[""] = true
	}
	if v.readOnly {
		c.add(v.pos, service, ReadOnly,
			fmt.Sprintf("%s's config directory %s is mounted read-only: %s cannot save a refreshed login, and the old refresh token is already spent", cli, v.target, cli),
			"remove :ro / read_only: true from this mount")
	}
	if !exists && errors.Is(statErr, fs.ErrNotExist) && !strings.Contains(src, unsetMarker) {
		msg := fmt.Sprintf("%s, mounted at %s for %s, does not exist: ", src, v.target, cli)
		if v.createHostPath {
			msg += "compose creates it as an empty directory owned by root, and " + cli + " starts logged out"
		} else {
			msg += "`up` stops with an error"
		}
		c.add(v.pos, service, MissingSource, msg,
			"run `mc-broker sync` (or `mc-broker sync --dir DIR` for a project-local copy) before `up`, or correct the path")
	}
}

// credentialDir tells whether a mount of src at target holds a CLI's
// config directory or an mc-broker copy, and which CLI.
func (c *checker) credentialDir(src, target string) (string, bool) {
	if cli, ok := configDirs[path.Base(target)]; ok {
		return cli, true
	}
	if cli, ok := configDirs[filepath.Base(src)]; ok {
		return cli, true
	}
	for _, d := range c.copyDirs {
		if filepath.Clean(d) == filepath.Clean(src) {
			return "the CLI whose copy is in " + d, true
		}
	}
	for name, cli := range loginFiles {
		if st, err := os.Stat(filepath.Join(src, name)); err == nil && st.Mode().IsRegular() {
			return cli, true
		}
	}
	return "", false
}

func (c *checker) volume(service string, v mount) {
	if v.source == "" {
		return // anonymous: nothing to declare
	}
	def, declared := c.project.volumes[v.source]
	cli, isDir := configDirs[path.Base(v.target)]
	named := isAuthVolume(v.source) || isAuthVolume(def.name)
	if !isDir && !named {
		return
	}
	if !isDir {
		cli = "the CLI"
		c.mounted[""] = true
	} else {
		c.mounted[cli] = true
	}
	if v.readOnly {
		c.add(v.pos, service, ReadOnly,
			fmt.Sprintf("volume %s, %s's config directory at %s, is mounted read-only: %s cannot save a refreshed login, and the old refresh token is already spent", v.source, cli, v.target, cli),
			"remove :ro / read_only: true from this mount")
	}
	if !def.external && !c.reported[v.source] {
		if c.reported == nil {
			c.reported = map[string]bool{}
		}
		c.reported[v.source] = true
		at, name := def.pos, def.name
		if !declared { // a service behind a profile may name an undeclared volume
			at, name = v.pos, v.source
		}
		c.add(at, service, NotExternal,
			fmt.Sprintf("volume %s holds %s's login but is not external: compose owns it as %s, and `docker compose down -v` deletes it", v.source, cli, name),
			fmt.Sprintf("declare it under the top-level volumes: as `%s: {external: true}` and let mc-broker create and fill it", v.source))
	}
}

var configDirsByCLI = map[string]string{"claude": ".claude", "codex": ".codex", "gemini": ".gemini"}

// environment reports the variables a service sets (in environment:,
// not env_file:, which is not read) that make a CLI whose login it mounts
// ignore that login. Names only: the loader keeps no values.
func (c *checker) environment(service string, s *service) {
	if len(c.mounted) == 0 {
		return
	}
	for _, name := range sortedKeys(s.env) {
		cli, ok := c.overrides[name]
		if !ok || !(c.mounted[cli] || c.mounted[""]) {
			continue
		}
		c.add(s.env[name], service, LoginOverride,
			fmt.Sprintf("sets %s (value not shown), which %s uses instead of the login the service mounts: that login is ignored, and %s may bill or log in as someone else", name, cli, cli),
			fmt.Sprintf("remove %s from this service's environment (and check its env_file), or drop the login mount if the key is what you want", name))
	}
}
