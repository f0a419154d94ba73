// Package service installs `mc-broker watch` as a background service under
// the user's service manager: a systemd user unit on Linux, a launchd
// LaunchAgent on macOS. It writes the unit or plist file and drives the
// service manager through a Runner, so tests run both variants on any
// platform with a recording fake instead of systemctl and launchctl.
package service

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/mc-broker/mc-broker/broker/atomicfile"
)

const (
	// Label is the launchd label of the LaunchAgent, reverse-DNS after the
	// project's home, github.com/mc-broker; "watch" names what it runs.
	Label = "io.github.mc-broker.watch"
	// Unit is the systemd user unit's name.
	Unit = "mc-broker.service"
	// DocsURL is where the service files point for documentation.
	DocsURL = "https://github.com/mc-broker/mc-broker/blob/main/docs/SERVICE.md"
)

// Managers by name, as Status.Manager and Plan.Manager report them.
const (
	Systemd = "systemd"
	Launchd = "launchd"
)

// Service states, as Status.State reports them.
const (
	StateRunning = "running"
	StateStopped = "stopped"
	StateUnknown = "unknown" // the service manager could not be asked
)

// CarriedEnv are the variables install copies from its own environment
// into the service's, when set: neither launchd nor the systemd user
// manager passes on the login shell's environment, and these decide where
// the CLIs keep their logins, where mc-broker keeps its files, and which
// Docker engine it talks to. Path values are made absolute.
var CarriedEnv = []string{
	"CLAUDE_CONFIG_DIR", "CODEX_HOME", "GEMINI_CLI_HOME",
	// Which Keychain item holds Claude's login, and whether Gemini's is in
	// the Keychain at all (config.Source.StoreFor, KeychainItem). Claude
	// hashes CLAUDE_SECURESTORAGE_CONFIG_DIR as written: carried verbatim.
	"CLAUDE_SECURESTORAGE_CONFIG_DIR", "GEMINI_FORCE_ENCRYPTED_FILE_STORAGE",
	"XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME",
	"DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_CONFIG", "DOCKER_CERT_PATH", "DOCKER_TLS_VERIFY",
}

// pathEnv are the CarriedEnv variables that hold a path.
var pathEnv = map[string]bool{
	"CLAUDE_CONFIG_DIR": true, "CODEX_HOME": true, "GEMINI_CLI_HOME": true,
	"XDG_CONFIG_HOME": true, "XDG_DATA_HOME": true, "XDG_STATE_HOME": true,
	"DOCKER_CONFIG": true, "DOCKER_CERT_PATH": true,
}

// Options say what to install and where.
type Options struct {
	GOOS   string              // "linux" or "darwin"; runtime.GOOS when empty
	Home   string              // the user's home directory
	Getenv func(string) string // XDG_CONFIG_HOME and CarriedEnv
	UID    int                 // names launchd's gui/<uid> domain
	// Binary is the absolute path of the mc-broker the service runs (see
	// ResolveBinary).
	Binary string
	// ConfigFile, when set, is passed on as `watch --config FILE`; empty
	// leaves watch to find its config as it always does.
	ConfigFile string
	Runner     Runner // ExecRunner when nil
	// TempDirs are where a binary does not last (see TransientBinary);
	// Status warns about a service that runs one. The CLI passes
	// TempDirs(); none when empty.
	TempDirs []string
}

// Service is the background service of one user on one platform.
type Service struct {
	opts Options
	b    backend
}

// backend is what differs between systemd and launchd.
type backend interface {
	manager() string
	file() string
	render(args []string, env []envVar) ([]byte, error)
	// program reads the command line back from a file render wrote.
	program(data []byte) ([]string, error)
	// probe asks the service manager about the service; an error means
	// the manager could not be asked (*ManagerUnavailableError).
	probe(ctx context.Context) (probe, error)
	installSteps() []Step
	uninstallSteps() []Step
	logs() Logs
}

type probe struct {
	loaded  bool // launchd: in the gui domain; systemd: active
	running bool
	detail  string
	pid     int
}

type envVar struct{ name, value string }

