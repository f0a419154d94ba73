package service

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"howett.net/plist"
)

// launchd is a LaunchAgent in ~/Library/LaunchAgents, in the gui/<uid>
// domain: it runs while the user is logged in at the Mac, which is when the
// Keychain holding Claude's login is unlocked.
type launchd struct{ s *Service }

// launchAgent is the plist. KeepAlive restarts watch whenever it exits
// (launchd throttles restarts to one per 10 s); bootout stops it for good.
type launchAgent struct {
	Label                string            `plist:"Label"`
	ProgramArguments     []string          `plist:"ProgramArguments"`
	RunAtLoad            bool              `plist:"RunAtLoad"`
	KeepAlive            bool              `plist:"KeepAlive"`
	ProcessType          string            `plist:"ProcessType"`
	StandardOutPath      string            `plist:"StandardOutPath"`
	StandardErrorPath    string            `plist:"StandardErrorPath"`
	EnvironmentVariables map[string]string `plist:"EnvironmentVariables,omitempty"`
}

func (d *launchd) manager() string { return Launchd }

func (d *launchd) file() string {
	return filepath.Join(d.s.opts.Home, "Library", "LaunchAgents", Label+".plist")
}

// logs: one file for stdout and stderr, so there is one place to look;
// watch logs to stderr.
func (d *launchd) logs() Logs {
	return Logs{Files: []string{filepath.Join(d.s.opts.Home, "Library", "Logs", "mc-broker", "watch.log")}}
}

func (d *launchd) domain() string  { return fmt.Sprintf("gui/%d", d.s.opts.UID) }
func (d *launchd) service() string { return d.domain() + "/" + Label }

// installSteps: a loaded agent keeps the plist it was loaded with, so a
// re-install boots the old one out first. enable clears a `launchctl
// disable` the user may have run, which would make bootstrap fail.
func (d *launchd) installSteps() []Step {
	return []Step{
		{Argv: []string{"launchctl", "bootout", d.service()}, When: whenLoaded, waitUnloaded: true},
		{Argv: []string{"launchctl", "enable", d.service()}},
		{Argv: []string{"launchctl", "bootstrap", d.domain(), d.file()}},
	}
}

func (d *launchd) uninstallSteps() []Step {
	return []Step{
		{Argv: []string{"launchctl", "bootout", d.service()}, When: whenLoaded, waitUnloaded: true},
		{Remove: d.file()},
	}
}

// launchctlNotFound is launchctl print's exit status for a service that is
// not loaded ("Could not find service ... in domain for ...").
const launchctlNotFound = 113

func (d *launchd) probe(ctx context.Context) (probe, error) {
	out, err := d.s.opts.Runner.Run(ctx, "launchctl", "print", d.service())
	switch code := exitCode(err); {
	case code == 0:
		return parseLaunchctlPrint(out), nil
	case code == launchctlNotFound || (code > 0 && bytes.Contains(out, []byte("Could not find service"))):
		return probe{detail: "not loaded"}, nil
	}
	return probe{}, &ManagerUnavailableError{Manager: Launchd, Err: err}
}

// parseLaunchctlPrint reads the service's own top-level "state = ..." and
// "pid = ..." lines (one tab deep; nested blocks have states of their own).
func parseLaunchctlPrint(out []byte) probe {
	p := probe{loaded: true}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "\t") || strings.HasPrefix(line, "\t\t") {
			continue
		}
		key, value, ok := strings.Cut(strings.TrimSpace(line), " = ")
		switch {
		case !ok:
		case key == "state":
			p.detail = value
			p.running = value == "running"
		case key == "pid":
			p.pid, _ = strconv.Atoi(value)
		}
	}
	return p
}

func (d *launchd) render(args []string, env []envVar) ([]byte, error) {
	log := d.logs().Files[0]
	agent := launchAgent{
		Label:             Label,
		ProgramArguments:  args,
		RunAtLoad:         true,
		KeepAlive:         true,
		ProcessType:       "Background",
		StandardOutPath:   log,
		StandardErrorPath: log,
		// launchd gives agents a minimal environment; HOME is set
		// explicitly so that ~ in the config means what it means in a shell.
		EnvironmentVariables: map[string]string{"HOME": d.s.opts.Home},
	}
	for _, e := range env {
		agent.EnvironmentVariables[e.name] = e.value
	}
	data, err := plist.MarshalIndent(agent, plist.XMLFormat, "\t")
	return append(data, '\n'), err
}

func (d *launchd) program(data []byte) ([]string, error) {
	var agent launchAgent
	if _, err := plist.Unmarshal(data, &agent); err != nil {
		return nil, err
	}
	if len(agent.ProgramArguments) == 0 {
		return nil, fmt.Errorf("no ProgramArguments")
	}
	return agent.ProgramArguments, nil
}
