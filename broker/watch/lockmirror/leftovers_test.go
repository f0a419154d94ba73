package lockmirror

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

func TestRemoveLeftoversOnlyTakesLocksOfGoneLocalProcesses(t *testing.T) {
	self := Self()
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	deadPID := gone.Process.Pid
	root := t.TempDir()
	lock := func(name string, owner *Owner) string {
		dir := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Join(dir, LockName), 0o700); err != nil {
			t.Fatal(err)
		}
		if owner != nil {
			data, _ := json.Marshal(owner)
			os.WriteFile(filepath.Join(dir, OwnerName), data, 0o644)
		}
		return dir
	}
	local := func(pid int, start string) *Owner {
		return &Owner{PID: pid, ProcStart: start, PIDDomain: self.PIDDomain, PIDSpace: self.PIDSpace}
	}
	killed := lock("killed-mc-broker", local(deadPID, "12345"))
	reused := lock("pid-reused", local(self.PID, "not-our-start"))
	alive := lock("alive", local(self.PID, self.ProcStart))
	container := lock("container", &Owner{PID: deadPID, ProcStart: "1", PIDDomain: "linux:other-machine:pid:[1]", PIDSpace: "box#pid:[1]"})
	noOwner := lock("being-taken", nil)

	if n := RemoveLeftovers([]string{killed, reused, alive, container, noOwner}, self); n != 2 {
		t.Errorf("removed %d locks, want 2", n)
	}
	for dir, want := range map[string]bool{killed: false, reused: false, alive: true, container: true, noOwner: true} {
		_, err := os.Stat(filepath.Join(dir, LockName))
		if got := err == nil; got != want {
			t.Errorf("%s: lock present = %v, want %v", filepath.Base(dir), got, want)
		}
	}
	if _, err := os.Stat(filepath.Join(killed, OwnerName)); err == nil {
		t.Error("the gone owner's record was left behind")
	}
}