// New checks the options and picks the service manager for GOOS.
func New(opts Options) (*Service, error) {
	if opts.GOOS == "" {
		opts.GOOS = runtime.GOOS
	}
	if opts.Runner == nil {
		opts.Runner = ExecRunner{}
	}
	if opts.Getenv == nil {
		opts.Getenv = func(string) string { return "" }
	}
	if !filepath.IsAbs(opts.Home) {
		return nil, fmt.Errorf("home directory %q is not an absolute path (set HOME)", opts.Home)
	}
	if !filepath.IsAbs(opts.Binary) {
		return nil, fmt.Errorf("mc-broker binary %q is not an absolute path", opts.Binary)
	}
	if opts.ConfigFile != "" && !filepath.IsAbs(opts.ConfigFile) {
		return nil, fmt.Errorf("config file %q is not an absolute path", opts.ConfigFile)
	}
	s := &Service{opts: opts}
	switch opts.GOOS {
	case "linux":
		s.b = &systemd{s: s}
	case "darwin":
		s.b = &launchd{s: s}
	default:
		return nil, &UnsupportedError{GOOS: opts.GOOS}
	}
	return s, nil
}

// Manager is Systemd or Launchd.
func (s *Service) Manager() string { return s.b.manager() }

// File is the unit file or plist the service lives in.
func (s *Service) File() string { return s.b.file() }

// Logs says where the service's output goes.
func (s *Service) Logs() Logs { return s.b.logs() }

// Args is the command line the service runs.
func (s *Service) Args() []string { return s.argsFor(s.opts.ConfigFile) }

func (s *Service) argsFor(config string) []string {
	args := []string{s.opts.Binary, "watch"}
	if config != "" {
		args = append(args, "--config", config)
	}
	return args
}

// Content is the unit file or plist that Install writes.
func (s *Service) Content() ([]byte, error) {
	return s.b.render(s.Args(), s.env())
}

func (s *Service) env() []envVar {
	var env []envVar
	for _, name := range CarriedEnv {
		v := s.opts.Getenv(name)
		if v == "" {
			continue
		}
		if pathEnv[name] && !filepath.IsAbs(v) {
			if strings.HasPrefix(name, "XDG_") {
				continue // the XDG spec says to ignore relative values
			}
			if abs, err := filepath.Abs(v); err == nil {
				v = abs
			}
		}
		env = append(env, envVar{name, v})
	}
	return env
}

// Logs is where the service's output goes: a command that shows it
// (systemd's journal) or files (launchd).
type Logs struct {
	Command []string `json:"command,omitempty"`
	Files   []string `json:"files,omitempty"`
}

func (l Logs) String() string {
	if len(l.Command) > 0 {
		return strings.Join(l.Command, " ")
	}
	return strings.Join(l.Files, ", ")
}

// Step is one thing Install or Uninstall does: run a command, write the
// service file or remove it.
type Step struct {
	Argv   []string `json:"argv,omitempty"`
	Write  string   `json:"write,omitempty"`
	Remove string   `json:"remove,omitempty"`
	// When is the condition under which the step runs ("if loaded"); empty
	// when it always runs.
	When string `json:"when,omitempty"`
	// waitUnloaded polls the service manager after the command until the
	// service is gone (launchctl bootout returns before it is).
	waitUnloaded bool
}

func (st Step) String() string {
	var s string
	switch {
	case st.Write != "":
		s = "write " + st.Write
	case st.Remove != "":
		s = "remove " + st.Remove
	default:
		s = shellJoin(st.Argv)
	}
	if st.When != "" {
		s += "   (" + st.When + ")"
	}
	return s
}

const whenLoaded = "if loaded"

// Plan is what Install or Uninstall would do, for --dry-run.
type Plan struct {
	Manager string `json:"manager"`
	File    string `json:"file"`
	// Change is what happens to File: "create", "update", "unchanged"
	// (install) or "remove", "absent" (uninstall).
	Change  string `json:"change"`
	Content string `json:"content,omitempty"`
	Steps   []Step `json:"steps"`
}

// InstallPlan says what Install would do, running nothing.
func (s *Service) InstallPlan() (*Plan, error) {
	content, err := s.Content()
	if err != nil {
		return nil, err
	}
	old, err := s.readFile()
	change := "create"
	switch {
	case err == nil && bytes.Equal(old, content):
		change = "unchanged"
	case err == nil:
		change = "update"
	case !errors.Is(err, fs.ErrNotExist):
		return nil, err
	}
	steps := append([]Step{{Write: s.File()}}, s.b.installSteps()...)
	return &Plan{Manager: s.Manager(), File: s.File(), Change: change, Content: string(content), Steps: steps}, nil
}

