// Package credential knows the shapes of the logins mc-broker moves: how to
// tell a valid login from a broken one, how fresh it is, when it expires, and
// how to name it without showing it (a fingerprint).
//
// It never returns a secret in an error or a string method: every message is
// built from field names and lengths, not values.
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

// Info is what can be shown about a valid login.
type Info struct {
	Freshness Freshness
	// Expiry of the access token; zero when the kind has none.
	Expiry time.Time
	// Fingerprint names the login without revealing it: "sha256:" and 12 hex
	// digits over the login's token fields (the whole content for opaque
	// files), so a host store and a copy that carry the same login show the
	// same fingerprint even when the copy leaves out unrelated blocks.
	Fingerprint string
}

// Kind is one credential format.
type Kind interface {
	// Name is the kind's config name: claude, codex, gemini, file.
	Name() string
	// FileName is the name the CLI gives its login file inside its config
	// directory; empty for opaque files (the source's base name is used).
	FileName() string
	// Inspect validates data. The error is *BrokenError for content that must
	// not be copied and ErrNotLoggedIn for a well-formed file without a login.
	Inspect(data []byte) (Info, error)
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
}

func (e *BrokenError) Error() string { return e.Reason }

func broken(format string, args ...any) error {
	return &BrokenError{Reason: fmt.Sprintf(format, args...)}
}

// IsPartial reports whether err marks content that may be a write caught
// halfway.
func IsPartial(err error) bool {
	var b *BrokenError
	return errors.As(err, &b) && b.Partial
}

// IsBroken reports whether err marks content as broken.
func IsBroken(err error) bool {
	var b *BrokenError
	return errors.As(err, &b)
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

// checkCommon refuses what no kind accepts: empty, whitespace-only and
// oversized content.
func checkCommon(data []byte) error {
	if len(data) > MaxSize {
		return broken("larger than %d bytes: not a login file", MaxSize)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return &BrokenError{Reason: "empty file (blanked, or caught mid-write)", Partial: true}
	}
	return nil
}

// ByName returns the kind with the given config name.
func ByName(name string) (Kind, bool) {
	switch name {
	case "claude":
		return Claude, true
	case "codex":
		return Codex, true
	case "gemini":
		return Gemini, true
	case "file":
		return Opaque, true
	}
	return nil, false
}

// KindNames lists the config names of all kinds, for error messages.
var KindNames = []string{"claude", "codex", "gemini", "file"}

// Opaque is the "file" kind: any non-empty content, no freshness, so the
// source always wins. Content shorter than MinFingerprinted bytes gets no
// fingerprint: 48 bits of a hash of a short PIN or password can be reversed
// by trying them all.
var Opaque Kind = opaque{}

type opaque struct{}

func (opaque) Name() string     { return "file" }
func (opaque) FileName() string { return "" }
func (opaque) Inspect(data []byte) (Info, error) {
	if err := checkCommon(data); err != nil {
		return Info{}, err
	}
	if len(bytes.TrimSpace(data)) < MinFingerprinted {
		return Info{}, nil
	}
	return Info{Fingerprint: Fingerprint(data)}, nil
}

// MinFingerprinted is the shortest opaque content that is fingerprinted.
const MinFingerprinted = 20
