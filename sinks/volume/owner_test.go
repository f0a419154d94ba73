package volume_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/mc-broker/mc-broker/broker/kinds/claude"

	"github.com/moby/moby/client"

	"github.com/mc-broker/mc-broker/broker/testenv"
	"github.com/mc-broker/mc-broker/sinks/volume"
	"github.com/mc-broker/mc-broker/sinks/volume/volumetest"
)

// makeVolume creates vol on e with labels, as someone else would.
func makeVolume(t *testing.T, e *volumetest.Engine, vol string, labels map[string]string) {
	t.Helper()
	if _, err := e.Client().VolumeCreate(context.Background(), client.VolumeCreateOptions{Name: vol, Labels: labels}); err != nil {
		t.Fatal(err)
	}
}

// Two users of one engine: another user's mc-broker made the volume and
// keeps their login in it. This user's copy neither takes that login
// (Read, the take-back) nor writes its own over it, and says why and what
// to do; adopt: true takes the volume on.
func TestVolumeOfAnotherUserIsNeitherReadNorWritten(t *testing.T) {
	volumetest.Engines(t, func(t *testing.T, e *volumetest.Engine) {
		vol := e.UniqueVolume(t)
		makeVolume(t, e, vol, map[string]string{
			volume.LabelManaged:   "true",
			volume.LabelOwner:     "uid1001-0123456789ab",
			volume.LabelOwnerName: "bob@buildbox",
		})
		theirs := testenv.Fixture(t, "codex/auth.chatgpt.json")
		e.Run(t, vol, "cat > /d/auth.json <<'EOF'\n"+string(theirs)+"EOF")
		before := e.Run(t, vol, "cat /d/auth.json; stat -c '%Y %i' /d/auth.json")

		s := volume.New(volume.Options{Volume: vol, FileName: "auth.json", LockDir: t.TempDir(), Shared: e.Shared})
		_, err := s.Read(context.Background())
		var fe *volume.ForeignVolumeError
		if !errors.As(err, &fe) {
			t.Fatalf("Read = %v, want *ForeignVolumeError", err)
		}
		for _, want := range []string{"volume " + vol + " belongs to another user, bob@buildbox (uid 1001)", "adopt: true", "a volume of your own"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("message %q does not say %q", err, want)
			}
		}
		var r recorder
		if err := s.Update(context.Background(), r.decide([]byte(`{"mine":true}`), true)); !errors.As(err, &fe) {
			t.Errorf("Update = %v, want *ForeignVolumeError", err)
		}
		if r.calls != 0 {
			t.Errorf("decide saw the other user's login")
		}
		if after := e.Run(t, vol, "cat /d/auth.json; stat -c '%Y %i' /d/auth.json"); after != before {
			t.Errorf("the other user's volume changed")
		}

		adopted := volume.New(volume.Options{Volume: vol, FileName: "auth.json", LockDir: t.TempDir(), Shared: e.Shared, Adopt: true})
		if got, err := adopted.Read(context.Background()); err != nil || !bytes.Equal(got, theirs) {
			t.Errorf("adopted Read: %v", err)
		}
		adopted.EndPass(context.Background())
		assertNoHelpers(t, e)
	})
}

// A volume mc-broker did not make (docker volume create, compose, a
// container's `claude login`) is used when it holds only the login and its
// companions; one holding anything else is refused, naming some of it.
func TestVolumeNotMadeByMCBroker(t *testing.T) {
	volumetest.Engines(t, func(t *testing.T, e *volumetest.Engine) {
		login := testenv.Fixture(t, "claude/credentials.valid.json")
		companions := claude.Kind.Facts().Companions
		sink := func(vol string, adopt bool) *volume.Sink {
			return volume.New(volume.Options{Volume: vol, FileName: ".credentials.json", LockDir: t.TempDir(), Shared: e.Shared, Companions: companions, Adopt: adopt})
		}

		// Only the login and .claude.json: a volume a container logged in to.
		plain := e.UniqueVolume(t)
		makeVolume(t, e, plain, nil)
		e.Run(t, plain, "echo '{}' > /d/.claude.json")
		if err := sink(plain, false).Update(context.Background(), always(login)); err != nil {
			t.Fatalf("Update of a volume holding only companions: %v", err)
		}
		if got := e.Run(t, plain, "cat /d/.credentials.json"); got != string(login) {
			t.Error("login not written")
		}

		// A volume in use as something else.
		busy := e.UniqueVolume(t)
		makeVolume(t, e, busy, nil)
		e.Run(t, busy, "mkdir /d/projects && echo x > /d/history.jsonl && echo y > /d/.credentials.json")
		_, err := sink(busy, false).Read(context.Background())
		var fe *volume.ForeignVolumeError
		if !errors.As(err, &fe) {
			t.Fatalf("Read = %v, want *ForeignVolumeError", err)
		}
		for _, want := range []string{"volume " + busy + " was not made by mc-broker and holds other files (history.jsonl, projects/)", "set adopt: true"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("message %q does not say %q", err, want)
			}
		}
		if err := sink(busy, false).Update(context.Background(), always(login)); !errors.As(err, &fe) {
			t.Errorf("Update = %v, want *ForeignVolumeError", err)
		}
		if got := e.Run(t, busy, "cat /d/.credentials.json"); got != "y\n" {
			t.Errorf("the refused volume's file became %q", got)
		}
		if err := sink(busy, true).Update(context.Background(), always(login)); err != nil {
			t.Errorf("adopted Update: %v", err)
		}
		if got := e.Run(t, busy, "cat /d/.credentials.json; ls /d/projects >/dev/null && echo kept"); got != string(login)+"kept\n" {
			t.Errorf("adopted volume holds %q", got)
		}

		// Made by an older mc-broker (labelled, no owner): used as before,
		// whatever else the container put there.
		legacy := e.UniqueVolume(t)
		makeVolume(t, e, legacy, map[string]string{volume.LabelManaged: "true"})
		e.Run(t, legacy, "mkdir /d/projects")
		if err := sink(legacy, false).Update(context.Background(), always(login)); err != nil {
			t.Errorf("Update of an older mc-broker's volume: %v", err)
		}
		assertNoHelpers(t, e)
	})
}

// A volume this user's mc-broker made is its own, on every engine.
func TestOwnVolumeIsUsed(t *testing.T) {
	volumetest.Engines(t, func(t *testing.T, e *volumetest.Engine) {
		vol := e.UniqueVolume(t)
		s := volume.New(volume.Options{Volume: vol, FileName: "auth.json", LockDir: t.TempDir(), Shared: e.Shared})
		if err := s.Update(context.Background(), always([]byte(`{"a":1}`))); err != nil {
			t.Fatal(err)
		}
		e.Run(t, vol, "mkdir /d/sessions && echo x > /d/config.toml")
		if got, err := s.Read(context.Background()); err != nil || string(got) != `{"a":1}` {
			t.Errorf("Read of the own volume: %q %v", got, err)
		}
	})
}
