package broker

import "time"

// SourceState is what reading a source found.
type SourceState string

const (
	SourceValid       SourceState = "valid"
	SourceNotLoggedIn SourceState = "not-logged-in"
	SourceBroken      SourceState = "broken"
	SourceUnreadable  SourceState = "unreadable"
)

// Outcome is what a pass did, or (status, dry run) would do, to one copy.
type Outcome string

const (
	// Sync outcomes.
	Created   Outcome = "created"    // there was no copy
	Updated   Outcome = "updated"    // the copy held an older or different login
	Repaired  Outcome = "repaired"   // the copy was broken (blanked, truncated, not JSON)
	Unchanged Outcome = "unchanged"  // already identical: nothing written
	KeptNewer Outcome = "kept-newer" // the copy is newer than the source: left alone
	Failed    Outcome = "failed"     // could not be read or written
	Skipped   Outcome = "skipped"    // the source has no usable login: copy left as it is
	TakenBack Outcome = "taken-back" // the copy's newer login was taken back into the host and sent to the other copies
	Refused   Outcome = "refused"    // not a login file of this kind: not ours to replace, left as it is
	Waiting   Outcome = "waiting"    // looks half-written (a CLI writing it in place): looked at again shortly
	NotSeen   Outcome = "not-seen"   // not read yet (a slow store; watch only)
	Revoked   Outcome = "revoked"    // mc-broker revoke took the login out: not written until the next sync or login

	// Status states.
	InSync       Outcome = "in-sync"
	Older        Outcome = "older"
	Newer        Outcome = "newer"
	Differs      Outcome = "differs" // same freshness, other bytes: sync rewrites it
	Missing      Outcome = "missing"
	Broken       Outcome = "broken"
	Present      Outcome = "present"       // the source is unusable, so no comparison
	Foreign      Outcome = "foreign"       // not a login file of this kind: mc-broker does not replace it
	OtherAccount Outcome = "other-account" // a login of another account: mc-broker does not take it back
)

// Writes reports whether the outcome is (or, in a dry run, would be) a write.
func (o Outcome) Writes() bool { return o == Created || o == Updated || o == Repaired }

// Report is the result of one pass over all selected sources.
type Report struct {
	DryRun  bool           `json:"dry_run,omitempty"`
	Sources []SourceReport `json:"sources"`
}

// SourceReport describes one source and its copies. It never holds a secret.
type SourceReport struct {
	Name             string      `json:"name"`
	Kind             string      `json:"kind"`
	Location         string      `json:"location"`
	State            SourceState `json:"state"`
	Fingerprint      string      `json:"fingerprint,omitempty"`
	ExpiresAt        *time.Time  `json:"expires_at,omitempty"`
	ExpiresInSeconds int64       `json:"expires_in_seconds,omitempty"`
	// RefreshExpiresAt is when the refresh token itself ends (Claude):
	// after it only a new login helps.
	RefreshExpiresAt *time.Time `json:"refresh_expires_at,omitempty"`
	// RefreshExpiresInSeconds is how long until then (negative: past).
	RefreshExpiresInSeconds int64  `json:"refresh_expires_in_seconds,omitempty"`
	Problem                 string `json:"problem,omitempty"`
	Hint                    string `json:"hint,omitempty"`
	// TakenBackFrom names the copy whose newer login the host took (or, in
	// status and dry runs, would take) in this pass; Backup where the
	// host's previous login was kept.
	TakenBackFrom string `json:"taken_back_from,omitempty"`
	Backup        string `json:"backup,omitempty"`
	// WriteBackProblem says why a take-back could not be written into the
	// host's store; the copies got the login anyway.
	WriteBackProblem string `json:"write_back_problem,omitempty"`
	// RevokedAt is when the copies were revoked (mc-broker revoke): none
	// is written until the next sync or login. Unrevoked is set when this
	// pass lifted such a revocation.
	RevokedAt   *time.Time `json:"revoked_at,omitempty"`
	Unrevoked   bool       `json:"unrevoked,omitempty"`
	Requested   bool       `json:"requested,omitempty"`    // named with --only
	ExpiresSoon bool       `json:"expires_soon,omitempty"` // sooner than --min-ttl
	// RefreshExpiresSoon: the refresh token ends sooner than
	// --min-refresh-ttl; only a new login helps.
	RefreshExpiresSoon bool         `json:"refresh_expires_soon,omitempty"`
	Copies             []CopyReport `json:"copies"`
}

// CopyReport describes one copy. Fingerprint and ExpiresAt are the copy's
// after the pass (before it, for a dry run or status).
type CopyReport struct {
	Location    string     `json:"location"`
	Outcome     Outcome    `json:"outcome"`
	Fingerprint string     `json:"fingerprint,omitempty"`
	ExpiresAt   *time.Time `json:"expires_at,omitempty"`
	Problem     string     `json:"problem,omitempty"`
	// Refused says why the copy's newer login was not taken back into the
	// host (another account, an implausible expiry, too many take-backs).
	Refused string `json:"refused,omitempty"`
	// Companions lists the companion files this pass created.
	Companions []string `json:"companions_created,omitempty"`
}

// Exit codes, documented in the README.
const (
	ExitOK         = 0
	ExitCopyFailed = 1 // a copy (or a source) could not be read or written
	ExitUsage      = 2 // bad usage or config
	ExitCredential = 3 // a login is broken, missing when requested, or expires (or its refresh token ends) too soon
)

// RefreshWarning is how far ahead of a refresh token's end doctor and
// watch ask for a new login (Claude Code itself warns 3 days ahead).
const RefreshWarning = 3 * 24 * time.Hour

// Exit code 4 is compose check's (launch/compose): mounts that lose logins.

// ExitCode maps the report to the documented exit codes; a credential
// problem (3) outranks a failed copy (1).
func (r *Report) ExitCode() int {
	code := ExitOK
	for _, s := range r.Sources {
		switch {
		case s.State == SourceBroken, s.ExpiresSoon, s.RefreshExpiresSoon,
			s.State == SourceNotLoggedIn && s.Requested:
			return ExitCredential
		case s.State == SourceUnreadable:
			code = ExitCopyFailed
		}
		if s.WriteBackProblem != "" {
			code = max(code, ExitCopyFailed)
		}
		for _, c := range s.Copies {
			switch {
			case c.Outcome == Refused || c.Outcome == Foreign:
				// A copy path that names a file that is not a login of this
				// kind is a config problem: nothing was written there.
				code = max(code, ExitUsage)
			case c.Outcome == Failed, c.Outcome == OtherAccount, c.Refused != "":
				code = max(code, ExitCopyFailed)
			}
		}
	}
	return code
}
