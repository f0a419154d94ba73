package broker

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"
)

// Sync makes every selected copy hold its source's newest trusted login:
// the host's, or one taken back from a copy.
func (b *Broker) Sync(ctx context.Context, opts Options) *Report {
	return b.pass(ctx, opts, false)
}

// Status compares every selected copy with its source and writes nothing.
func (b *Broker) Status(ctx context.Context, opts Options) *Report {
	return b.pass(ctx, opts, true)
}

func (b *Broker) pass(ctx context.Context, opts Options, statusOnly bool) *Report {
	report := &Report{DryRun: opts.DryRun && !statusOnly}
	var selected []Source
	for _, s := range b.Sources {
		if opts.selects(s.Name()) {
			selected = append(selected, s)
		}
	}
	report.Sources = make([]SourceReport, len(selected))
	// One login's trouble (a slow Keychain) never delays another's.
	var wg sync.WaitGroup
	for i, s := range selected {
		wg.Go(func() {
			p := b.NewPass(s)
			unrevoked := false
			if opts.LiftRevocation && !statusOnly {
				if opts.DryRun {
					// Decide as the sync would, which lifts it.
					unrevoked, p.Revocations = !p.Revocations.At(s.Name()).IsZero(), nil
				} else {
					unrevoked, _ = p.Revocations.Clear(s.Name())
				}
			}
			report.Sources[i] = p.Run(ctx, PassOptions{
				DryRun: opts.DryRun, StatusOnly: statusOnly,
				MinTTL: opts.MinTTL, MinRefreshTTL: opts.MinRefreshTTL, Requested: len(opts.Only) > 0,
			})
			report.Sources[i].Unrevoked = unrevoked
			if !opts.DryRun && !statusOnly && b.StateDir != "" {
				_ = b.memories().Save(s.Name(), p.Memory)
			}
		})
	}
	wg.Wait()
	return report
}

// NewPass returns a Pass over source s and its copies, with the memory
// kept in the state directory.
func (b *Broker) NewPass(s Source) *Pass {
	p := &Pass{
		Source:   s,
		Copies:   b.CopiesOf(s.Name()),
		Rules:    b.Rules,
		Now:      b.Now,
		Parallel: b.Parallel,
		Memory:   NewMemory(),
		// Revocations: nil without a state directory, so never revoked.
		Revocations: b.Revocations(),
	}
	if p.Rules.Patience == 0 {
		p.Rules.Patience = DefaultSettle
	}
	if b.StateDir != "" {
		p.Memory = b.memories().Load(s.Name())
		p.Backups = b.Backups()
	}
	return p
}

// DefaultSettle is how long a one-shot command gives content that looks
// half-written (Gemini CLI writes its file in place) before it is judged.
const DefaultSettle = 300 * time.Millisecond

// CopiesOf lists the copies that follow source name.
func (b *Broker) CopiesOf(name string) []Copy {
	var out []Copy
	for _, c := range b.Copies {
		if c.Source == name {
			out = append(out, c)
		}
	}
	return out
}

func (b *Broker) memories() MemoryFiles {
	return MemoryFiles{Dir: filepath.Join(b.StateDir, "memory")}
}

// Memories is where the sources' memory is kept.
func (b *Broker) Memories() MemoryFiles { return b.memories() }

// Backups is where the host's logins are kept before a take-back.
func (b *Broker) Backups() *Backups {
	return &Backups{Dir: filepath.Join(b.StateDir, "backups")}
}

// Restore writes data, a login kept in the backups, into source's store
// (keeping what is there first), then gives every copy of that login the
// restored one, newer copies included.
func (b *Broker) Restore(ctx context.Context, src Source, data []byte) (*Report, error) {
	ws, ok := src.(WritableSource)
	if !ok {
		return nil, errors.New("this store cannot be written by mc-broker")
	}
	p := b.NewPass(src)
	if p.Backups == nil {
		return nil, errors.New("no state directory to keep the current login in")
	}
	kind := src.Kind()
	info, err := kind.Inspect(data)
	if err != nil {
		return nil, err
	}
	now := p.now()
	var keepErr error
	err = ws.Update(ctx, func(current []byte, exists bool) ([]byte, bool) {
		if exists && len(current) > 0 {
			curInfo, _ := kind.Inspect(current)
			if _, keepErr = p.Backups.Keep(src.Name(), current, curInfo, !p.Memory.store(HostKey).gave(current), now); keepErr != nil {
				return nil, false
			}
		}
		return data, true
	})
	if err == nil && keepErr != nil {
		err = fmt.Errorf("cannot keep the current login first: %w", keepErr)
	}
	if err != nil {
		return nil, err
	}
	p.Memory.Remember(info)
	p.Memory.Store(HostKey).Given = Hash(data)
	p.Rules.HostWins = true
	report := &Report{Sources: []SourceReport{p.Run(ctx, PassOptions{Requested: true})}}
	_ = b.memories().Save(src.Name(), p.Memory)
	return report, nil
}
