package keychain

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mc-broker/mc-broker/broker/credential"
)

// DefaultBin is Apple's security program. Claude Code rewrites its item
// with this very program, which keeps it in the item's access list, so
// reading through it needs one approval, not one per token refresh.
const DefaultBin = "/usr/bin/security"

// BinEnv names the environment variable that replaces DefaultBin (tests run
// a fake security on Linux).
const BinEnv = "MC_BROKER_SECURITY_BIN"

// DefaultTimeout bounds every call of security: a Keychain prompt nobody
// answers must not hang sync or watch.
const DefaultTimeout = 10 * time.Second

// Exit statuses of security: the low byte of the OSStatus.
const (
	exitNotFound       = 44  // errSecItemNotFound, -25300
	exitNoInteraction  = 36  // errSecInteractionNotAllowed, -25308
	exitAuthFailed     = 51  // errSecAuthFailed, -25293
	exitUserCanceled   = 128 // errSecUserCanceled, -128
	maxOutput          = 4 * credential.MaxSize
	killGrace          = time.Second
	interactiveLineCap = 4096 // security -i reads one command per line into this buffer
)

// Security runs the security program.
type Security struct {
	// Bin is the program; DefaultBin when empty.
	Bin string
	// Timeout bounds each call; DefaultTimeout when zero.
	Timeout time.Duration
}

func (s *Security) bin() string {
	if s.Bin == "" {
		return DefaultBin
	}
	return s.Bin
}

func (s *Security) timeout() time.Duration {
	if s.Timeout <= 0 {
		return DefaultTimeout
	}
	return s.Timeout
}

type result struct {
	stdout []byte
	code   int
}

// run runs security with args (never a secret: argv is visible to every
// process on the machine) and stdin. A call that outlives the timeout is
// killed with its whole process group and reported as *TimeoutError.
func (s *Security) run(ctx context.Context, item Item, op string, stdin []byte, args ...string) (result, error) {
	tctx, cancel := context.WithTimeout(ctx, s.timeout())
	defer cancel()
	cmd := exec.CommandContext(tctx, s.bin(), args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		// The whole group: a prompt helper started by security must go too.
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	cmd.WaitDelay = killGrace
	var out bytes.Buffer
	cmd.Stdout = &limitedWriter{w: &out, n: maxOutput}
	cmd.Stderr = io.Discard // may echo input; never shown
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	err := cmd.Run()
	switch {
	case ctx.Err() != nil:
		return result{}, ctx.Err()
	case tctx.Err() != nil:
		return result{}, &TimeoutError{Item: item, After: s.timeout()}
	}
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return result{stdout: out.Bytes(), code: exit.ExitCode()}, nil
	}
	if err != nil {
		return result{}, &SecurityError{Item: item, Op: op, ExitCode: -1, Err: err}
	}
	return result{stdout: out.Bytes()}, nil
}

// classify turns a failed exit status into a typed error.
func classify(item Item, op string, code int) error {
	switch code {
	case exitNotFound:
		return &NotFoundError{Item: item}
	case exitNoInteraction:
		return &LockedError{Item: item}
	case exitUserCanceled:
		return &DeniedError{Item: item, Canceled: true}
	case exitAuthFailed:
		return &DeniedError{Item: item}
	}
	return &SecurityError{Item: item, Op: op, ExitCode: code}
}

// FindSecret returns the item's secret (find-generic-password -w). A
// missing item is a *NotFoundError.
func (s *Security) FindSecret(ctx context.Context, item Item) ([]byte, error) {
	r, err := s.run(ctx, item, "find-generic-password", nil, "find-generic-password", "-s", item.Service, "-a", item.Account, "-w")
	if err != nil {
		return nil, err
	}
	if r.code != 0 {
		return nil, classify(item, "find-generic-password", r.code)
	}
	return decodePassword(r.stdout), nil
}

// decodePassword undoes what -w does to the value: security adds a newline,
// and prints the value as hex when it holds a byte that is not printable
// ASCII (a newline in pretty-printed JSON, UTF-8). The logins mc-broker
// reads are JSON objects, so hex output is told apart by not starting
// with '{'.
func decodePassword(out []byte) []byte {
	out = bytes.TrimSuffix(out, []byte("\n"))
	if len(out) > 0 && len(out)%2 == 0 && out[0] != '{' && isHex(out) {
		dec := make([]byte, len(out)/2)
		if _, err := hex.Decode(dec, out); err == nil {
			return dec
		}
	}
	return out
}

