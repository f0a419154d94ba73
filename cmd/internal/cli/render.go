package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/mc-broker/mc-broker/broker"
)

// printReport writes a pass's report for people or, with asJSON, scripts.
// Reports carry fingerprints and expiry times only, so nothing here can
// print a secret.
func printReport(f *Factory, r *broker.Report, asJSON, status bool) error {
	if asJSON {
		enc := json.NewEncoder(f.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			*broker.Report
			ExitCode int `json:"exit_code"`
		}{r, r.ExitCode()})
	}
	w := f.Stdout
	if len(r.Sources) == 0 {
		fmt.Fprintln(w, "no sources configured")
	}
	counts := map[broker.Outcome]int{}
	for _, s := range r.Sources {
		printSource(w, s, f.Now())
		for _, c := range s.Copies {
			counts[c.Outcome]++
			printCopy(w, c, r.DryRun)
		}
		if s.Hint != "" {
			fmt.Fprintf(w, "  hint: %s\n", s.Hint)
		}
	}
	if !status {
		fmt.Fprintln(w, summary(counts, r.DryRun))
	}
	return nil
}

func printSource(w io.Writer, s broker.SourceReport, now time.Time) {
	switch s.State {
	case broker.SourceValid:
		line := s.Name + ": logged in"
		if s.Kind == "file" {
			line = s.Name + ": present"
		}
		if s.Fingerprint != "" {
			line += ", " + s.Fingerprint
		}
		if s.ExpiresAt != nil {
			line += ", " + expiry(*s.ExpiresAt, now)
		}
		if s.ExpiresSoon {
			line += " — " + s.Problem
		}
		fmt.Fprintln(w, line)
		if s.RefreshExpiresAt != nil {
			fmt.Fprintf(w, "  refresh token %s\n", refreshExpiry(s.Name, *s.RefreshExpiresAt, now))
		}
		if s.RefreshExpiresSoon {
			fmt.Fprintf(w, "  %s\n", s.Problem)
		}
	case broker.SourceNotLoggedIn:
		fmt.Fprintf(w, "%s: not logged in (%s)\n", s.Name, s.Problem)
	case broker.SourceBroken:
		fmt.Fprintf(w, "%s: BROKEN login, not copied: %s\n", s.Name, s.Problem)
	case broker.SourceUnreadable:
		fmt.Fprintf(w, "%s: cannot read the login: %s\n", s.Name, s.Problem)
	}
	fmt.Fprintf(w, "  from %s\n", s.Location)
	switch {
	case s.RevokedAt != nil:
		fmt.Fprintf(w, "  copies revoked %s: none is given the login until mc-broker sync or mc-broker login %s\n", s.RevokedAt.UTC().Format("2006-01-02 15:04:05 MST"), s.Name)
	case s.Unrevoked:
		fmt.Fprintln(w, "  copies had been revoked: this sync gives them the login again")
	}
	if s.TakenBackFrom != "" {
		line := "  took a newer login back from " + s.TakenBackFrom
		if s.Backup != "" {
			line += " (the host's previous login is kept in " + s.Backup + ")"
		}
		fmt.Fprintln(w, line)
	}
	if s.WriteBackProblem != "" {
		fmt.Fprintf(w, "  WRITE-BACK FAILED: %s; the copies got the newer login anyway\n", s.WriteBackProblem)
	}
}

// refreshExpiry says when the user must log in again: a refresh token
// cannot be refreshed, only replaced by a new login.
func refreshExpiry(name string, at, now time.Time) string {
	left := at.Sub(now)
	when := at.UTC().Format("2006-01-02 15:04 MST")
	switch {
	case left < 0:
		return "ENDED " + when + " (" + humanDuration(-left) + " ago): log in again: mc-broker login " + name
	case left < broker.RefreshWarning:
		return "ENDS " + when + " (in " + humanDuration(left) + "): log in again before then: mc-broker login " + name
	}
	return "valid until " + when + " (in " + humanDuration(left) + "); log in again before then (mc-broker login " + name + ")"
}

func printCopy(w io.Writer, c broker.CopyReport, dryRun bool) {
	label := string(c.Outcome)
	if dryRun && (c.Outcome.Writes() || c.Outcome == broker.TakenBack) {
		label = map[broker.Outcome]string{broker.Created: "would create", broker.Updated: "would update", broker.Repaired: "would repair", broker.TakenBack: "would take back"}[c.Outcome]
	}
	line := fmt.Sprintf("  %-12s %s", label, c.Location)
	var details []string
	if c.Fingerprint != "" {
		details = append(details, c.Fingerprint)
	}
	if c.ExpiresAt != nil {
		details = append(details, "expires "+c.ExpiresAt.UTC().Format("2006-01-02 15:04 MST"))
	}
	if c.Problem != "" {
		details = append(details, c.Problem)
	}
	if c.Refused != "" && !strings.Contains(c.Problem, c.Refused) {
		details = append(details, "not taken back: "+c.Refused)
	}
	if len(c.Companions) > 0 {
		details = append(details, "added "+strings.Join(c.Companions, ", "))
	}
	if len(details) > 0 {
		line += " (" + strings.Join(details, ", ") + ")"
	}
	fmt.Fprintln(w, line)
}

func expiry(at, now time.Time) string {
	left := at.Sub(now)
	when := at.UTC().Format("2006-01-02 15:04 MST")
	if left < 0 {
		return "access token expired " + when + " (" + humanDuration(-left) + " ago; the CLI refreshes it on next use)"
	}
	return "expires " + when + " (in " + humanDuration(left) + ")"
}

func summary(counts map[broker.Outcome]int, dryRun bool) string {
	order := []broker.Outcome{broker.Created, broker.Updated, broker.Repaired, broker.Unchanged, broker.TakenBack, broker.KeptNewer, broker.Skipped, broker.Waiting, broker.Revoked, broker.Refused, broker.OtherAccount, broker.Failed}
	var parts []string
	for _, o := range order {
		if n := counts[o]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, o))
		}
	}
	if len(parts) == 0 {
		return "no copies"
	}
	prefix := ""
	if dryRun {
		prefix = "dry run, nothing written: "
	}
	return prefix + strings.Join(parts, ", ")
}

// humanDuration renders a positive duration as "3d4h", "7h59m", "12m", "40s".
func humanDuration(d time.Duration) string {
	switch {
	case d >= 48*time.Hour:
		return fmt.Sprintf("%dd%dh", int(d.Hours())/24, int(d.Hours())%24)
	case d >= time.Hour:
		return fmt.Sprintf("%dh%dm", int(d.Hours()), int(d.Minutes())%60)
	case d >= time.Minute:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	}
	return fmt.Sprintf("%ds", int(d.Seconds()))
}
