package cli

import (
	"runtime/debug"
	"testing"
)

func TestVersionOf(t *testing.T) {
	vcs := func(rev, modified string) []debug.BuildSetting {
		return []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: modified}}
	}
	tests := []struct {
		name    string
		stamped string
		info    *debug.BuildInfo
		ok      bool
		want    string
	}{
		{"ldflags win", "v1.2.3", &debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261129104602-6aa1d0616b97"}}, true, "v1.2.3"},
		{"go install @tag", "", &debug.BuildInfo{Main: debug.Module{Version: "v1.4.0"}}, true, "v1.4.0"},
		{"build in a checkout", "", &debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261129104602-6aa1d0616b97+dirty"}, Settings: vcs("6aa1d0616b970e0ea84adaf4c6721a79ba488436", "true")}, true, "v0.0.0-20261129104602-6aa1d0616b97+dirty"},
		{"old toolchain, clean", "", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs("6aa1d0616b970e0ea84adaf4c6721a79ba488436", "false")}, true, "devel-6aa1d0616b97"},
		{"old toolchain, dirty", "", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs("6aa1d0616b970e0ea84adaf4c6721a79ba488436", "true")}, true, "devel-6aa1d0616b97+dirty"},
		{"-buildvcs=false", "", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, true, "devel"},
		{"no build info", "", nil, false, "devel"},
	}
	for _, tt := range tests {
		if got := versionOf(tt.stamped, tt.info, tt.ok); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestVersionFlagsPrintTheVersionLine(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}, {"-v"}} {
		f, out, _ := testFactory(t, nil)
		if code := Main(args, f); code != 0 {
			t.Fatalf("%v: exit %d", args, code)
		}
		if out.String() != versionLine() {
			t.Errorf("%v printed %q, want %q", args, out, versionLine())
		}
	}
}
