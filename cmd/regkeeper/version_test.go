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
	} {
		if got := versionFromBuildInfo(&tc.bi); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.bi, got, tc.want)
		}
	}
}
