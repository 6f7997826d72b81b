package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/regkeeper/regkeeper/backup"
	"github.com/regkeeper/regkeeper/internal/testbed/embedded"
	"github.com/regkeeper/regkeeper/internal/testbed/regtest"
)

func TestRestoreFlagErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		argv []string
		msg  string
	}{
		{[]string{"restore", dir, "127.0.0.1:1", "--map", "team-a"}, "--map"},
		{[]string{"restore", dir, "127.0.0.1:1", "--map", "Team=b"}, "not a repository name"},
		{[]string{"restore", dir, "127.0.0.1:1", "--repository", "Not Valid"}, "--repository"},
		{[]string{"restore", dir, "127.0.0.1:1", "--referrers-depth", "0"}, "--referrers-depth must be at least 1"},
		{[]string{"backup", "127.0.0.1:1", dir, "--referrers-depth", "0"}, "--referrers-depth must be at least 1"},
	} {
		code, _, stderr := runCLI(t, tc.argv...)
		if code != 2 || !strings.Contains(stderr, tc.msg) {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 mentioning %q", tc.argv, code, stderr, tc.msg)
		}
	}
}

// A layout with an unnamed image (as crane pull --format oci writes it):
// reported and exit 1 without --repository, pushed by digest with it.
func TestRestoreUnnamedLayout(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "layout")
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	img, _ := random.Image(100, 1)
	if err := p.AppendImage(img); err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	dst := regtest.Registry(t, embedded.Options{})

	code, _, stderr := runCLI(t, "restore", dir, dst.Host, "--insecure")
	if code != 1 || !strings.Contains(stderr, "has no name") || !strings.Contains(stderr, d.String()) {
		t.Errorf("unnamed entry without --repository: exit %d, stderr %q", code, stderr)
	}
	code, out, stderr := runCLI(t, "restore", dir, dst.Host, "--insecure", "--repository", "imported/x", "-o", "json")
	var res backup.RestoreResult
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil || res.Untagged != 1 {
		t.Fatalf("with --repository: exit %d %s\n%s", code, stderr, out)
	}
	if _, err := remote.Head(regtest.Ref(t, dst, "imported/x@"+d.String())); err != nil {
		t.Errorf("not pushed by digest: %v", err)
	}
}
