// Package doctor checks a user's set-up and explains each problem with a
// fix: the sources, the copies, the Docker engine, the background service
// and, when asked, compose files. Every probe that reaches outside (the
// engine, the service manager, compose files) comes in as a function, so
// the checks run in tests against fakes and in the CLI against the real
// things.
package doctor

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/mc-broker/mc-broker/broker"
)

// Status is a check's verdict.
type Status string

const (
	OK   Status = "ok"
	Info Status = "info" // worth knowing, nothing to do
	Warn Status = "warn" // needs the user, nothing is lost yet
	Fail Status = "fail" // broken: a container will not have a working login
)

// Check is one finding.
type Check struct {
	Area   string `json:"area"` // config, source, copy, docker, service, compose
	Name   string `json:"name"`
	Status Status `json:"status"`
	Detail string `json:"detail"`
	Fix    string `json:"fix,omitempty"`
}

// Result is every check, in the order they were made.
type Result struct {
	Checks []Check `json:"checks"`
}

// NeedsAttention reports whether any check asks something of the user.
func (r *Result) NeedsAttention() bool {
	for _, c := range r.Checks {
		if c.Status == Warn || c.Status == Fail {
			return true
		}
	}
	return false
}

func (r *Result) add(c Check) { r.Checks = append(r.Checks, c) }

// Engine describes the Docker engine probe's answer.
type Engine struct {
	Endpoint string // unix:///var/run/docker.sock
	Context  string // the docker context it came from, if any
	Version  string
	Err      error
	// Agent is the static Linux binary the volume copies' resident agent
	// would run (docs/VOLUMES.md); AgentErr why there is none. Both empty:
	// not looked at.
	Agent    string
	AgentErr error
}

// Service describes the background service.
type Service struct {
	Installed, Running bool
	Detail             string // unit or plist path, binary
	Logs               string
	Err                error
	// Warnings are what launch status warns about: another binary, a file
	// install would now write differently.
	Warnings []string
	// Unreachable is why the service manager does not answer when no
	// service is installed: launch install cannot work here.
	Unreachable error
}

// Finding is a compose-file problem.
type Finding struct {
	Where   string // file:line
	Service string
	Problem string
	Fix     string
}

// Inputs are what the checks look at.
type Inputs struct {
	// ConfigErr is set when the config could not be loaded; nothing else
	// is checked then.
	ConfigErr error
	// ConfigFix replaces the generic fix for ConfigErr when the loader
	// knows better (a file MC_BROKER_CONFIG names that is not there).
	ConfigFix string
	// Status is a status pass over the config (nothing written).
	Status *broker.Report
	// Owners gives, per copy directory, the owner the config asks for.
	Owners map[string]Owner
	// VolumeCopies counts the configured volume copies: an unreachable
	// engine matters only when there are some.
	VolumeCopies int
	Engine       func(ctx context.Context) Engine
	Service      func(ctx context.Context) Service
	// WatcherRunning reports a watcher outside the service (mc-broker watch
	// or run in a terminal).
	WatcherRunning bool
	// Compose checks compose files, when the user named some.
	Compose      func(files []string) ([]Finding, error)
	ComposeFiles []string
	// Overrides is where to look for what silently beats a login; nil:
	// not checked.
	Overrides *OverrideSources
	Now       time.Time
}

// Owner is the configured owner of a copy (nil: the running user).
type Owner struct{ UID, GID *int }

// Run makes every check.
func Run(ctx context.Context, in Inputs) *Result {
	r := &Result{}
	if in.ConfigErr != nil {
		fix := in.ConfigFix
		if fix == "" {
			fix = "fix the config (the message names the line), or move it away to use the built-in defaults"
		}
		r.add(Check{Area: "config", Name: "config", Status: Fail, Detail: in.ConfigErr.Error(), Fix: fix})
		return r
	}
	if in.Status != nil {
		checkSources(r, in)
	}
	if in.Overrides != nil {
		checkOverrides(r, in.Overrides)
	}
	if in.Engine != nil {
		checkEngine(r, ctx, in)
	}
	if in.Service != nil {
		checkService(r, ctx, in)
	}
	if len(in.ComposeFiles) > 0 && in.Compose != nil {
		checkCompose(r, in)
	}
	return r
}

