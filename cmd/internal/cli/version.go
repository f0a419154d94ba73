package cli

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// Version overrides the version for a build from a tree without git (a
// release tarball): -ldflags "-X .../cli.Version=v1.2.3". Otherwise the
// version comes from Go's build info, so that go build, go install and
// make install of one commit all print the same.
var Version = ""

// version is what `mc-broker version` and `--version` print first.
func version() string {
	info, ok := debug.ReadBuildInfo()
	return versionOf(Version, info, ok)
}

// versionOf picks the version: the stamped one, else the module version Go
// records (a tag for go install ...@v1.2.3; for a build in a git checkout a
// pseudo-version naming the commit, +dirty when the tree had uncommitted
// changes), else the commit from the VCS settings (older toolchains), else
// devel (built with -buildvcs=false or outside a checkout).
func versionOf(stamped string, info *debug.BuildInfo, ok bool) string {
	if stamped != "" {
		return stamped
	}
	if !ok {
		return "devel"
	}
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	rev, dirty := "", false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	switch {
	case rev == "":
		return "devel"
	case dirty:
		return "devel-" + rev + "+dirty"
	}
	return "devel-" + rev
}

// versionLine is the whole line, the same for `version`, --version and -v.
func versionLine() string {
	return fmt.Sprintf("mc-broker %s (%s, %s/%s)\n", version(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// NewCmdVersion builds `mc-broker version`.
func NewCmdVersion(f *Factory, runF func() error) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print mc-broker's version",
		Long: `Print mc-broker's version, the Go version it was built with, and the
platform; mc-broker --version and -v print the same line. The version is the
module version Go records: the tag for go install ...@v1.2.3, and for a build
in a git checkout (go build, go install or make install alike) a
pseudo-version naming the commit, with +dirty when the tree had uncommitted
changes. "devel" means the build had no version control information
(-buildvcs=false, or no git).`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if runF != nil {
				return runF()
			}
			_, err := fmt.Fprint(f.Stdout, versionLine())
			return err
		},
	}
}

// addVersionFlag gives the root command --version and -v, printing what
// `mc-broker version` prints. Cobra adds the flag when Version is set.
func addVersionFlag(root *cobra.Command) {
	line := versionLine()
	root.Version = line
	root.SetVersionTemplate("{{.Version}}")
	root.Flags().BoolP("version", "v", false, "print the version (as mc-broker version does)")
}
