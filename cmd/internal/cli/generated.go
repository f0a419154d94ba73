package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/mc-broker/mc-broker/broker"
	"github.com/mc-broker/mc-broker/broker/atomicfile"
)

// generated describes a file a command writes with -o: its first line
// (marker) says mc-broker wrote it, so that it may be replaced.
type generated struct {
	marker  string
	command string // the command that writes it, for the refusal
	use     string // how to use the file, printed after writing it
}

// writeGenerated writes data to path (mode 0644) unless it holds data
// already; it refuses to replace a file without g's marker unless force.
func writeGenerated(f *Factory, path string, data []byte, force bool, g generated) error {
	old, err := os.ReadFile(path)
	switch {
	case err == nil && bytes.Equal(old, data):
		fmt.Fprintf(f.Stdout, "unchanged %s\n", path)
		return nil
	case err == nil && !force && !bytes.HasPrefix(old, []byte(g.marker+"\n")):
		return &ExitError{Code: broker.ExitUsage,
			Err:  fmt.Errorf("%s exists and was not written by %s: not replacing it", path, g.command),
			Hint: "choose another -o FILE, or add --force to replace it"}
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return &ExitError{Code: broker.ExitCopyFailed, Err: fmt.Errorf("cannot read %s: %w", path, errors.Unwrap(err))}
	}
	dir, name := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	if err := atomicfile.Write(dir, name, data, atomicfile.Options{Mode: 0o644}); err != nil {
		return &ExitError{Code: broker.ExitCopyFailed, Err: err}
	}
	fmt.Fprintf(f.Stdout, "wrote %s\n  use: %s\n", path, g.use)
	return nil
}