func checkSources(r *Result, in Inputs) {
	loggedIn := 0
	for _, s := range in.Status.Sources {
		c := Check{Area: "source", Name: s.Name}
		switch s.State {
		case broker.SourceValid:
			loggedIn++
			c.Status, c.Detail = OK, "logged in at "+s.Location+", "+s.Fingerprint
			if s.ExpiresAt != nil {
				left := s.ExpiresAt.Sub(in.Now)
				if left < 0 {
					c.Detail += fmt.Sprintf(", access token expired %s ago (the CLI refreshes it on next use)", roundDur(-left))
				} else {
					c.Detail += fmt.Sprintf(", access token expires in %s", roundDur(left))
				}
			}
		case broker.SourceNotLoggedIn:
			c.Status, c.Detail, c.Fix = Info, "not logged in ("+s.Problem+"); its copies are left alone", s.Hint
		case broker.SourceBroken:
			c.Status, c.Detail, c.Fix = Fail, "the login at "+s.Location+" is broken: "+s.Problem+"; it is not copied", s.Hint
		default:
			c.Status, c.Detail, c.Fix = Fail, "cannot read "+s.Location+": "+s.Problem, s.Hint
			if c.Fix == "" {
				c.Fix = "check the path and its permissions"
			}
		}
		r.add(c)
		if s.State == broker.SourceValid && s.RefreshExpiresAt != nil {
			r.add(checkRefresh(s, in.Now))
		}
		for _, cp := range s.Copies {
			r.add(checkCopy(s, cp, in))
		}
	}
	if loggedIn == 0 && len(in.Status.Sources) > 0 {
		r.add(Check{Area: "source", Name: "any", Status: Warn, Detail: "no CLI is logged in on this host, so there is nothing to copy", Fix: "log in to a CLI on the host (claude: /login, codex login, gemini)"})
	}
}

// checkRefresh says when the user must log in again: a refresh token
// that has ended cannot be refreshed, and every copy dies with it.
func checkRefresh(s broker.SourceReport, now time.Time) Check {
	c := Check{Area: "source", Name: s.Name + " refresh token"}
	at := *s.RefreshExpiresAt
	left := at.Sub(now)
	when := at.UTC().Format("2006-01-02 15:04 MST")
	fix := "mc-broker login " + s.Name + " (it runs the CLI's own login on this host, then gives every copy the new login)"
	switch {
	case left < 0:
		c.Status, c.Detail, c.Fix = Fail, "ended "+when+" ("+roundDur(-left)+" ago): the login cannot be refreshed any more, here or in any container", fix
	case left < broker.RefreshWarning:
		c.Status, c.Detail, c.Fix = Warn, "ends "+when+" (in "+roundDur(left)+"): after that the login cannot be refreshed, here or in any container", fix
	default:
		c.Status, c.Detail = OK, "valid until "+when+" (in "+roundDur(left)+")"
	}
	return c
}

func checkCopy(s broker.SourceReport, cp broker.CopyReport, in Inputs) Check {
	c := Check{Area: "copy", Name: cp.Location}
	switch {
	case s.State != broker.SourceValid && cp.Outcome == broker.Missing:
		c.Status, c.Detail = Info, "not written: the host has no usable login"
		return c
	}
	switch cp.Outcome {
	case broker.InSync:
		c.Status, c.Detail = OK, "in sync ("+cp.Fingerprint+")"
	case broker.Missing:
		c.Status, c.Detail, c.Fix = Warn, "not written yet", "run mc-broker sync (or keep mc-broker watch running)"
	case broker.Older, broker.Differs:
		c.Status, c.Detail, c.Fix = Warn, "holds an older login than the host", "run mc-broker sync, or keep mc-broker watch running so this never lags"
	case broker.Newer:
		c.Status, c.Detail, c.Fix = Warn, "holds a newer login than the host (a container refreshed it)", "keep mc-broker watch running: it takes the newer login back into the host's store"
	case broker.Broken:
		c.Status, c.Detail, c.Fix = Fail, "broken: "+cp.Problem, "run mc-broker sync: it repairs the copy from the host's login"
	case broker.Present:
		c.Status, c.Detail = Info, "present; the host has no usable login to compare with"
	case broker.Revoked:
		c.Status, c.Detail = Info, "revoked (mc-broker revoke): not given the login until mc-broker sync or mc-broker login "+s.Name
		if cp.Problem != "" {
			c.Status, c.Detail, c.Fix = Warn, "revoked, but "+cp.Problem, "mc-broker revoke "+s.Name+" erases it again; look at what runs with this copy mounted"
		}
	default:
		c.Status, c.Detail, c.Fix = Fail, cp.Problem, "see the message (a symlink must be replaced by a real directory or file); mc-broker sync retries the copy"
		if strings.HasPrefix(cp.Location, "volume ") {
			c.Fix = "see the docker engine check below; mc-broker sync retries the copy"
		}
	}
	if c.Status != Fail {
		if p := permissionProblem(cp.Location, in.Owners[filepath.Dir(cp.Location)]); p != "" {
			c.Status, c.Detail, c.Fix = Warn, c.Detail+"; "+p, "run mc-broker sync: it sets mode 0600 and the configured owner"
		}
	}
	return c
}

