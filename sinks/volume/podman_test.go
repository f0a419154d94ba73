package volume_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/moby/moby/client"

	"github.com/mc-broker/mc-broker/broker/testenv"
	"github.com/mc-broker/mc-broker/sinks/volume"
	"github.com/mc-broker/mc-broker/sinks/volume/volumetest"
)

// podmanEngines runs f on rootful, then rootless Podman.
func podmanEngines(t *testing.T, f func(t *testing.T, e *volumetest.Engine)) {
	t.Run("podman", func(t *testing.T) { f(t, volumetest.NeedPodman(t, false)) })
	t.Run("podman-rootless", func(t *testing.T) { f(t, volumetest.NeedPodman(t, true)) })
}

// What Podman really holds, read where it keeps the volume on disk (as
// root), not through any container or the copy API: the login mc-broker
// wrote, 0600, in the volume itself. Before mc-broker wrote at the mount
// point, this file did not exist and every sync said "created" again.
func TestPodmanCopyIsInTheVolume(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI=true: reading Podman's volumes on disk needs root")
		}
		t.Skip("reading Podman's volumes on disk needs root")
	}
	podmanEngines(t, func(t *testing.T, e *volumetest.Engine) {
		vol := e.UniqueVolume(t)
		want := testenv.Fixture(t, "codex/auth.chatgpt.json")
		s := volume.New(volume.Options{Volume: vol, Path: "/home/.codex", FileName: "auth.json", UID: intp(1000), GID: intp(1000), LockDir: t.TempDir(), Shared: e.Shared})
		if err := s.Update(context.Background(), always(want)); err != nil {
			t.Fatal(err)
		}
		got, err := e.ReadMountpoint(t, vol, "home/.codex/auth.json")
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("on disk: %d bytes, %v; want the %d written", len(got), err, len(want))
		}
		res, _ := e.Client().VolumeInspect(context.Background(), vol, client.VolumeInspectOptions{})
		fi, err := os.Stat(filepath.Join(res.Volume.Mountpoint, "home/.codex/auth.json"))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("on disk: %v %v, want mode 0600", fi.Mode(), err)
		}
		if st := fi.Sys().(*syscall.Stat_t); e.Name == "podman" && (st.Uid != 1000 || st.Gid != 1000) {
			t.Errorf("on disk owned by %d:%d, want 1000:1000", st.Uid, st.Gid)
		}
		// The next pass finds it: nothing to write.
		var r recorder
		if err := s.Update(context.Background(), r.decide(nil, false)); err != nil || !r.exists || !bytes.Equal(r.current, want) {
			t.Errorf("second pass: exists %v, err %v", r.exists, err)
		}
	})
}

// A write the engine accepts but that is not in the volume fails: here
// the archive is unpacked at a never-started Podman container's root, as
// mc-broker once did, and lands in the container's own layer. The read-back
// through a fresh container catches it; nothing is reported written.
func TestWriteThatIsNotInTheVolumeFails(t *testing.T) {
	podmanEngines(t, func(t *testing.T, e *volumetest.Engine) {
		defer volume.WriteDockerStyleOnPodman()()
		vol := e.UniqueVolume(t)
		s := volume.New(volume.Options{Volume: vol, FileName: "auth.json", LockDir: t.TempDir(), Shared: e.Shared})
		err := s.Update(context.Background(), always([]byte(`{"a":1}`)))
		var nw *volume.NotWrittenError
		if !errors.As(err, &nw) {
			t.Fatalf("Update = %v, want *NotWrittenError", err)
		}
		if !strings.Contains(err.Error(), "a fresh container finds no file in volume "+vol) {
			t.Errorf("message %q", err)
		}
		if _, err := s.Read(context.Background()); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Read after the lost write = %v, want no copy", err)
		}
		s.EndPass(context.Background())
		assertNoHelpers(t, e)
	})
}
