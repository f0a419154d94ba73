package compose

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"unicode"
)

// .env files as compose reads them (compose-go's dotenv package): KEY=VALUE
// or KEY: VALUE lines, optionally after `export`; # comments; a value
// unquoted (to the end of the line, an inline " #" comment cut off),
// 'single-quoted' (literal) or "double-quoted" (escapes such as \n, then
// interpolation); a KEY alone takes the variable from the environment.
// Variables interpolated into a value come from the environment first,
// then from the lines above.

// readEnvFile parses file; lookup finds variables of the environment.
func readEnvFile(file string, lookup lookupFunc, into map[string]string) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	if err := parseDotEnv(string(data), lookup, into); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	return nil
}

func parseDotEnv(src string, lookup lookupFunc, out map[string]string) error {
	src = strings.TrimPrefix(src, "\uFEFF")
	find := func(k string) (string, bool) {
		if v, ok := lookup(k); ok {
			return v, true
		}
		v, ok := out[k]
		return v, ok
	}
	p := dotenvParser{line: 1, expand: substituter{lookup: find, strict: true}}
	for rest := src; ; {
		if rest = p.statementStart(rest); rest == "" {
			return nil
		}
		key, after, inherited, err := p.key(rest)
		if err != nil {
			return err
		}
		if strings.Contains(key, " ") {
			return fmt.Errorf("line %d: a key cannot contain a space", p.line)
		}
		if inherited {
			if v, ok := find(key); ok {
				out[key] = v
			}
			rest = after
			continue
		}
		value, after, err := p.value(after)
		if err != nil {
			return err
		}
		out[key] = value
		rest = after
	}
}

type dotenvParser struct {
	line   int
	expand substituter
}

// statementStart skips blank space and comment lines.
func (p *dotenvParser) statementStart(src string) string {
	for {
		i := strings.IndexFunc(src, func(r rune) bool {
			if r == '\n' {
				p.line++
			}
			return !unicode.IsSpace(r)
		})
		if i < 0 {
			return ""
		}
		src = src[i:]
		if src[0] != '#' {
			return src
		}
		nl := strings.IndexByte(src, '\n')
		if nl < 0 {
			return ""
		}
		src = src[nl:]
	}
}

func (p *dotenvParser) key(src string) (key, rest string, inherited bool, err error) {
	if after, ok := strings.CutPrefix(src, "export"); ok && after != "" && strings.IndexByte(" \t\n\f\r", after[0]) >= 0 {
		src = strings.TrimLeftFunc(after, isLineSpace)
	}
	offset := 0
scan:
	for i, r := range src {
		switch {
		case isLineSpace(r):
		case r == '=' || r == ':' || r == '\n':
			key, offset, inherited = src[:i], i+1, r == '\n'
			break scan
		case r == '_' || r == '.' || r == '-' || r == '[' || r == ']' || unicode.IsLetter(r) || unicode.IsNumber(r):
		default:
			first, _, _ := strings.Cut(src, "\n")
			return "", "", false, fmt.Errorf("line %d: unexpected character %q in variable name %q", p.line, string(r), first)
		}
	}
	if inherited && !strings.Contains(key, " ") {
		p.line++
	}
	return strings.TrimRightFunc(key, unicode.IsSpace), strings.TrimLeftFunc(src[offset:], isLineSpace), inherited, nil
}

func (p *dotenvParser) value(src string) (string, string, error) {
	if src == "" || (src[0] != '"' && src[0] != '\'') {
		value, rest, _ := strings.Cut(src, "\n")
		p.line++
		value, _, _ = strings.Cut(value, " #")
		value, err := p.expand.substitute(strings.TrimRightFunc(value, unicode.IsSpace))
		return value, rest, err
	}
	quote := src[0]
	var chars []byte
	escaped := false
	for i := 1; i < len(src); i++ {
		c := src[i]
		if c == '\n' {
			p.line++
		}
		if c != quote || escaped {
			switch {
			case c == quote: // an escaped quote
				escaped = false
			case !escaped && c == '\\':
				escaped = true
				continue
			case escaped:
				escaped = false
				chars = append(chars, '\\')
			}
			chars = append(chars, c)
			continue
		}
		value := string(chars)
		if quote == '"' {
			var err error
			if value, err = p.expand.substitute(expandEscapes(value)); err != nil {
				return "", "", err
			}
		}
		return value, src[i+1:], nil
	}
	first, _, _ := strings.Cut(src, "\n")
	return "", "", fmt.Errorf("line %d: unterminated quoted value %s", p.line, first)
}

// expandEscapes turns \a \b \f \n \r \t \v \" \\ and \0NNN (octal) into
// what they stand for, and \$ into $$ (a literal $ for interpolation).
func expandEscapes(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		c := s[i+1]
		switch c {
		case '$':
			b.WriteString("$$")
		case 'a', 'b', 'f', 'n', 'r', 't', 'v', '"', '\\':
			v, _, _, _ := strconv.UnquoteChar(s[i:i+2], '"')
			b.WriteRune(v)
		case '0':
			j := i + 2
			for j < len(s) && j < i+5 && '0' <= s[j] && s[j] <= '9' {
				j++
			}
			// compose rewrites \0NNN as \NNN, and keeps that when it is no octal escape.
			if v, _, _, err := strconv.UnquoteChar(`\`+s[i+2:j], '"'); err == nil && j-i == 5 {
				b.WriteRune(v)
			} else {
				b.WriteString(`\` + s[i+2:j])
			}
			i = j - 1
			continue
		default:
			b.WriteByte('\\')
			continue
		}
		i++
	}
	return b.String()
}

// isLineSpace is white space that does not end a line.
func isLineSpace(r rune) bool {
	switch r {
	case '\t', '\v', '\f', '\r', ' ', 0x85, 0xA0:
		return true
	}
	return false
}

// projectEnv is the environment compose interpolates a project's files
// with: env, plus what dir/.env adds (env wins), unless
// COMPOSE_DISABLE_ENV_FILE says not to read it.
func projectEnv(env map[string]string, dir string) (map[string]string, error) {
	if v, ok := env["COMPOSE_DISABLE_ENV_FILE"]; ok {
		disabled, err := strconv.ParseBool(v)
		if err != nil {
			return nil, fmt.Errorf("COMPOSE_DISABLE_ENV_FILE=%s: %w", v, err)
		}
		if disabled {
			return env, nil
		}
	}
	file := dir + string(os.PathSeparator) + ".env"
	st, err := os.Stat(file)
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, fs.ErrPermission), err == nil && st.IsDir():
		return env, nil
	case err != nil:
		return nil, err
	}
	return withEnvFiles(env, []string{file})
}

// withEnvFiles is env plus what files add; env wins.
func withEnvFiles(env map[string]string, files []string) (map[string]string, error) {
	added := map[string]string{}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	for _, f := range files {
		if err := readEnvFile(f, lookup, added); err != nil {
			return nil, err
		}
	}
	merged := make(map[string]string, len(env)+len(added))
	for k, v := range added {
		merged[k] = v
	}
	for k, v := range env {
		merged[k] = v
	}
	return merged, nil
}