// permissionProblem checks a copy file on this host: mode 0600 and the
// configured owner. Copies that are not host files (volumes) are skipped.
func permissionProblem(location string, want Owner) string {
	if !filepath.IsAbs(location) {
		return ""
	}
	fi, err := os.Lstat(location)
	if err != nil {
		return ""
	}
	var problems []string
	if fi.Mode()&fs.ModeSymlink != 0 {
		return "it is a symlink"
	}
	if fi.Mode().Perm() != 0o600 {
		problems = append(problems, fmt.Sprintf("mode %04o, not 0600", fi.Mode().Perm()))
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		if want.UID != nil && int(st.Uid) != *want.UID {
			problems = append(problems, fmt.Sprintf("owned by uid %d, not %d", st.Uid, *want.UID))
		}
		if want.GID != nil && int(st.Gid) != *want.GID {
			problems = append(problems, fmt.Sprintf("group %d, not %d", st.Gid, *want.GID))
		}
	}
	return strings.Join(problems, ", ")
}

func checkEngine(r *Result, ctx context.Context, in Inputs) {
	e := in.Engine(ctx)
	c := Check{Area: "docker", Name: "engine"}
	where := e.Endpoint
	if e.Context != "" {
		where += " (context " + e.Context + ")"
	}
	switch {
	case e.Err == nil:
		c.Status, c.Detail = OK, "Docker engine "+e.Version+" at "+where
	case in.VolumeCopies > 0:
		c.Status, c.Detail, c.Fix = Fail, e.Err.Error(), "start Docker Desktop / OrbStack / colima, or point DOCKER_HOST or the docker context at a running engine"
	default:
		c.Status, c.Detail = Info, "no Docker engine reachable ("+e.Err.Error()+"); only directory copies are kept"
	}
	r.add(c)
	a := Check{Area: "docker", Name: "resident agent"}
	switch {
	case e.Err != nil || (e.Agent == "" && e.AgentErr == nil):
		return
	case e.AgentErr == nil:
		a.Status, a.Detail = OK, "watch serves volume copies through "+e.Agent+" inside the engine: changes within milliseconds"
	case in.VolumeCopies > 0:
		a.Status, a.Detail, a.Fix = Warn, e.AgentErr.Error()+": a container's refresh inside a volume reaches the host only at the next poll", "on Linux: make build (static); on macOS: make agent-binaries (or make install) to put mc-broker-linux-<arch> beside mc-broker, or set MC_BROKER_AGENT_BINARY"
	default:
		a.Status, a.Detail = Info, e.AgentErr.Error()
	}
	r.add(a)
}

func checkService(r *Result, ctx context.Context, in Inputs) {
	s := in.Service(ctx)
	c := Check{Area: "service", Name: "background service"}
	switch {
	case s.Err != nil:
		c.Status, c.Detail = Info, "cannot ask the service manager: "+s.Err.Error()
	case s.Installed && s.Running && len(s.Warnings) > 0:
		c.Status, c.Detail, c.Fix = Warn, "installed and running ("+s.Detail+"), but "+strings.Join(s.Warnings, "; "), "mc-broker launch install (it updates the service in place)"
	case s.Installed && s.Running:
		c.Status, c.Detail = OK, "installed and running ("+s.Detail+"); logs: "+s.Logs
	case s.Installed:
		c.Status, c.Detail, c.Fix = Fail, "installed but not running ("+s.Detail+"); logs: "+s.Logs, "look at the logs, then mc-broker launch install to restart it"
	case in.WatcherRunning:
		c.Status, c.Detail = OK, "not installed, but a watcher is running (mc-broker watch or run)"
	case s.Unreachable != nil:
		c.Status, c.Detail, c.Fix = Warn, "not installed, and no service manager answers here ("+s.Unreachable.Error()+"): copies are only refreshed when you run mc-broker sync", "run mc-broker watch under your own supervisor (or mc-broker run -- COMMAND), so that a container's token refresh reaches the host"
	default:
		c.Status, c.Detail, c.Fix = Warn, "not installed: copies are only refreshed when you run mc-broker sync, and a container's token refresh does not reach the host", "mc-broker launch install"
	}
	r.add(c)
}

func checkCompose(r *Result, in Inputs) {
	findings, err := in.Compose(in.ComposeFiles)
	if err != nil {
		r.add(Check{Area: "compose", Name: strings.Join(in.ComposeFiles, ", "), Status: Fail, Detail: err.Error(), Fix: "fix the compose file"})
		return
	}
	if len(findings) == 0 {
		r.add(Check{Area: "compose", Name: strings.Join(in.ComposeFiles, ", "), Status: OK, Detail: "credential mounts look right"})
	}
	for _, f := range findings {
		name := f.Where
		if f.Service != "" {
			name += " (service " + f.Service + ")"
		}
		r.add(Check{Area: "compose", Name: name, Status: Fail, Detail: f.Problem, Fix: f.Fix})
	}
}

func roundDur(d time.Duration) string {
	switch {
	case d >= 48*time.Hour:
		return fmt.Sprintf("%dd", int(d.Hours()/24))
	case d >= time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	case d >= time.Minute:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	}
	return fmt.Sprintf("%ds", int(d.Seconds()))
}
