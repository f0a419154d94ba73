// Package broker is mc-broker's core: it reads each source's login, decides
// per copy what to do (newest wins, never propagate a broken login), and
// reports what happened. It knows nothing about Docker, the macOS Keychain or
// any particular file layout: sources and sinks bring that.
package broker

import (
	"context"
	"time"

	"github.com/mc-broker/mc-broker/broker/credential"
)

// Source is where the host keeps one login.
type Source interface {
	// Name is the source's config name (claude, work-claude, ...).
	Name() string
	Kind() credential.Kind
	// Location says where the login is read, for people (a path, a
	// Keychain item).
	Location() string
	// Read returns the stored bytes. A store with no login returns an error
	// that matches credential.ErrNotLoggedIn; Read never validates, the
	// broker does.
	Read(ctx context.Context) ([]byte, error)
}

// Decide is called by Sink.Update with the copy's current bytes (exists is
// false when there is none) and returns what to write, if anything.
type Decide func(current []byte, exists bool) (next []byte, write bool)

// Sink is one container-ready copy.
type Sink interface {
	// Location says where the copy lives, for people.
	Location() string
	// Read returns the copy's bytes, or an error matching fs.ErrNotExist
	// when there is no copy yet.
	Read(ctx context.Context) ([]byte, error)
	// Update reads the current copy and writes what decide returns, holding
	// whatever locks keep concurrent writers (other mc-broker runs, the CLI
	// itself) from interleaving between the read and the write.
	Update(ctx context.Context, decide Decide) error
}

// TidyReader is implemented by sinks that can tell, as they read a copy,
// that its mode or owner is not what it would be written with; the pass
// then has the sink's Update put that right without rewriting the copy.
type TidyReader interface {
	ReadTidy(ctx context.Context) (data []byte, untidy bool, err error)
}

// PassEnder is implemented by sinks that keep something set up between a
// pass's read and its write (a helper container): EndPass lets it go.
type PassEnder interface {
	EndPass(ctx context.Context)
}

// EndPass ends the pass for every copy that keeps something between its
// read and its write.
func EndPass(ctx context.Context, copies []Copy) {
	for _, c := range copies {
		if pe, ok := c.Sink.(PassEnder); ok {
			pe.EndPass(ctx)
		}
	}
}

// Copy ties a sink to the source it follows.
type Copy struct {
	Source  string
	Sink    Sink
	Options credential.CopyOptions
	// Companions are non-secret files (by name) the CLI in a container needs
	// beside its login; written only when absent, by sinks that implement
	// CompanionWriter.
	Companions map[string][]byte
}

// CompanionWriter is implemented by sinks that can hold companion files
// next to the login. WriteIfAbsent never replaces an existing file: the
// container's CLI owns it once it is there.
type CompanionWriter interface {
	WriteIfAbsent(ctx context.Context, name string, data []byte) (written bool, err error)
}

// Broker is the configured sources and copies; Sync and Status run one
// Pass per source.
type Broker struct {
	Sources []Source
	Copies  []Copy
	// Now is the clock for expiry checks; time.Now when nil.
	Now func() time.Time
	// Parallel caps how many copies are read or written at once (default
	// 16): each write ends in an fsync, so a sync with many copies is
	// I/O-bound.
	Parallel int
	// Rules are the plan's limits (patience with half-written content,
	// take-backs per copy, --force).
	Rules Rules
	// StateDir keeps what the broker remembers between runs (memory/) and
	// the host's previous logins (backups/). Without it nothing is
	// remembered and nothing is taken back.
	StateDir string
}

func (b *Broker) now() time.Time {
	if b.Now != nil {
		return b.Now()
	}
	return time.Now()
}

// Options select and qualify a pass.
type Options struct {
	// Only limits the pass to these sources; a named source that is not
	// logged in is then a failure, not a skip.
	Only []string
	// MinTTL flags logins that expire sooner than this; MinRefreshTTL
	// those whose refresh token ends sooner than this.
	MinTTL, MinRefreshTTL time.Duration
	// DryRun decides and reports but writes nothing.
	DryRun bool
	// LiftRevocation gives revoked copies (mc-broker revoke) the login
	// again: sync and login, said explicitly, do; a watcher never does.
	LiftRevocation bool
}

func (o Options) selects(name string) bool {
	if len(o.Only) == 0 {
		return true
	}
	for _, n := range o.Only {
		if n == name {
			return true
		}
	}
	return false
}
