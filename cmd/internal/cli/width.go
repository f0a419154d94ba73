package cli

import (
	"io"
	"os"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

// outputWidth is the width human-readable output is wrapped to: $COLUMNS
// when set, else the terminal's width when w is a terminal (80 when the
// terminal does not say), else 0: no wrapping. Output to a pipe or a file
// keeps each item on one line, so that grep finds a whole check.
func outputWidth(w io.Writer, getenv func(string) string) int {
	if n, err := strconv.Atoi(getenv("COLUMNS")); err == nil && n > 0 {
		return n
	}
	f, ok := w.(*os.File)
	if !ok {
		return 0
	}
	ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ)
	switch {
	case err != nil:
		return 0 // not a terminal
	case ws.Col == 0:
		return 80
	}
	return int(ws.Col)
}

// writeWrapped writes text after first, wrapped at spaces to width
// columns, each further line starting with rest. A word longer than a line
// (a path) is not broken. width 0 writes one line.
func writeWrapped(w io.Writer, width int, first, rest, text string) {
	const narrowest = 40 // below this, wrapping hurts more than it helps
	if width <= 0 {
		io.WriteString(w, first+text+"\n")
		return
	}
	width = max(width, narrowest)
	var b strings.Builder
	line, lineLen := first, utf8.RuneCountInString(first)
	empty := true
	for _, word := range strings.Fields(text) {
		n := utf8.RuneCountInString(word)
		if !empty && lineLen+1+n > width {
			b.WriteString(line + "\n")
			line, lineLen, empty = rest, utf8.RuneCountInString(rest), true
		}
		if !empty {
			line += " "
			lineLen++
		}
		line += word
		lineLen += n
		empty = false
	}
	b.WriteString(line + "\n")
	io.WriteString(w, b.String())
}
