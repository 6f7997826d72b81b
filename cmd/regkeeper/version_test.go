package main

import (
	"runtime/debug"
	"strings"
	"testing"
)

func TestVersionFlag(t *testing.T) {
	for _, argv := range [][]string{{"--version"}, {"version"}} {
		code, out, stderr := runCLI(t, argv...)
		if code != 0 || !strings.HasPrefix(out, "regkeeper ") || !strings.Contains(out, "go1.") || stderr != "" {
			t.Errorf("%v: exit %d, %q, %q", argv, code, out, stderr)
		}
	}
}

func TestVersionFromBuildInfo(t *testing.T) {
	for _, tc := range []struct {
		bi   debug.BuildInfo
		want string
	}{
		{debug.BuildInfo{Main: debug.Module{Version: "v1.2.3"}}, "v1.2.3"},
		{debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "dev"},
		{debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "37140d2f0123456789abcdef"}, {Key: "vcs.modified", Value: "true"}}}, "dev-37140d2f0123-dirty"},
		// What go build in a checkout records since Go 1.24: a pseudo-version.
		{debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261205234631-3763b25abcde+dirty"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "3763b25abcdef0123456789"}, {Key: "vcs.modified", Value: "true"}}}, "dev-3763b25abcde-dirty"},
		{debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261205234631-3763b25abcde"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "3763b25abcdef0123456789"}, {Key: "vcs.modified", Value: "false"}}}, "dev-3763b25abcde"},
		// A checkout at a tag, and go install of a pseudo-version (no VCS settings).
		{debug.BuildInfo{Main: debug.Module{Version: "v1.2.3"}, Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "3763b25abcdef0123456789"}}}, "v1.2.3"},
		{debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261205234631-3763b25abcde"}}, "v0.0.0-20261205234631-3763b25abcde"},
	} {
		if got := versionFromBuildInfo(&tc.bi); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.bi, got, tc.want)
		}
	}
}
