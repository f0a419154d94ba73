package keychain

import (
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/mc-broker/mc-broker/broker/credential"
)

// The errors below never quote what `security` printed on stderr: for the
// commands mc-broker runs it holds no secret, but a future version of the
// tool, or a fake one, might echo its input. They name the item and the exit
// status instead. Each has a Hint, which the broker shows as "hint:".

// NotFoundError is errSecItemNotFound (-25300, exit status 44): no such
// item, which means the CLI is not logged in. It matches
// credential.ErrNotLoggedIn, so the broker reports "not logged in" with the
// CLI's login hint (claude: run claude and /login).
type NotFoundError struct{ Item Item }

func (e *NotFoundError) Error() string { return fmt.Sprintf("no Keychain item %s", e.Item) }

// Is makes errors.Is(err, credential.ErrNotLoggedIn) true.
func (e *NotFoundError) Is(target error) bool { return target == credential.ErrNotLoggedIn }

// LockedError is errSecInteractionNotAllowed (-25308, exit status 36): the
// keychain is locked and there is no user interface to unlock it, as over
// SSH or in a launchd job before login.
type LockedError struct{ Item Item }

func (e *LockedError) Error() string {
	return fmt.Sprintf("keychain locked: run security unlock-keychain (reading %s: errSecInteractionNotAllowed, -25308)", e.Item)
}

// Hint says what to do.
func (e *LockedError) Hint() string {
	return "run security unlock-keychain (over SSH the login keychain stays locked until you unlock it there), then run mc-broker again"
}

// DeniedError is the user, or the keychain, refusing access: Deny in the
// prompt (errSecUserCanceled, -128) or a wrong keychain password
// (errSecAuthFailed, -25293).
type DeniedError struct {
	Item Item
	// Canceled is true for Deny in the prompt, false for a failed
	// authentication.
	Canceled bool
}

func (e *DeniedError) Error() string {
	if e.Canceled {
		return fmt.Sprintf("access to %s was denied in the Keychain prompt (errSecUserCanceled, -128)", e.Item)
	}
	return fmt.Sprintf("the Keychain refused access to %s: authentication failed (errSecAuthFailed, -25293)", e.Item)
}

// Hint says what to do.
func (e *DeniedError) Hint() string {
	return "run mc-broker again and choose Always Allow when macOS asks whether security may read the item (see docs/KEYCHAIN.md)"
}

// TimeoutError is `security` not answering in time, usually because a
// Keychain prompt is waiting on a screen nobody is looking at. The process
// (and its process group) was killed.
type TimeoutError struct {
	Item  Item
	After time.Duration
}

func (e *TimeoutError) Error() string {
	return fmt.Sprintf("security did not answer within %s reading %s (a Keychain prompt waiting on the screen?)", e.After, e.Item)
}

// Hint says what to do.
func (e *TimeoutError) Hint() string {
	return "answer the Keychain prompt (Always Allow), or unlock the keychain with security unlock-keychain, then run mc-broker again"
}

// SecurityError is any other failure of the `security` program.
type SecurityError struct {
	Item Item
	// Op is the security subcommand, e.g. "find-generic-password".
	Op string
	// ExitCode is the program's exit status; -1 when it did not start.
	ExitCode int
	// Err is why it did not start or run, when ExitCode is -1.
	Err error
}

func (e *SecurityError) Error() string {
	if e.ExitCode < 0 {
		return fmt.Sprintf("cannot run security %s for %s: %v", e.Op, e.Item, e.Err)
	}
	return fmt.Sprintf("security %s for %s failed with exit status %d", e.Op, e.Item, e.ExitCode)
}

func (e *SecurityError) Unwrap() error { return e.Err }

// Hint says what to do.
func (e *SecurityError) Hint() string {
	if errors.Is(e.Err, fs.ErrNotExist) {
		return "security is macOS's program: off a Mac use store: file for this source, or name a stand-in with " + BinEnv
	}
	return "run `security find-generic-password -s SERVICE -a ACCOUNT` yourself to see the Keychain's message (it prints no secret without -w)"
}

// VerifyError is a write-back whose read-back differs from what was
// written: the item may now hold something else, so the caller must not
// assume the write happened.
type VerifyError struct{ Item Item }

func (e *VerifyError) Error() string {
	return fmt.Sprintf("wrote %s but reading it back gave other content", e.Item)
}

// Hint says what to do.
func (e *VerifyError) Hint() string {
	return "the previous value was backed up by mc-broker's watcher before the write; check the item with Keychain Access"
}

// TooLargeError is a value too long for one line of `security -i`, whose
// line buffer is 4096 bytes: a longer line would be cut and its first part
// executed, storing a truncated login.
type TooLargeError struct {
	Item Item
	Size int
	// Max is the largest login, in bytes, that fits the line with this
	// item's names.
	Max int
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("cannot write %s: the login is %d bytes, more than the %d that security -i takes on one line", e.Item, e.Size, e.Max)
}

// Hint says what to do.
func (e *TooLargeError) Hint() string {
	return "the Keychain item was left as it was (mc-broker never puts a login on security's command line, where other processes can read it); " +
		"Claude's item also holds the host's MCP server tokens (mcpOAuth), which make it this large. " +
		"The copies keep the newer login; if Claude on the host then cannot refresh, run claude and /login there"
}

// UnsafeNameError is a service, account or label that cannot be passed to
// `security -i` without quoting rules its parser may not share.
type UnsafeNameError struct {
	What string // "service", "account" or "label"
}

func (e *UnsafeNameError) Error() string {
	return fmt.Sprintf("the Keychain item's %s contains a quote, backslash or control character: mc-broker does not write such items back", e.What)
}
