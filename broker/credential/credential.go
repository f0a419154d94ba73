// Package credential holds what every login format shares: the Kind
// interface each CLI's package implements (broker/kinds/...), what can be
// shown about a login (Info: freshness, expiry, fingerprint, identity), the
// errors that classify content, and byte-level JSON helpers that change one
// member of a file and leave every other byte as it was.
//
// Nothing here returns a secret in an error or a string: messages are built
// from field names and lengths, never values.
package credential

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// MaxSize caps what is read from any credential file. Real logins are a few
// KiB; anything larger is not a login and is refused rather than copied.
const MaxSize = 1 << 20

// MaxTakeBack caps the size of a login taken back from a copy into the
// host's store. A login is a few KiB (Claude with many MCP servers: tens);
// a copy is written without the host's extras, so anything near this is
// padding, and a container must not make the host write megabytes.
const MaxTakeBack = 64 << 10

// Freshness orders two logins of the same kind. Newer wins everywhere; a copy
// is never overwritten with an older login. The zero value means "unknown"
// (opaque files, API keys): then the source always wins.
type Freshness struct {
	Known bool
	// Primary and Secondary are compared in order (Codex: JWT exp, then
	// last_refresh; the others use Primary only).
	Primary, Secondary int64
}

// Compare returns -1, 0 or +1 when f is older, as fresh as, or newer than g.
// ok is false when either side is unknown and no order exists.
func (f Freshness) Compare(g Freshness) (c int, ok bool) {
	if !f.Known || !g.Known {
		return 0, false
	}
	switch {
	case f.Primary < g.Primary:
		return -1, true
	case f.Primary > g.Primary:
		return 1, true
	case f.Secondary < g.Secondary:
		return -1, true
	case f.Secondary > g.Secondary:
		return 1, true
	}
	return 0, true
}

// Newer reports whether f is known to be newer than g.
func (f Freshness) Newer(g Freshness) bool {
	c, ok := f.Compare(g)
	return ok && c > 0
}

// Info is what can be shown about a valid login. None of it is a secret.
type Info struct {
	Freshness Freshness
	// Expiry of the access token; zero when the kind has none.
	Expiry time.Time
	// RefreshExpiry is when the refresh token itself ends (Claude's
	// refreshTokenExpiresAt); zero when the login does not say. After it
	// only a new login helps.
	RefreshExpiry time.Time
	// Issued is when the login says it was last refreshed (Codex
	// last_refresh); zero when it does not say.
	Issued time.Time
	// Fingerprint names the login without revealing it: "sha256:" and 12 hex
	// digits over the login's token fields (the whole content for opaque
	// files), so a host store and a copy that carry the same login show the
	// same fingerprint even when the copy leaves out unrelated blocks.
	Fingerprint string
	// Identity names the account the login belongs to (and how it logs
	// in), as a fingerprint of the fields that say so: two logins of one
	// account have the same Identity, whatever their tokens. Empty when the
	// kind carries nothing to tell accounts apart (opaque files).
	Identity string
}

// Kind is one CLI's login format and the facts about the CLI that keeps
// it. Each CLI's package (broker/kinds/claude, ...) implements it.
type Kind interface {
	// Name is the kind's config name: claude, codex, gemini, file.
	Name() string
	// FileName is the name the CLI gives its login file inside its config
	// directory; empty for opaque files (the source's base name is used).
	FileName() string
	// Inspect validates data. The error is *BrokenError for content that must
	// not be copied (Foreign set when it is not this kind's file at all) and
	// matches ErrNotLoggedIn for a well-formed file without a login.
	Inspect(data []byte) (Info, error)
	// ForCopy returns what a copy made with options o holds of the valid
	// login data: the deliberate, documented changes on the way into a
	// container (Claude: no mcpOAuth), every other byte kept.
	ForCopy(data []byte, o CopyOptions) ([]byte, error)
	// TakeBack returns what the host's store holds after taking the login
	// in fromCopy back: host's bytes with only the login's own members
	// replaced by the copy's, so that nothing else a container wrote into
	// its copy reaches the host. host may be nil or not parse (no login, or
	// a broken one): then the result is the copy's login members alone.
	TakeBack(host, fromCopy []byte) ([]byte, error)
	// Facts are what the CLI does around its login: where it keeps it,
	// which locks it takes, what a container needs beside it.
	Facts() Facts
}

