package lockmirror

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzReadOwner: whatever a container writes as the refresh lock's owner
// file, ReadOwner never panics, reads at most maxOwnerSize bytes, and what
// it accepts is an owner record that reads back the same once written.
func FuzzReadOwner(f *testing.F) {
	self := Self()
	good, _ := json.Marshal(Owner{PID: self.PID, ProcStart: self.ProcStart, PIDDomain: self.PIDDomain, PIDSpace: self.PIDSpace, LockBirthtimeMs: 1764662400123.456})
	for _, s := range []string{string(good), "", "null", "{}", `{"pid":-1}`, `{"pid":1e99}`, `{"lockBirthtimeMs":"x"}`, strings.Repeat(" ", maxOwnerSize) + "{}", "[1,2]", `{"pid":1}{"pid":2}`} {
		f.Add([]byte(s))
	}
	dir := f.TempDir()
	again := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(filepath.Join(dir, OwnerName), data, 0o644); err != nil {
			t.Fatal(err)
		}
		o, err := ReadOwner(dir)
		if len(data) > maxOwnerSize && err == nil {
			t.Fatalf("an owner file of %d bytes was read", len(data))
		}
		if err != nil {
			if o != nil {
				t.Fatal("ReadOwner returned an owner and an error")
			}
			return
		}
		if o == nil {
			t.Fatal("ReadOwner returned neither an owner nor an error for a file that is there")
		}
		if err := writeOwner(again, *o); err != nil {
			t.Fatalf("writing back what was read: %v", err)
		}
		back, err := ReadOwner(again)
		if err != nil || back == nil || *back != *o {
			t.Fatalf("an owner record does not read back the same: %+v, then %+v (%v)", o, back, err)
		}
	})
}
