package compose

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/compose-spec/compose-go/v2/cli"
	interp "github.com/compose-spec/compose-go/v2/interpolation"
	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/template"
	"github.com/compose-spec/compose-go/v2/types"
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
	Line    int     `json:"line,omitempty"` // 0 when compose-go's merge hides where it came from
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
	subst := substituter(false)
	project, err := o.load(files, subst)
	if err != nil {
		// An unset variable may have left an empty path (":/root/.claude"):
		// compose would stop there; the check tries again with every unset
		// variable as a placeholder path, and reports the first error only
		// if that fails too.
		subst = substituter(true)
		var retryErr error
		if project, retryErr = o.load(files, subst); retryErr != nil {
			return nil, &LoadError{Files: files, Err: err}
		}
	}
	lines, err := readLines(files, lookup(project.Environment), subst)
	if err != nil {
		return nil, &LoadError{Files: files, Err: err}
	}
	c := checker{project: project, lines: lines, copyDirs: o.CopyDirs, overrides: o.Overrides}
	services := map[string]types.ServiceConfig{}
	for name, s := range project.DisabledServices {
		services[name] = s // behind a profile: still started by someone
	}
	for name, s := range project.Services {
		services[name] = s
	}
	for _, name := range sortedKeys(services) {
		c.service(name, services[name])
	}
	order := map[string]int{}
	for i, f := range files {
		order[f] = i + 1
	}
	sort.SliceStable(c.findings, func(i, j int) bool {
		a, b := c.findings[i], c.findings[j]
		if a.File != b.File {
			return order[a.File] < order[b.File] // in -f order, as compose reads them
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

func (o CheckOptions) load(files []string, subst substitute) (*types.Project, error) {
	env := o.Env
	if env == nil {
		env = map[string]string{}
		for _, kv := range os.Environ() {
			if k, v, ok := strings.Cut(kv, "="); ok {
				env[k] = v
			}
		}
	}
	var envList []string
	for k, v := range env {
		envList = append(envList, k+"="+v)
	}
	opts, err := cli.NewProjectOptions(files,
		cli.WithWorkingDirectory(o.ProjectDir),
		cli.WithEnv(envList),
		cli.WithEnvFiles(),
		cli.WithDotEnv,
		// The check needs mounts, not the containers' environment: a
		// missing env_file or label_file must not stop it.
		cli.WithoutEnvironmentResolution,
		cli.WithoutLabelsResolution,
		cli.WithLoadOptions(func(lo *loader.Options) {
			if lo.Interpolate == nil {
				return // the options also pass through file reading
			}
			in := *lo.Interpolate
			in.Substitute = subst
			lo.Interpolate = &in
		}),
	)
	if err != nil {
		return nil, err
	}
	return opts.LoadProject(context.Background())
}

// unsetMarker stands in for an unset variable that compose would stop on:
// a required one (${VAR:?message}), and on the second try any. It is an
// absolute path so that a short-syntax mount stays a bind mount, and the
// missing-source check skips paths that hold it.
const unsetMarker = "/mc-broker-unset-variable-"

type substitute = func(string, template.Mapping) (string, error)

// substituter interpolates like compose, without its warnings. Defaults
// (${VAR:-x}) apply as in compose; an unset required variable becomes
// unsetMarker+NAME; any other unset variable becomes empty, as in compose,
// or with all, unsetMarker+NAME.
func substituter(all bool) substitute {
	replace := func(sub string, m template.Mapping, cfg *template.Config) (string, error) {
		v, found, err := template.DefaultReplacementAppliedFunc(sub, m, cfg)
		var required *template.MissingRequiredError
		switch {
		case errors.As(err, &required):
			return unsetMarker + required.Variable, nil
		case err == nil && !found && all:
			return unsetMarker + strings.Trim(sub, "${}"), nil
		}
		return v, err
	}
	return func(s string, m template.Mapping) (string, error) {
		return template.SubstituteWithOptions(s, m, template.WithoutLogging, template.WithReplacementFunction(replace))
	}
}

func lookup(env types.Mapping) interp.LookupValue {
	return func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	}
}

// Names that make a mount a credential mount.
var (
	loginFiles = map[string]string{
		".credentials.json": "claude",
		"auth.json":         "codex",
		"oauth_creds.json":  "gemini",
	}
	configDirs = map[string]string{".claude": "claude", ".codex": "codex", ".gemini": "gemini"}
	// authVolume matches the names users (and mc-broker) give login volumes.
	authVolume = regexp.MustCompile(`^mc-.+-auth$`)
)

type checker struct {
	project   *types.Project
	lines     *lineMap
	copyDirs  []string
	overrides map[string]string
	findings  []Finding
	reported  map[string]bool // volumes already reported as not external
	// mounted holds, while a service is checked, the CLIs whose login it
	// mounts ("" for a copy directory of an unknown CLI).
	mounted map[string]bool
}

func (c *checker) add(service, target string, p Problem, msg, fix string) {
	file, line := c.lines.volume(service, target)
	c.findings = append(c.findings, Finding{File: file, Line: line, Service: service, Problem: p, Message: msg, Fix: fix})
}

func (c *checker) service(name string, s types.ServiceConfig) {
	c.mounted = map[string]bool{}
	for _, v := range s.Volumes {
		switch v.Type {
		case types.VolumeTypeBind:
			c.bind(name, v)
		case types.VolumeTypeVolume:
			c.volume(name, v)
		}
	}
	for _, sec := range s.Secrets {
		def, ok := c.project.Secrets[sec.Source]
		if !ok || def.File == "" {
			continue
		}
		if cli, ok := loginFiles[filepath.Base(def.File)]; ok {
			c.mounted[cli] = true
			file, line := c.lines.secret(name, sec.Source)
			c.findings = append(c.findings, Finding{
				File: file, Line: line, Service: name, Problem: SingleFile,
				Message: fmt.Sprintf("secret %s hands %s's login file %s to the container as a single file: it goes stale when %s refreshes, and the CLI inside cannot write its refreshed login", sec.Source, cli, def.File, cli),
				Fix:     fmt.Sprintf("drop the secret and mount the copy directory read-write as %s's config directory (mc-broker compose writes that override)", cli),
			})
		}
	}
	c.environment(name, s)
}

func (c *checker) bind(service string, v types.ServiceVolumeConfig) {
	src := v.Source
	st, statErr := os.Stat(src)
	exists := statErr == nil
	cli, isFile := loginFiles[path.Base(v.Target)]
	if !isFile {
		cli, isFile = loginFiles[filepath.Base(src)]
		isFile = isFile && !(exists && st.IsDir())
	}
	if isFile {
		c.mounted[cli] = true
		c.add(service, v.Target, SingleFile,
			fmt.Sprintf("%s is bind-mounted on its own at %s: the container keeps the old login after %s refreshes on the host (the file is replaced by rename), and a refresh inside fails (EBUSY)", src, v.Target, cli),
			fmt.Sprintf("mount the directory that holds it, read-write, as %s's config directory: e.g. `mc-broker sync --dir .auth` and `- ./.auth/%s:%s`", cli, cli, path.Dir(v.Target)))
		return
	}
	cli, isDir := c.credentialDir(src, v.Target)
	if !isDir {
		return
	}
	if _, known := configDirsByCLI[cli]; known {
		c.mounted[cli] = true
	} else {
		c.mounted[""] = true
	}
	if v.ReadOnly {
		c.add(service, v.Target, ReadOnly,
			fmt.Sprintf("%s's config directory %s is mounted read-only: %s cannot save a refreshed login, and the old refresh token is already spent", cli, v.Target, cli),
			"remove :ro / read_only: true from this mount")
	}
	if !exists && errors.Is(statErr, fs.ErrNotExist) && !strings.Contains(src, unsetMarker) {
		msg := fmt.Sprintf("%s, mounted at %s for %s, does not exist: ", src, v.Target, cli)
		if v.Bind != nil && bool(v.Bind.CreateHostPath) {
			msg += "compose creates it as an empty directory owned by root, and " + cli + " starts logged out"
		} else {
			msg += "`up` stops with an error"
		}
		c.add(service, v.Target, MissingSource, msg,
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

func (c *checker) volume(service string, v types.ServiceVolumeConfig) {
	if v.Source == "" {
		return // anonymous: nothing to declare
	}
	def := c.project.Volumes[v.Source]
	cli, isDir := configDirs[path.Base(v.Target)]
	named := authVolume.MatchString(v.Source) || authVolume.MatchString(def.Name)
	if !isDir && !named {
		return
	}
	if !isDir {
		cli = "the CLI"
		c.mounted[""] = true
	} else {
		c.mounted[cli] = true
	}
	if v.ReadOnly {
		c.add(service, v.Target, ReadOnly,
			fmt.Sprintf("volume %s, %s's config directory at %s, is mounted read-only: %s cannot save a refreshed login, and the old refresh token is already spent", v.Source, cli, v.Target, cli),
			"remove :ro / read_only: true from this mount")
	}
	if !bool(def.External) && !c.reported[v.Source] {
		if c.reported == nil {
			c.reported = map[string]bool{}
		}
		c.reported[v.Source] = true
		file, line := c.lines.topVolume(v.Source)
		if line == 0 {
			file, line = c.lines.volume(service, v.Target)
		}
		name := def.Name
		if name == "" {
			name = v.Source
		}
		c.findings = append(c.findings, Finding{
			File: file, Line: line, Service: service, Problem: NotExternal,
			Message: fmt.Sprintf("volume %s holds %s's login but is not external: compose owns it as %s, and `docker compose down -v` deletes it", v.Source, cli, name),
			Fix:     fmt.Sprintf("declare it under the top-level volumes: as `%s: {external: true}` and let mc-broker create and fill it", v.Source),
		})
	}
}

var configDirsByCLI = map[string]string{"claude": ".claude", "codex": ".codex", "gemini": ".gemini"}

// environment reports the variables a service sets (in environment:,
// not env_file:, which is not read) that make a CLI whose login it mounts
// ignore that login. Names only: the values are never read into a
// message.
func (c *checker) environment(service string, s types.ServiceConfig) {
	if len(c.mounted) == 0 {
		return
	}
	names := make([]string, 0, len(s.Environment))
	for name := range s.Environment {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		cli, ok := c.overrides[name]
		if !ok || !(c.mounted[cli] || c.mounted[""]) {
			continue
		}
		file, line := c.lines.env(service, name)
		c.findings = append(c.findings, Finding{
			File: file, Line: line, Service: service, Problem: LoginOverride,
			Message: fmt.Sprintf("sets %s (value not shown), which %s uses instead of the login the service mounts: that login is ignored, and %s may bill or log in as someone else", name, cli, cli),
			Fix:     fmt.Sprintf("remove %s from this service's environment (and check its env_file), or drop the login mount if the key is what you want", name),
		})
	}
}