// Facts are what mc-broker must know about the CLI behind a kind.
type Facts struct {
	// LockFiles are files the CLI flocks, in this order, in the login's
	// directory around each write of it (Codex: auth.lock, auth.json.lock).
	LockFiles []string
	// WriteLock is a mkdir-style lock directory the CLI holds in its config
	// directory while it writes the login (Claude: .storage-write.lock).
	WriteLock string
	// RefreshLock is the lock directory the CLI holds across a refresh
	// request (Claude: .oauth_refresh.lock); watch mirrors it.
	RefreshLock string
	// Companions are non-secret files (by name) the CLI in a fresh
	// container needs beside its login; written only when absent.
	Companions map[string][]byte
	// MaxLifetime is the longest an access token the CLI's server issues
	// lives, with a wide margin: a copy whose login claims to expire
	// further ahead than this is not a genuine refresh and is never taken
	// back. Zero: no limit (the kind has no expiry).
	MaxLifetime time.Duration
	// LoginHint tells the user how to log the CLI in again.
	LoginHint string
	// Login is the CLI's own command (argv) that logs it in on the host,
	// with its own browser or paste-code flow: mc-broker login runs it and
	// never calls a token endpoint itself. LoginNote, when set, is what to
	// do in it: the command is the CLI's interactive session (Gemini CLI has
	// no login command). Empty for kinds without a CLI (opaque files).
	Login     []string
	LoginNote string
	// Logout is the CLI's own command that logs it out on the host, run by
	// mc-broker revoke --host; empty when the CLI has none outside its
	// interactive session, and LogoutHint then says what to do.
	Logout     []string
	LogoutHint string
	// ConfigDirVariable names the environment variable that points the CLI
	// at another config directory (one account each): CLAUDE_CONFIG_DIR,
	// CODEX_HOME, GEMINI_CLI_HOME (a home that holds .gemini).
	ConfigDirVariable string
	// Overrides are environment variables that make the CLI use another
	// credential than the login mc-broker copies, without a word: a token
	// or API key of their own, or a host that provides the login.
	Overrides []string
	// RefreshExpiry says whether the login file carries its refresh
	// token's own end (Claude: refreshTokenExpiresAt). Codex's auth.json
	// and Gemini's oauth_creds.json carry none.
	RefreshExpiry bool
}

// ErrNotLoggedIn matches (with errors.Is) every error that says a store holds
// no login: a missing file, or a well-formed file without one (a Claude file
// that only carries MCP server tokens).
var ErrNotLoggedIn = errors.New("not logged in")

// NotLoggedInError says why a store counts as not logged in.
type NotLoggedInError struct{ Reason string }

func (e *NotLoggedInError) Error() string        { return e.Reason }
func (e *NotLoggedInError) Is(target error) bool { return target == ErrNotLoggedIn }

// BrokenError says why content is not a usable login. Reason never quotes
// the content.
type BrokenError struct {
	Reason string
	// Partial is true when the content may be a write caught halfway (empty,
	// or JSON that ends early or does not parse): worth reading again after
	// a moment. Gemini CLI writes its file in place.
	Partial bool
	// Foreign is true when the content is not this kind's file at all (not
	// JSON, or JSON without any of the kind's members): something that is
	// not ours to replace.
	Foreign bool
}

func (e *BrokenError) Error() string { return e.Reason }

// Broken returns a *BrokenError with a formatted reason.
func Broken(format string, args ...any) error {
	return &BrokenError{Reason: fmt.Sprintf(format, args...)}
}

// Foreign returns a *BrokenError for content that is not this kind's file.
func Foreign(format string, args ...any) error {
	return &BrokenError{Reason: fmt.Sprintf(format, args...), Foreign: true}
}

// IsPartial reports whether err marks content that may be a write caught
// halfway.
func IsPartial(err error) bool {
	var b *BrokenError
	return errors.As(err, &b) && b.Partial
}

// IsBroken reports whether err marks content as broken (foreign included).
func IsBroken(err error) bool {
	var b *BrokenError
	return errors.As(err, &b)
}

// IsForeign reports whether err marks content that is not the kind's file.
func IsForeign(err error) bool {
	var b *BrokenError
	return errors.As(err, &b) && b.Foreign
}

// Fingerprint returns "sha256:" and the first 12 hex digits of the hash of
// parts joined by NUL bytes.
func Fingerprint(parts ...[]byte) string {
	h := sha256.New()
	for i, p := range parts {
		if i > 0 {
			h.Write([]byte{0})
		}
		h.Write(p)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))[:12]
}

// Identity returns the Identity of an account named by fields (kind name
// first, so that two kinds never share one). Fields may be empty.
func Identity(kind string, fields ...string) string {
	parts := [][]byte{[]byte("identity"), []byte(kind)}
	for _, f := range fields {
		parts = append(parts, []byte(f))
	}
	return Fingerprint(parts...)
}

// CheckCommon refuses what no kind accepts: empty, whitespace-only and
// oversized content.
func CheckCommon(data []byte) error {
	if len(data) > MaxSize {
		return Broken("larger than %d bytes: not a login file", MaxSize)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return &BrokenError{Reason: "empty file (blanked, or caught mid-write)", Partial: true}
	}
	return nil
}

// CopyOptions are the deliberate changes made to a login on its way into a
// container copy. Everything not named here is kept byte for byte.
type CopyOptions struct {
	// IncludeMCPOAuth keeps Claude's mcpOAuth block (tokens for the host's
	// own MCP servers). Off by default: least privilege for containers.
	IncludeMCPOAuth bool
}
