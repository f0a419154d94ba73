package broker

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"sort"
	"sync"
	"time"

	"github.com/mc-broker/mc-broker/broker/credential"
)

// Sync makes every selected copy hold its source's login, unless the copy
// is newer or the source has no usable login.
func (b *Broker) Sync(ctx context.Context, opts Options) *Report {
	return b.pass(ctx, opts, false)
}

// Status compares every selected copy with its source and writes nothing.
func (b *Broker) Status(ctx context.Context, opts Options) *Report {
	return b.pass(ctx, opts, true)
}

func (b *Broker) pass(ctx context.Context, opts Options, statusOnly bool) *Report {
	report := &Report{DryRun: opts.DryRun && !statusOnly}
	type job struct {
		src  int
		cp   int
		kind credential.Kind
		copy Copy
	}
	var jobs []job
	logins := map[int]*login{}
	for _, s := range b.Sources {
		if !opts.selects(s.Name()) {
			continue
		}
		sr, l := b.readSource(ctx, s, opts)
		i := len(report.Sources)
		if l != nil {
			logins[i] = l
		}
		for _, c := range b.Copies {
			if c.Source == s.Name() {
				jobs = append(jobs, job{src: i, cp: len(sr.Copies), kind: s.Kind(), copy: c})
				sr.Copies = append(sr.Copies, CopyReport{Location: c.Sink.Location()})
			}
		}
		report.Sources = append(report.Sources, sr)
	}

	// What a copy should hold depends only on the login and the copy's
	// options: work it out once per pair, not once per copy.
	for _, j := range jobs {
		if l := logins[j.src]; l != nil {
			l.prepare(j.copy.Options)
		}
	}

	parallel := b.Parallel
	if parallel <= 0 {
		parallel = 8
	}
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for _, j := range jobs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			kind := j.kind
			out := &report.Sources[j.src].Copies[j.cp]
			l := logins[j.src]
			switch {
			case statusOnly || opts.DryRun:
				b.inspectCopy(ctx, kind, l, j.copy, out, statusOnly)
			case l == nil:
				out.Outcome = Skipped
			default:
				b.updateCopy(ctx, kind, l, j.copy, out)
			}
		}()
	}
	wg.Wait()
	return report
}

// login is a source's valid login.
type login struct {
	data []byte
	info credential.Info
	kind credential.Kind
	// forCopy holds what copies with the given options should contain;
	// filled before copies are written in parallel, read-only after.
	forCopy map[credential.CopyOptions]prepared
}

type prepared struct {
	data []byte
	err  error
}

func (l *login) prepare(o credential.CopyOptions) {
	if _, done := l.forCopy[o]; !done {
		data, err := credential.ForCopy(l.kind, l.data, o)
		l.forCopy[o] = prepared{data, err}
	}
}

// want returns what a copy with options o holds; prepare(o) ran before.
func (l *login) want(o credential.CopyOptions) ([]byte, error) {
	p := l.forCopy[o]
	return p.data, p.err
}

func (b *Broker) readSource(ctx context.Context, s Source, opts Options) (SourceReport, *login) {
	kind := s.Kind()
	sr := SourceReport{
		Name:      s.Name(),
		Kind:      kind.Name(),
		Location:  s.Location(),
		Requested: len(opts.Only) > 0,
		Copies:    []CopyReport{},
	}
	data, info, err := b.readSettled(ctx, s)
	switch {
	case errors.Is(err, credential.ErrNotLoggedIn):
		sr.State = SourceNotLoggedIn
		sr.Problem = err.Error()
		sr.Hint = loginHint(kind)
		return sr, nil
	case credential.IsBroken(err):
		sr.State = SourceBroken
		sr.Problem = err.Error()
		sr.Hint = "copies were left as they are; " + loginHint(kind)
		return sr, nil
	case err != nil:
		sr.State = SourceUnreadable
		sr.Problem = err.Error()
		// A source's typed errors may say what to do (Keychain: unlock it).
		var h interface{ Hint() string }
		if errors.As(err, &h) {
			sr.Hint = h.Hint()
		}
		return sr, nil
	}
	sr.State = SourceValid
	sr.Fingerprint = info.Fingerprint
	if !info.Expiry.IsZero() {
		exp := info.Expiry
		sr.ExpiresAt = &exp
		left := exp.Sub(b.now())
		sr.ExpiresInSeconds = int64(left.Seconds())
		if opts.MinTTL > 0 && left < opts.MinTTL {
			sr.ExpiresSoon = true
			sr.Problem = "expires sooner than --min-ttl " + opts.MinTTL.String()
			sr.Hint = "let " + kind.Name() + " refresh its login (run it once), or lower --min-ttl"
		}
	}
	return sr, &login{data: data, info: info, kind: kind, forCopy: map[credential.CopyOptions]prepared{}}
}