func isHex(b []byte) bool {
	for _, c := range b {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// Attributes are what mc-broker reads of an item without its secret.
type Attributes struct {
	// Label is the item's name in Keychain Access ("labl"); kept on
	// write-back.
	Label string
	// Modified is the modification date as the keychain stores it, to the
	// second ("mdat", e.g. "20261129080000Z"); compared, never parsed.
	Modified string
}

// FindAttributes returns the item's attributes, running
// find-generic-password without -w: that reads no secret and never
// prompts. A missing item is a *NotFoundError.
func (s *Security) FindAttributes(ctx context.Context, item Item) (Attributes, error) {
	r, err := s.run(ctx, item, "find-generic-password", nil, "find-generic-password", "-s", item.Service, "-a", item.Account)
	if err != nil {
		return Attributes{}, err
	}
	if r.code != 0 {
		return Attributes{}, classify(item, "find-generic-password", r.code)
	}
	return ParseAttributes(r.stdout), nil
}

// attributeLines are the mdat and label lines of security's output,
// compiled on first use rather than at every mc-broker start.
var attributeLines = sync.OnceValues(func() (mdat, label *regexp.Regexp) {
	return regexp.MustCompile(`(?m)^\s*"mdat"<timedate>=\S+\s+"(\d{14}Z)`),
		regexp.MustCompile(`(?m)^\s*0x00000007 <blob>=(.*)$`)
})

// ParseAttributes reads the label and modification date from what
// `security find-generic-password` prints without -w (see
// testdata/fixtures/security). Unknown lines are ignored.
func ParseAttributes(out []byte) Attributes {
	var a Attributes
	mdatLine, labelLine := attributeLines()
	if m := mdatLine.FindSubmatch(out); m != nil {
		a.Modified = string(m[1])
	}
	if m := labelLine.FindSubmatch(out); m != nil {
		a.Label = parseBlob(strings.TrimSpace(string(m[1])))
	}
	return a
}

// parseBlob reads a blob attribute's value: "text", 0xHEX  "text", or
// <NULL>.
func parseBlob(v string) string {
	switch {
	case strings.HasPrefix(v, `"`) && strings.HasSuffix(v, `"`) && len(v) >= 2:
		return v[1 : len(v)-1]
	case strings.HasPrefix(v, "0x"):
		h := v[2:]
		if i := strings.IndexByte(h, ' '); i >= 0 {
			h = h[:i]
		}
		if b, err := hex.DecodeString(h); err == nil {
			return strings.TrimRight(string(b), "\x00")
		}
	}
	return ""
}

// Write stores secret in the item, creating or updating it (-U), through
// `security -i`: the command goes on standard input, so the secret never
// appears in argv. The secret is hex-encoded (-X), as Claude Code itself
// does, so no quoting rule of security's line parser can bend it.
func (s *Security) Write(ctx context.Context, item Item, label string, secret []byte) error {
	line, err := addCommand(item, label, secret)
	if err != nil {
		return err
	}
	r, err := s.run(ctx, item, "add-generic-password", line, "-i")
	if err != nil {
		return err
	}
	if r.code != 0 {
		return classify(item, "add-generic-password", r.code)
	}
	return nil
}

// addCommand builds the add-generic-password line for `security -i`.
func addCommand(item Item, label string, secret []byte) ([]byte, error) {
	for what, v := range map[string]string{"service": item.Service, "account": item.Account, "label": label} {
		if !safeName(v) {
			return nil, &UnsafeNameError{What: what}
		}
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, `add-generic-password -U -s "%s" -a "%s"`, item.Service, item.Account)
	if label != "" {
		fmt.Fprintf(&b, ` -l "%s"`, label)
	}
	b.WriteString(` -X "`)
	// The whole line, newline included, must fit in the line buffer's
	// interactiveLineCap-1 bytes; the hex takes two per byte of secret.
	if max := (interactiveLineCap - 1 - b.Len() - len("\"\n")) / 2; len(secret) > max {
		return nil, &TooLargeError{Item: item, Size: len(secret), Max: max}
	}
	b.WriteString(hex.EncodeToString(secret))
	b.WriteString("\"\n")
	return b.Bytes(), nil
}

// safeName accepts names that need no escaping inside double quotes: no
// quote, backslash or control character, so that wrapping them in double
// quotes is all the quoting security's line parser needs.
func safeName(s string) bool {
	for _, r := range s {
		if r == '"' || r == '\\' || r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// limitedWriter keeps at most n bytes and drops the rest, so a runaway
// program cannot fill memory.
type limitedWriter struct {
	w io.Writer
	n int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	keep := p
	if len(keep) > l.n {
		keep = keep[:l.n]
	}
	l.n -= len(keep)
	if _, err := l.w.Write(keep); err != nil {
		return 0, err
	}
	return len(p), nil
}
