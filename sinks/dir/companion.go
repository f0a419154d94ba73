package dir

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/mc-broker/mc-broker/broker"
	"github.com/mc-broker/mc-broker/broker/atomicfile"
)

var _ broker.CompanionWriter = (*Sink)(nil)

// WriteIfAbsent creates name in the copy directory with data unless
// something is there already. It links a finished temporary file into
// place, which fails rather than replaces when the container's CLI created
// the file first: a container's own settings are never overwritten.
func (s *Sink) WriteIfAbsent(ctx context.Context, name string, data []byte) (bool, error) {
	if err := s.check(); err != nil {
		return false, err
	}
	if err := checkName(name); err != nil || name == s.o.FileName || slices.Contains(s.o.LockFiles, name) {
		return false, fmt.Errorf("%q cannot be a companion file of %s", name, s.Location())
	}
	if err := ctx.Err(); err != nil {
		return false, err
	}
	if err := checkDir(s.o.Dir); err != nil {
		return false, err
	}
	target := filepath.Join(s.o.Dir, name)
	if _, err := os.Lstat(target); !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	tmp, err := os.CreateTemp(s.o.Dir, atomicfile.TempPattern)
	if err != nil {
		return false, err
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = s.own(tmp.Name())
	}
	if err != nil {
		return false, err
	}
	if err := os.Link(tmp.Name(), target); errors.Is(err, fs.ErrExist) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	return true, nil
}
