package volume

import (
	"context"
)

// WriteIfAbsent creates the companion file name beside the login unless
// something is there already, and reports whether it did: the same shape
// as the directory sink's, so that the sync report lists the companions a
// volume copy got. Update checks and writes the companions in Options
// through its own helper container, so for those this only reports what
// the last Update did; any other name is checked and written here (one
// helper container). Like Update, it writes companions only beside a
// login: with no login in the volume it writes nothing.
func (s *Sink) WriteIfAbsent(ctx context.Context, name string, data []byte) (bool, error) {
	s.compMu.Lock()
	created, known := s.compDone[name]
	delete(s.compDone, name)
	s.compMu.Unlock()
	if known {
		return created, nil
	}
	done, err := s.update(ctx, func([]byte, bool) ([]byte, bool) { return nil, false }, map[string][]byte{name: data})
	return done[name], err
}
