package broker

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/mc-broker/mc-broker/broker/atomicfile"
	"github.com/mc-broker/mc-broker/broker/credential"
)

// Backups keeps the host's login before a take-back replaces it: 0600
// files in Dir/<source>/<shelf>/, named by time and fingerprint. Logins
// that came from the host itself (the user's logins, the host CLI's own
// refreshes) go on the "host" shelf; logins the broker itself took back
// from copies go on the "taken" shelf. Each shelf keeps its newest Keep
// entries, so no stream of take-backs can push the last genuine login out.
type Backups struct {
	Dir      string
	PerShelf int // how many each shelf keeps; DefaultBackups when 0
}

// DefaultBackups is how many logins each shelf keeps.
const DefaultBackups = 20

// Shelves of a source's backups.
const (
	ShelfHost  = "host"
	ShelfTaken = "taken"
)

// Backup is one kept login.
type Backup struct {
	Path        string    `json:"path"`
	Shelf       string    `json:"shelf"`
	At          time.Time `json:"at"`
	Fingerprint string    `json:"fingerprint"`
}

func (b *Backups) perShelf() int {
	if b.PerShelf > 0 {
		return b.PerShelf
	}
	return DefaultBackups
}

// Keep stores data, the login the host held, on the host shelf when
// genuine, else on the taken shelf. The same login is not kept twice in a
// row.
func (b *Backups) Keep(source string, data []byte, info credential.Info, genuine bool, now time.Time) (string, error) {
	shelf := ShelfTaken
	if genuine {
		shelf = ShelfHost
	}
	dir := filepath.Join(b.Dir, source, shelf)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	fp := strings.TrimPrefix(info.Fingerprint, "sha256:")
	if fp == "" {
		fp = "unparsed-" + Hash(data)[:12]
	}
	list, _ := b.shelf(source, shelf)
	if n := len(list); n > 0 && strings.HasSuffix(list[n-1].Path, "-"+fp+".json") {
		return list[n-1].Path, nil
	}
	name := now.UTC().Format("20060102T150405.000000000Z") + "-" + fp + ".json"
	if err := atomicfile.Write(dir, name, data, atomicfile.Options{Mode: 0o600}); err != nil {
		return "", err
	}
	if list, err := b.shelf(source, shelf); err == nil && len(list) > b.perShelf() {
		for _, old := range list[:len(list)-b.perShelf()] {
			_ = os.Remove(old.Path)
		}
	}
	return filepath.Join(dir, name), nil
}

// List returns a source's backups, oldest first, both shelves.
func (b *Backups) List(source string) ([]Backup, error) {
	var all []Backup
	for _, shelf := range []string{ShelfHost, ShelfTaken} {
		list, err := b.shelf(source, shelf)
		if err != nil {
			return nil, err
		}
		all = append(all, list...)
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].At.Before(all[j].At) })
	return all, nil
}

func (b *Backups) shelf(source, shelf string) ([]Backup, error) {
	dir := filepath.Join(b.Dir, source, shelf)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Backup
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || !strings.HasSuffix(name, ".json") {
			continue
		}
		stamp, fp, ok := strings.Cut(strings.TrimSuffix(name, ".json"), "-")
		if !ok {
			continue
		}
		at, err := time.Parse("20060102T150405.000000000Z", stamp)
		if err != nil {
			continue
		}
		if !strings.HasPrefix(fp, "unparsed") {
			fp = "sha256:" + fp
		}
		out = append(out, Backup{Path: filepath.Join(dir, name), Shelf: shelf, At: at, Fingerprint: fp})
	}
	// ReadDir sorts by name, and names start with the time.
	return out, nil
}

// Read returns a backup's bytes; path must be one List returned.
func (b *Backups) Read(source string, bk Backup) ([]byte, error) {
	rel, err := filepath.Rel(filepath.Join(b.Dir, source), bk.Path)
	if err != nil || strings.HasPrefix(rel, "..") {
		return nil, fmt.Errorf("%s is not a backup of %s", bk.Path, source)
	}
	return os.ReadFile(bk.Path)
}
