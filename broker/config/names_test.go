package config

import (
	"regexp"
	"testing"
)

// The loops say what the regular expressions they replace said.
func TestNameChecksMatchTheirPatterns(t *testing.T) {
	name := regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`)
	vol := regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]+$`)
	ref := regexp.MustCompile(`\$(\{[A-Za-z_][A-Za-z0-9_]*\}|[A-Za-z_][A-Za-z0-9_]*)`)
	for _, s := range []string{"", "a", "A", "claude", "work-claude", "w.c_1", "-x", ".x", "x y", "mc-claude-auth", "ab", "a$", "$HOME/x", "/srv/${USER}/x", "/a/$1/b", "${", "${}", "$", "/x/${A", "/x/$_a9", "${9x}", "$a{b}", "é", "Claude"} {
		if got, want := validName(s), name.MatchString(s); got != want {
			t.Errorf("validName(%q) = %v, want %v", s, got, want)
		}
		if got, want := validVolume(s), vol.MatchString(s); got != want {
			t.Errorf("validVolume(%q) = %v, want %v", s, got, want)
		}
		if got, want := envReference(s), ref.FindString(s); got != want {
			t.Errorf("envReference(%q) = %q, want %q", s, got, want)
		}
	}
}