// readSettled reads and inspects a source, reading again after a short
// wait while the content looks like a write caught halfway.
func (b *Broker) readSettled(ctx context.Context, s Source) ([]byte, credential.Info, error) {
	delay := b.SettleDelay
	if delay <= 0 {
		delay = 100 * time.Millisecond
	}
	for try := 0; ; try++ {
		data, err := s.Read(ctx)
		var info credential.Info
		if err == nil {
			info, err = s.Kind().Inspect(data)
		}
		if !credential.IsPartial(err) || try == settleTries {
			return data, info, err
		}
		select {
		case <-ctx.Done():
			return data, info, err
		case <-time.After(delay):
		}
	}
}

// judge compares a copy with the login it should hold. It returns what a
// sync does and what status shows.
func judge(kind credential.Kind, want []byte, src credential.Info, current []byte, exists bool) (syncs, shows Outcome, cur credential.Info, curErr error) {
	if !exists {
		return Created, Missing, cur, nil
	}
	if bytes.Equal(current, want) {
		// The same bytes as the source's login: the same fingerprint and
		// expiry, no need to parse them again (the common case of a pass).
		return Unchanged, InSync, src, nil
	}
	cur, curErr = kind.Inspect(current)
	if curErr != nil {
		return Repaired, Broken, cur, curErr
	}
	c, ordered := cur.Freshness.Compare(src.Freshness)
	switch {
	case ordered && c > 0:
		return KeptNewer, Newer, cur, nil
	case ordered && c < 0:
		return Updated, Older, cur, nil
	}
	return Updated, Differs, cur, nil
}

func (b *Broker) updateCopy(ctx context.Context, kind credential.Kind, l *login, c Copy, out *CopyReport) {
	want, err := l.want(c.Options)
	if err != nil {
		out.Outcome, out.Problem = Failed, err.Error()
		return
	}
	err = c.Sink.Update(ctx, func(current []byte, exists bool) ([]byte, bool) {
		outcome, _, cur, curErr := judge(kind, want, l.info, current, exists)
		out.Outcome = outcome
		if outcome.Writes() {
			describeCopy(&l.info, out)
			if curErr != nil {
				out.Problem = "was " + curErr.Error()
			}
			return want, true
		}
		describeCopy(&cur, out)
		return nil, false
	})
	if err != nil {
		out.Outcome, out.Problem = Failed, err.Error()
		out.Fingerprint, out.ExpiresAt = "", nil
		return
	}
	b.writeCompanions(ctx, c, out)
}

// writeCompanions adds the copy's missing companion files, in name order.
func (b *Broker) writeCompanions(ctx context.Context, c Copy, out *CopyReport) {
	cw, ok := c.Sink.(CompanionWriter)
	if !ok || len(c.Companions) == 0 {
		return
	}
	names := make([]string, 0, len(c.Companions))
	for name := range c.Companions {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		written, err := cw.WriteIfAbsent(ctx, name, c.Companions[name])
		if err != nil {
			out.Outcome, out.Problem = Failed, "companion file "+name+": "+err.Error()
			return
		}
		if written {
			out.Companions = append(out.Companions, name)
		}
	}
}

// inspectCopy fills a status or dry-run entry from a read of the copy.
func (b *Broker) inspectCopy(ctx context.Context, kind credential.Kind, l *login, c Copy, out *CopyReport, statusOnly bool) {
	current, err := c.Sink.Read(ctx)
	exists := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		out.Outcome, out.Problem = Failed, err.Error()
		return
	}
	if l == nil {
		// No usable source: show the copy on its own.
		out.Outcome = Missing
		if exists {
			info, err := kind.Inspect(current)
			out.Outcome = Present
			if err != nil {
				out.Outcome, out.Problem = Broken, err.Error()
			}
			describeCopy(&info, out)
		}
		if !statusOnly {
			out.Outcome = Skipped
		}
		return
	}
	want, err := l.want(c.Options)
	if err != nil {
		out.Outcome, out.Problem = Failed, err.Error()
		return
	}
	syncs, shows, cur, curErr := judge(kind, want, l.info, current, exists)
	out.Outcome = shows
	if !statusOnly {
		out.Outcome = syncs
	}
	if curErr != nil {
		out.Problem = curErr.Error()
	}
	if exists && curErr == nil {
		describeCopy(&cur, out)
	}
}

func describeCopy(info *credential.Info, out *CopyReport) {
	if info == nil || info.Fingerprint == "" {
		return
	}
	out.Fingerprint = info.Fingerprint
	if !info.Expiry.IsZero() {
		exp := info.Expiry
		out.ExpiresAt = &exp
	}
}

// loginHint tells the user how to log the kind's CLI in again.
func loginHint(kind credential.Kind) string {
	switch kind.Name() {
	case "claude":
		return "run claude and /login"
	case "codex":
		return "run codex login"
	case "gemini":
		return "run gemini and choose Login with Google"
	}
	return "check that the file exists and holds the credential"
}
