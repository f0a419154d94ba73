// Package keychain reads a login from a macOS Keychain generic password and
// writes a newer one back, through Apple's `security` program.
//
// Why a program and not the Security framework: Claude Code rewrites its
// item with /usr/bin/security every few hours, and each rewrite resets the
// item's access list to trust that program only. Reading through the same
// program keeps the one-time "Always Allow" valid; a binary of our own would
// be prompted after every token refresh. The framework is used for one
// thing only, in a file built on macOS with cgo: reading an item's
// attributes (never its secret) to notice changes cheaply.
//
// Everything here runs on Linux too, against a fake security
// (internal/fakesecurity), named by MC_BROKER_SECURITY_BIN.
package keychain

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/text/unicode/norm"

	"github.com/mc-broker/mc-broker/broker"
	"github.com/mc-broker/mc-broker/broker/credential"
	"github.com/mc-broker/mc-broker/broker/filelock"
)

// Item names a generic password.
type Item struct {
	Service string
	Account string
}

func (i Item) String() string { return fmt.Sprintf("%q (account %q)", i.Service, i.Account) }

// isClaudeAccountName is what Claude Code accepts as an account name
// (^[a-zA-Z0-9._-]+$); any other user name makes it use "claude-code-user"
// (checked in claude 2.1.332). A loop, not a regexp compiled at package
// initialisation: every mc-broker start would pay for it.
func isClaudeAccountName(s string) bool {
	for _, c := range []byte(s) {
		if !(c == '.' || c == '_' || c == '-' || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || ('0' <= c && c <= '9')) {
			return false
		}
	}
	return s != ""
}

// ClaudeItem is where Claude Code keeps its login: service
// "Claude Code-credentials", with "-" and the first 8 hex digits of the
// sha256 of the NFC-normalised config directory appended when
// CLAUDE_CONFIG_DIR is set (configDir is its value, "" when unset); account
// the user name.
func ClaudeItem(configDir, user string) Item {
	service := "Claude Code-credentials"
	if configDir != "" {
		sum := sha256.Sum256([]byte(norm.NFC.String(configDir)))
		service += "-" + hex.EncodeToString(sum[:])[:8]
	}
	if !isClaudeAccountName(user) {
		user = "claude-code-user"
	}
	return Item{Service: service, Account: user}
}

// GeminiItem is where Gemini CLI keeps its login when
// GEMINI_FORCE_ENCRYPTED_FILE_STORAGE=true selects the OS keychain.
func GeminiItem() Item { return Item{Service: "gemini-cli-oauth", Account: "main-account"} }

// CodexItem is where Codex keeps its login with keyring storage: service
// "Codex Auth", account "cli|" and the first 16 hex digits of the sha256 of
// CODEX_HOME (symlinks resolved when it exists, as Codex canonicalises it).
func CodexItem(codexHome string) Item {
	if real, err := filepath.EvalSymlinks(codexHome); err == nil {
		codexHome = real
	}
	sum := sha256.Sum256([]byte(codexHome))
	return Item{Service: "Codex Auth", Account: "cli|" + hex.EncodeToString(sum[:])[:16]}
}

// LoginKeychain is the user's login keychain file: a change to it is an
// extra hint that an item changed.
func LoginKeychain(home string) string {
	return filepath.Join(home, "Library", "Keychains", "login.keychain-db")
}

// Options describe one Keychain source.
type Options struct {
	Name string
	Kind credential.Kind
	Item Item
	// Security runs the program; its zero value runs /usr/bin/security.
	Security Security
	// Codec converts between the item's value and the file the CLI keeps
	// in a container; nil stores the file's bytes as they are (Claude,
	// Codex). See GeminiCodec.
	Codec Codec
	// Watch lists files whose change hints that the item changed (the
	// login keychain on macOS); returned by WatchedFiles.
	Watch []string
	// WriteLock is the CLI's mkdir-style write lock, taken by Update around
	// its read and write (Claude: ClaudeWriteLock); none when empty.
	WriteLock string
	// OwnLock is mc-broker's own lock file held around WriteLock
	// (filelock.DirLockOwned); none when empty.
	OwnLock string
	// LockWait bounds the wait for WriteLock; DefaultTimeout when zero.
	LockWait time.Duration
	// ConfigDir is the CLI's config directory on this host (Claude: where
	// it takes its refresh lock, whatever store holds the login); watch
	// mirrors the refresh lock there unless NoLockMirror.
	ConfigDir    string
	NoLockMirror bool
}

// RefreshLockDir is the directory where the CLI on the host takes its
// refresh lock: its config directory, not the Keychain's.
func (s *Source) RefreshLockDir() string { return s.o.ConfigDir }

// MirrorRefreshLock reports whether watch may mirror the refresh lock into
// RefreshLockDir (config: mirror_refresh_lock).
func (s *Source) MirrorRefreshLock() bool { return !s.o.NoLockMirror && s.o.ConfigDir != "" }

// ClaudeWriteLock is the lock directory Claude Code takes around writing
// its secure storage: .storage-write.lock in its config directory.
func ClaudeWriteLock(configDir string) string {
	return filepath.Join(configDir, ".storage-write.lock")
}

