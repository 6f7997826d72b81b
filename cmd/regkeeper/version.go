package main

import (
	"fmt"
	"regexp"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3";
// otherwise it comes from the module build info that the go command
// embeds: the module version for `go install …@v1.2.3`, the VCS revision
// for a `go build` in a checkout.
var version = ""

func versionString() string {
	if version != "" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "dev"
	}
	return versionFromBuildInfo(bi)
}

func versionFromBuildInfo(bi *debug.BuildInfo) string {
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = "-dirty"
			}
		}
	}
	// A release: the version `go install …@v1.2.3` recorded, or a checkout
	// at a tag. Since Go 1.24 a build in a checkout records a pseudo-version
	// (v0.0.0-20261205234631-3763b25abcde+dirty) too: that one is a commit,
	// said as the README says, dev-<commit>[-dirty].
	if v := bi.Main.Version; v != "" && v != "(devel)" && (rev == "" || !pseudoVersion(v)) {
		return v
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev == "" {
		return "dev"
	}
	return "dev-" + rev + modified
}

// pseudoVersion tells a version the go command made up from a commit
// (vX.Y.Z-[pre.]yyyymmddhhmmss-abcdefabcdef, maybe +dirty) from a tag.
func pseudoVersion(v string) bool {
	return strings.HasSuffix(v, "+dirty") || pseudoRE.MatchString(v)
}

var pseudoRE = regexp.MustCompile(`[-.]\d{14}-[0-9a-f]{12}(\+incompatible)?$`)

// versionLine is what `regkeeper --version` and `regkeeper version` print.
func versionLine() string {
	return fmt.Sprintf("regkeeper %s %s %s/%s\n", versionString(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print the regkeeper version",
		Example: "  regkeeper version\n  regkeeper --version",
		Args:    positional(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprint(cmd.OutOrStdout(), versionLine())
			return nil
		},
	}
}