// UninstallPlan says what Uninstall would do, running nothing.
func (s *Service) UninstallPlan() (*Plan, error) {
	p := &Plan{Manager: s.Manager(), File: s.File(), Change: "remove", Steps: []Step{}}
	if _, err := os.Lstat(s.File()); errors.Is(err, fs.ErrNotExist) {
		p.Change = "absent"
		return p, nil
	} else if err != nil {
		return nil, err
	}
	p.Steps = s.b.uninstallSteps()
	return p, nil
}

// Result is what Install or Uninstall did.
type Result struct {
	Plan
	Ran  [][]string `json:"ran"` // the commands run, in order
	Logs Logs       `json:"logs"`
}

// Install writes the service file and (re)starts the service, so that
// running it again after an upgrade, or with another --config, puts the
// new binary and file in place. It asks the service manager first and
// writes nothing when that cannot be reached.
func (s *Service) Install(ctx context.Context) (*Result, error) {
	plan, err := s.InstallPlan()
	if err != nil {
		return nil, err
	}
	p, err := s.b.probe(ctx)
	if err != nil {
		return nil, err
	}
	return s.apply(ctx, plan, p)
}

// Uninstall stops the service and removes its file. Without a file there
// is nothing to do, and nothing is run. Log files are kept.
func (s *Service) Uninstall(ctx context.Context) (*Result, error) {
	plan, err := s.UninstallPlan()
	if err != nil {
		return nil, err
	}
	if plan.Change == "absent" {
		return &Result{Plan: *plan, Logs: s.Logs()}, nil
	}
	p, err := s.b.probe(ctx)
	if err != nil {
		return nil, err
	}
	return s.apply(ctx, plan, p)
}

func (s *Service) apply(ctx context.Context, plan *Plan, p probe) (*Result, error) {
	res := &Result{Plan: *plan, Ran: [][]string{}, Logs: s.Logs()}
	for _, st := range plan.Steps {
		switch {
		case st.When == whenLoaded && !p.loaded:
			continue
		case st.Write != "":
			if err := s.writeFile([]byte(plan.Content)); err != nil {
				return res, err
			}
		case st.Remove != "":
			if err := os.Remove(st.Remove); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return res, fmt.Errorf("removing %s: %w", st.Remove, err)
			}
		default:
			res.Ran = append(res.Ran, st.Argv)
			if _, err := s.opts.Runner.Run(ctx, st.Argv...); err != nil {
				return res, &ManagerError{Manager: s.Manager(), Err: err}
			}
			if st.waitUnloaded {
				if err := s.waitUnloaded(ctx); err != nil {
					return res, err
				}
			}
		}
	}
	return res, nil
}

// unloadTimeout bounds how long Install waits for launchd to let go of the
// old service; pollInterval is how often it asks.
var (
	unloadTimeout = 10 * time.Second
	pollInterval  = 100 * time.Millisecond
)

func (s *Service) waitUnloaded(ctx context.Context) error {
	deadline := time.Now().Add(unloadTimeout)
	for {
		p, err := s.b.probe(ctx)
		if err != nil {
			return err
		}
		if !p.loaded {
			return nil
		}
		if time.Now().After(deadline) {
			return &ManagerError{Manager: s.Manager(), Err: fmt.Errorf("the old service was still loaded %v after bootout", unloadTimeout)}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pollInterval):
		}
	}
}

func (s *Service) readFile() ([]byte, error) { return os.ReadFile(s.File()) }

// writeFile replaces the service file atomically: the service manager may
// read it at any moment (launchd at login, systemd on daemon-reload).
func (s *Service) writeFile(content []byte) error {
	dir := filepath.Dir(s.File())
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, d := range s.b.logs().Files {
		if err := os.MkdirAll(filepath.Dir(d), 0o755); err != nil {
			return err
		}
	}
	return atomicfile.Write(dir, filepath.Base(s.File()), content, atomicfile.Options{Mode: 0o644})
}

// Status is whether the service is installed and running.
type Status struct {
	Manager   string `json:"manager"`
	File      string `json:"file"`
	Installed bool   `json:"installed"`
	// Binary and Config are what the installed file runs.
	Binary string `json:"binary,omitempty"`
	Config string `json:"config,omitempty"`
	// UpToDate: the file is exactly what Install would write now.
	UpToDate bool `json:"up_to_date"`
	// State is StateRunning, StateStopped or StateUnknown; Detail says more
	// (systemd's state, launchd's, or why the manager could not be asked).
	State    string   `json:"state"`
	Detail   string   `json:"detail,omitempty"`
	PID      int      `json:"pid,omitempty"`
	Logs     Logs     `json:"logs"`
	Warnings []string `json:"warnings,omitempty"`
	// ManagerErr is why State is unknown.
	ManagerErr error `json:"-"`
}