// Source is a login in a Keychain item. It implements broker.Source,
// broker.WritableSource, broker.ChangePoller and broker.WatchedFiles.
type Source struct {
	o     Options
	attrs attributeReader

	mu       sync.Mutex
	polled   bool
	lastSeen string // Attributes.Modified at the last Changed, "" for no item
}

var (
	_ broker.WritableSource = (*Source)(nil)
	_ broker.ChangePoller   = (*Source)(nil)
	_ broker.WatchedFiles   = (*Source)(nil)
)

// New returns the source for o.
func New(o Options) *Source {
	if o.Codec == nil {
		o.Codec = identity{}
	}
	s := &Source{o: o}
	s.attrs = platformAttributes(&s.o.Security)
	return s
}

func (s *Source) Name() string          { return s.o.Name }
func (s *Source) Kind() credential.Kind { return s.o.Kind }
func (s *Source) Item() Item            { return s.o.Item }

// Location names the item for people.
func (s *Source) Location() string { return "Keychain item " + s.o.Item.String() }

// Read returns the login in the shape the CLI keeps in its file. A missing
// item is a *NotFoundError, which matches credential.ErrNotLoggedIn; the
// broker adds "run claude and /login".
func (s *Source) Read(ctx context.Context) ([]byte, error) {
	raw, err := s.o.Security.FindSecret(ctx, s.o.Item)
	if err != nil {
		return nil, err
	}
	return s.fromStore(raw), nil
}

// fromStore converts; a value that does not convert is returned as it is,
// for the broker to judge broken (it never validates here).
func (s *Source) fromStore(raw []byte) []byte {
	if out, err := s.o.Codec.FromStore(raw); err == nil {
		return out
	}
	return raw
}

// Changed reports whether the item's modification date differs from the
// one seen at the previous call, reading attributes only: no secret, no
// prompt. The first call reports true. The keychain keeps dates to the
// second, so two writes within one second look like one; the watcher's
// watch of the login keychain file (WatchedFiles) covers that.
func (s *Source) Changed(ctx context.Context) (bool, error) {
	a, err := s.attrs.attributes(ctx, s.o.Item)
	if err != nil && !isNotFound(err) {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	changed := !s.polled || a.Modified != s.lastSeen
	s.polled, s.lastSeen = true, a.Modified
	return changed, nil
}

// WatchedFiles returns Options.Watch.
func (s *Source) WatchedFiles() []string { return append([]string(nil), s.o.Watch...) }

// Update is write-back: holding the CLI's write lock (Options.WriteLock),
// it reads the item (exists is false when there is none), calls decide with the login in the CLI's file shape, and when
// decide says so writes the result into the item with `security -i`,
// keeping its service, account and label, then reads it back and fails
// with *VerifyError when the item does not hold what was written.
//
// Update keeps no backup: the caller keeps the previous login (decide gets
// it as current) before returning write=true, as the watcher does.
func (s *Source) Update(ctx context.Context, decide broker.Decide) error {
	if s.o.WriteLock != "" {
		wait := s.o.LockWait
		if wait <= 0 {
			wait = DefaultTimeout
		}
		release, err := filelock.DirLockOwned(ctx, s.o.WriteLock, s.o.OwnLock, wait)
		if err != nil {
			return err
		}
		defer release()
	}
	item := s.o.Item
	label := item.Service // what Claude Code and gemini-cli give new items
	exists := true
	a, err := s.o.Security.FindAttributes(ctx, item)
	switch {
	case isNotFound(err):
		exists = false
	case err != nil:
		return err
	case a.Label != "":
		label = a.Label
	}
	var raw, current []byte
	if exists {
		raw, err = s.o.Security.FindSecret(ctx, item)
		if isNotFound(err) {
			exists = false // deleted between the two calls
		} else if err != nil {
			return err
		} else {
			current = s.fromStore(raw)
		}
	}
	next, write := decide(current, exists)
	if !write {
		return nil
	}
	stored, err := s.o.Codec.ToStore(next, raw)
	if err != nil {
		return err
	}
	if err := s.o.Security.Write(ctx, item, label, stored); err != nil {
		return err
	}
	back, err := s.o.Security.FindSecret(ctx, item)
	if err != nil {
		return fmt.Errorf("wrote %s but cannot read it back: %w", item, err)
	}
	if !bytes.Equal(back, stored) {
		return &VerifyError{Item: item}
	}
	return nil
}

func isNotFound(err error) bool {
	var nf *NotFoundError
	return errors.As(err, &nf)
}

// attributeReader reads an item's attributes without its secret.
type attributeReader interface {
	attributes(ctx context.Context, item Item) (Attributes, error)
}

// securityAttributes reads attributes through `security` without -w.
type securityAttributes struct{ s *Security }

func (r securityAttributes) attributes(ctx context.Context, item Item) (Attributes, error) {
	return r.s.FindAttributes(ctx, item)
}

// BinFromEnv returns the security program named by MC_BROKER_SECURITY_BIN,
// or DefaultBin.
func BinFromEnv(getenv func(string) string) string {
	if b := getenv(BinEnv); b != "" {
		return b
	}
	return DefaultBin
}
