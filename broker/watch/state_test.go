package watch

import (
	"testing"
	"time"

	"github.com/mc-broker/mc-broker/broker"
)

// TestStateKeepsARefusalForAnHour: the watcher gives a copy whose login it
// refused the host's login at once, and the next pass finds the copy in
// sync; status must still show what was refused, for an hour.
func TestStateKeepsARefusalForAnHour(t *testing.T) {
	s := newState(time.Now(), "")
	t0 := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	report := func(outcome broker.Outcome, refused string) broker.SourceReport {
		return broker.SourceReport{Name: "claude", Copies: []broker.CopyReport{{Location: "/c", Outcome: outcome, Refused: refused}}}
	}
	s.update(report(broker.Repaired, "its login claims to expire at 9999-12-31T00:00:00Z"), t0)
	s.update(report(broker.Unchanged, ""), t0.Add(time.Second))
	c := s.Sources[0].Copies[0]
	if c.Refused == "" || c.RefusedAt == nil || !c.RefusedAt.Equal(t0) {
		t.Fatalf("a pass that found the copy in sync dropped the refusal: %+v", c)
	}
	s.copyResult("claude", "/c", broker.CopyResult{Plan: broker.CopyPlan{Action: broker.Keep, Outcome: broker.Unchanged}}, t0.Add(time.Minute))
	if c := s.Sources[0].Copies[0]; c.Refused == "" {
		t.Fatalf("a write's result dropped the refusal: %+v", c)
	}
	s.update(report(broker.Unchanged, ""), t0.Add(time.Hour))
	if c := s.Sources[0].Copies[0]; c.Refused != "" || c.RefusedAt != nil {
		t.Errorf("a refusal an hour old is still shown: %+v", c)
	}
}
