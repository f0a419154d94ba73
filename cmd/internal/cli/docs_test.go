package cli

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/mc-broker/mc-broker/broker"
)

// TestOutcomesDocumented keeps `sync --help`, `status --help` and the
// README's two tables listing the same words: a user reading one and seeing
// another word in the output has nowhere to look it up.
func TestOutcomesDocumented(t *testing.T) {
	readme, err := os.ReadFile("../../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	f, _, _ := testFactory(t, nil)
	tests := []struct {
		help     string
		table    string // the README line that introduces the table
		outcomes []broker.Outcome
	}{
		{NewCmdSync(f, nil).Long, "What `sync` reports for each copy", []broker.Outcome{
			broker.Created, broker.Updated, broker.Repaired, broker.Unchanged, broker.TakenBack, broker.KeptNewer, broker.Refused, broker.OtherAccount, broker.Skipped, broker.Failed, broker.Revoked}},
		{NewCmdStatus(f, nil).Long, "What `status` shows for each copy", []broker.Outcome{
			broker.InSync, broker.Older, broker.Newer, broker.Differs, broker.Missing, broker.Broken, broker.Foreign, broker.OtherAccount, broker.Present, broker.Failed, broker.Revoked}},
	}
	for _, tt := range tests {
		table := readmeTable(t, string(readme), tt.table)
		var want []string
		for _, o := range tt.outcomes {
			want = append(want, string(o))
			if !regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(string(o)) + ` +\S`).MatchString(tt.help) {
				t.Errorf("--help does not explain %q:\n%s", o, tt.help)
			}
		}
		if strings.Join(table, " ") != strings.Join(want, " ") {
			t.Errorf("README table after %q lists %v, want %v", tt.table, table, want)
		}
	}
}

// readmeTable returns the first column (without backquotes) of the table
// that follows the line starting with intro, header left out.
func readmeTable(t *testing.T, readme, intro string) []string {
	i := strings.Index(readme, "\n"+intro)
	if i < 0 {
		t.Fatalf("README has no line %q", intro)
	}
	var rows []string
	for _, line := range strings.Split(readme[i+1:], "\n") {
		switch {
		case strings.HasPrefix(line, "|"):
			rows = append(rows, line)
		case len(rows) > 0:
			return firstCells(rows[min(2, len(rows)):])
		}
	}
	return firstCells(rows[min(2, len(rows)):])
}

func firstCells(rows []string) []string {
	var cells []string
	for _, r := range rows {
		cells = append(cells, strings.Trim(strings.TrimSpace(strings.Split(r, "|")[1]), "`"))
	}
	return cells
}
