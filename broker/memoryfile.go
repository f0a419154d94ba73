package broker

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/mc-broker/mc-broker/broker/atomicfile"
)

// MemoryFiles keeps each source's Memory in Dir/<source>.json (0600), so
// that one-shot commands remember what earlier passes and the watcher saw.
// A file that cannot be read is treated as no memory: the rules then
// assume less (nothing is known to be ours), never more.
type MemoryFiles struct{ Dir string }

// Load returns the memory of source, empty when there is none.
func (m MemoryFiles) Load(source string) *Memory {
	mem, _ := m.load(source)
	return mem
}

// load returns the memory of source and the file's bytes.
func (m MemoryFiles) load(source string) (*Memory, []byte) {
	mem := NewMemory()
	data, err := os.ReadFile(m.path(source))
	if err != nil {
		return mem, nil
	}
	if json.Unmarshal(data, mem) != nil {
		return NewMemory(), data
	}
	if mem.Stores == nil {
		mem.Stores = map[string]*StoreMemory{}
	}
	return mem, data
}

// Save writes the memory of source. Stores the file knows and mem does
// not (another watcher's: a --dir layout's beside the configured copies')
// are kept. A file that holds this memory already is not written again:
// a sync with nothing to do writes nothing.
func (m MemoryFiles) Save(source string, mem *Memory) error {
	merged := mem.Clone()
	if merged.Stores == nil {
		merged.Stores = map[string]*StoreMemory{}
	}
	old, oldData := m.load(source)
	for k, s := range old.Stores {
		if _, ours := merged.Stores[k]; !ours {
			merged.Stores[k] = s
		}
	}
	data, err := json.Marshal(merged)
	if err != nil {
		return err
	}
	data = append(data, '\n')
	if bytes.Equal(data, oldData) {
		return nil
	}
	if err := os.MkdirAll(m.Dir, 0o700); err != nil {
		return err
	}
	return atomicfile.Write(m.Dir, source+".json", data, atomicfile.Options{Mode: 0o600})
}

// Remove forgets source.
func (m MemoryFiles) Remove(source string) error {
	err := os.Remove(m.path(source))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

func (m MemoryFiles) path(source string) string { return filepath.Join(m.Dir, source+".json") }
