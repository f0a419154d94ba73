package config

import (
	"fmt"
	"strings"
)

// CheckSecretNames checks a Kubernetes Secret copy's names: the namespace a
// DNS label, the name a DNS subdomain, the key (when given) a Secret key.
func CheckSecretNames(namespace, name, key string) error {
	switch {
	case !IsDNSLabel(namespace):
		return fmt.Errorf("namespace %q is not a Kubernetes namespace name (lower-case letters, digits and '-', at most 63)", namespace)
	case !IsDNSSubdomain(name):
		return fmt.Errorf("%q is not a Secret name (lower-case letters, digits, '-' and '.', at most 253)", name)
	case key != "" && !IsSecretKey(key):
		return fmt.Errorf("key %q is not a Secret key (letters, digits, '-', '_' and '.')", key)
	}
	return nil
}

// IsDNSLabel reports whether s is a valid namespace or container name: 1 to
// 63 lower-case letters, digits and '-', starting and ending with a letter
// or digit. (Functions, not regular expressions: nothing to compile when
// mc-broker starts.)
func IsDNSLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// IsDNSSubdomain reports whether s is a valid Secret, service account or
// workload name: DNS labels joined by '.', at most 253 characters.
func IsDNSSubdomain(s string) bool {
	if len(s) == 0 || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if !IsDNSLabel(label) {
			return false
		}
	}
	return true
}

// IsSecretKey reports whether s is a valid key of a Secret's data: letters,
// digits, '-', '_' and '.', at most 253, not "." or "..".
func IsSecretKey(s string) bool {
	if len(s) == 0 || len(s) > 253 || s == "." || s == ".." {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}