// Status reads the service file and asks the service manager. It never
// fails: what it cannot find out, it reports as unknown or as a warning.
func (s *Service) Status(ctx context.Context) *Status {
	st := &Status{Manager: s.Manager(), File: s.File(), Logs: s.Logs(), State: StateUnknown}
	data, err := s.readFile()
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		st.Warnings = append(st.Warnings, fmt.Sprintf("cannot read %s: %v", st.File, err))
	default:
		st.Installed = true
		s.inspectFile(st, data)
	}
	p, err := s.b.probe(ctx)
	if err != nil {
		st.Detail, st.ManagerErr = err.Error(), err
		return st
	}
	st.State, st.Detail, st.PID = StateStopped, p.detail, p.pid
	if p.running {
		st.State = StateRunning
	}
	return st
}

func (s *Service) inspectFile(st *Status, data []byte) {
	args, err := s.b.program(data)
	if err != nil || len(args) == 0 {
		st.Warnings = append(st.Warnings, fmt.Sprintf("%s does not say what it runs (%v): run mc-broker launch install to rewrite it", st.File, err))
		return
	}
	st.Binary = args[0]
	for i, a := range args {
		if a == "--config" && i+1 < len(args) {
			st.Config = args[i+1]
		}
	}
	// Asked without a config, compare with the one the service runs: a
	// status must not need install's flags repeated.
	config := s.opts.ConfigFile
	if config == "" {
		config = st.Config
	}
	if want, err := s.b.render(s.argsFor(config), s.env()); err == nil && bytes.Equal(data, want) {
		st.UpToDate = true
	}
	installed, err := os.Stat(st.Binary)
	if err != nil {
		st.Warnings = append(st.Warnings, fmt.Sprintf("the service runs %s, which is not there any more (%v): run mc-broker launch install with the mc-broker you use now", st.Binary, errors.Unwrap(err)))
		return
	}
	if why := TransientBinary(st.Binary, s.opts.TempDirs); why != "" {
		st.Warnings = append(st.Warnings, "the service runs "+st.Binary+", "+why)
	}
	if self, err := os.Stat(s.opts.Binary); err == nil && !os.SameFile(installed, self) {
		st.Warnings = append(st.Warnings, fmt.Sprintf("the service runs %s, not this mc-broker (%s): run mc-broker launch install to switch to this one", st.Binary, s.opts.Binary))
		return
	}
	if !st.UpToDate {
		st.Warnings = append(st.Warnings, fmt.Sprintf("%s differs from what install would write now (config or environment changed, or a newer mc-broker): run mc-broker launch install to update it", st.File))
	}
}

// UnsupportedError: there is no service manager mc-broker knows on GOOS.
type UnsupportedError struct{ GOOS string }

func (e *UnsupportedError) Error() string {
	return fmt.Sprintf("no background service support on %s (only Linux with systemd and macOS with launchd)", e.GOOS)
}

// ManagerUnavailableError: the service manager could not be asked at all,
// for example `systemctl --user` in a container without a systemd user
// instance, or launchctl without a GUI login session.
type ManagerUnavailableError struct {
	Manager string
	Err     error // the failed query
}

func (e *ManagerUnavailableError) Error() string {
	what := "your systemd user instance (systemctl --user)"
	if e.Manager == Launchd {
		what = "your launchd GUI session (launchctl gui/<uid>)"
	}
	return fmt.Sprintf("cannot reach %s: %v", what, e.Err)
}

func (e *ManagerUnavailableError) Unwrap() error { return e.Err }

// ManagerError: the service manager refused a command during install or
// uninstall.
type ManagerError struct {
	Manager string
	Err     error // usually a *CommandError
}

func (e *ManagerError) Error() string { return fmt.Sprintf("%s: %v", e.Manager, e.Err) }

func (e *ManagerError) Unwrap() error { return e.Err }

// shellJoin renders argv for people to read and paste into a shell.
func shellJoin(argv []string) string {
	out := make([]string, len(argv))
	for i, a := range argv {
		out[i] = shellQuote(a)
	}
	return strings.Join(out, " ")
}

func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-+:@=,%") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
