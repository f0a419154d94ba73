package service

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"unicode/utf8"
)

// systemd is a user unit under $XDG_CONFIG_HOME/systemd/user.
type systemd struct{ s *Service }

func (d *systemd) manager() string { return Systemd }

func (d *systemd) file() string {
	dir := d.s.opts.Getenv("XDG_CONFIG_HOME")
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(d.s.opts.Home, ".config")
	}
	return filepath.Join(dir, "systemd", "user", Unit)
}

func (d *systemd) logs() Logs {
	return Logs{Command: []string{"journalctl", "--user", "-u", Unit}}
}

func systemctl(args ...string) []string { return append([]string{"systemctl", "--user"}, args...) }

// installSteps always restart: after an upgrade the unit file may be the
// same while the binary it names is new, and restart also starts a stopped
// unit, so one sequence serves a first install and every re-install.
func (d *systemd) installSteps() []Step {
	return []Step{
		{Argv: systemctl("daemon-reload")},
		{Argv: systemctl("enable", Unit)},
		{Argv: systemctl("restart", Unit)},
	}
}

func (d *systemd) uninstallSteps() []Step {
	return []Step{
		{Argv: systemctl("disable", "--now", Unit)},
		{Remove: d.file()},
		{Argv: systemctl("daemon-reload")},
	}
}

// probe asks is-active: exit 0 is active; 3 is inactive, failed or not
// loaded (4 on some versions for an unknown unit); anything else, or no
// systemctl at all, means there is no user instance to talk to.
func (d *systemd) probe(ctx context.Context) (probe, error) {
	out, err := d.s.opts.Runner.Run(ctx, systemctl("is-active", Unit)...)
	state := strings.TrimSpace(string(out))
	switch exitCode(err) {
	case 0:
		return probe{loaded: true, running: true, detail: state}, nil
	case 3, 4:
		return probe{detail: state}, nil
	}
	return probe{}, &ManagerUnavailableError{Manager: Systemd, Err: err}
}

func (d *systemd) render(args []string, env []envVar) ([]byte, error) {
	var b bytes.Buffer
	exec, err := unitCommandLine(args)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(&b, `# Written by mc-broker launch install: run it again to update this file
# (edits are overwritten), mc-broker launch uninstall to remove it.
[Unit]
Description=mc-broker watch: keep container copies of CLI logins in step
Documentation=%s

[Service]
Type=exec
ExecStart=%s
ExecReload=/bin/kill -HUP $MAINPID
Restart=on-failure
RestartSec=5
# Exit status 2 is a bad config or usage: restarting cannot fix it.
RestartPreventExitStatus=2
`, DocsURL, exec)
	for _, e := range env {
		v, err := unitQuote(e.name+"="+e.value, false)
		if err != nil {
			return nil, fmt.Errorf("environment variable %s: %w", e.name, err)
		}
		fmt.Fprintf(&b, "Environment=%s\n", v)
	}
	b.WriteString(`
[Install]
WantedBy=default.target
`)
	return b.Bytes(), nil
}

func unitCommandLine(args []string) (string, error) {
	out := make([]string, len(args))
	for i, a := range args {
		// systemd expands $VAR in arguments but not in the executable's path.
		q, err := unitQuote(a, i > 0)
		if err != nil {
			return "", fmt.Errorf("cannot put %q in a systemd unit: %w", a, err)
		}
		out[i] = q
	}
	return strings.Join(out, " "), nil
}

// unitQuote quotes s for a unit file: double quotes with C escapes when
// needed, "%%" for a literal % (specifiers) and, in command lines, "$$" for
// a literal $ (variable expansion) where systemd expands variables. Control characters cannot be written
// on one line and are refused; so are bytes that are not UTF-8, for which
// systemd ignores the whole line ("String is not UTF-8 clean").
func unitQuote(s string, command bool) (string, error) {
	if !utf8.ValidString(s) {
		return "", fmt.Errorf("is not valid UTF-8 (systemd ignores such a line)")
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return "", fmt.Errorf("contains a control character")
		}
	}
	s = strings.ReplaceAll(s, "%", "%%")
	if command {
		s = strings.ReplaceAll(s, "$", "$$")
	}
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-+:@=,%$") == "" {
		return s, nil
	}
	s = strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s)
	return `"` + s + `"`, nil
}

// program finds ExecStart= and splits it as systemd does, for the quoting
// render writes: quotes, backslash escapes, %% and, in arguments, $$.
func (d *systemd) program(data []byte) ([]string, error) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	var line string
	for sc.Scan() {
		if v, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "ExecStart="); ok {
			line = v
		}
	}
	if line == "" {
		return nil, fmt.Errorf("no ExecStart= line")
	}
	args, err := splitUnitWords(line)
	if err != nil {
		return nil, err
	}
	for i := range args {
		if i == 0 {
			args[0] = strings.TrimLeft(args[0], "-@:+!")
		} else {
			args[i] = strings.ReplaceAll(args[i], "$$", "$")
		}
	}
	return args, nil
}

func splitUnitWords(line string) ([]string, error) {
	var (
		words []string
		cur   strings.Builder
		in    bool // inside a word
		quote rune
	)
	rs := []rune(line)
	for i := 0; i < len(rs); i++ {
		r := rs[i]
		switch {
		case r == '\\' && i+1 < len(rs):
			i++
			cur.WriteRune(rs[i])
			in = true
		case quote != 0 && r == quote:
			quote = 0
		case quote == 0 && (r == '"' || r == '\''):
			quote, in = r, true
		case quote == 0 && (r == ' ' || r == '\t'):
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		case r == '%' && i+1 < len(rs) && rs[i+1] == '%':
			i++
			cur.WriteRune(r)
			in = true
		default:
			cur.WriteRune(r)
			in = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unterminated quote in ExecStart=")
	}
	if in {
		words = append(words, cur.String())
	}
	return words, nil
}
