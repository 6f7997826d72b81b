package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/regkeeper/regkeeper/gc"
	"github.com/regkeeper/regkeeper/internal/testbed/embedded"
	"github.com/regkeeper/regkeeper/internal/testbed/regtest"
)

// On a fresh estate the default grace spares everything: the table says
// that is why nothing was deleted, JSON and metrics count it; then a run
// with no grace keeps team-b/web's base and says so, and --no-keep-bases
// deletes it.
func TestGCCommandGraceAndBases(t *testing.T) {
	srv, _ := regtest.Seeded(t, embedded.Options{})
	prom := filepath.Join(t.TempDir(), "gc.prom")

	code, out, stderr := runCLI(t, "gc", "--root", srv.Root, "--metrics-file", prom)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(out, "nothing deleted: ") || !strings.Contains(out, "younger than the 1h0m0s grace") {
		t.Errorf("table does not say the grace is why nothing was deleted:\n%s", out)
	}
	b, err := os.ReadFile(prom)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"regkeeper_gc_manifests_spared_by_grace ", "regkeeper_gc_blobs_spared_by_grace ", "regkeeper_gc_bytes_spared_by_grace ", "regkeeper_gc_manifests_kept_as_base "} {
		if !strings.Contains(string(b), m) {
			t.Errorf("metrics lack %s:\n%s", m, b)
		}
	}

	code, out, stderr = runCLI(t, "gc", "--root", srv.Root, "--dry-run", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var rep gc.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.ManifestsSparedByGrace == 0 || rep.BlobsSparedByGrace == 0 || rep.BytesSparedByGrace == 0 || rep.ManifestsDeleted != 0 {
		t.Errorf("JSON: %s", out)
	}

	code, out, stderr = runCLI(t, "gc", "--root", srv.Root, "--grace", "0")
	if code != 0 || !strings.Contains(out, "kept as the base of live images: 1 manifest ") {
		t.Errorf("exit %d, stderr %s; table does not count the kept base:\n%s", code, stderr, out)
	}
	code, out, stderr = runCLI(t, "gc", "--root", srv.Root, "--grace", "0", "--no-keep-bases", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	rep = gc.Report{}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.ManifestsDeleted != 1 || rep.ManifestsKeptAsBase != 0 {
		t.Errorf("--no-keep-bases after a run that kept the base: %s", out)
	}
}

// gc --root on a tree with blobs but no repositories/ refuses, names the
// numbers and exits 1; --allow-delete-all does it; --max-delete-ratio
// refuses a plan over it and takes 0.5 or 50%.
func TestGCCommandGuards(t *testing.T) {
	srv, _ := regtest.Seeded(t, embedded.Options{})
	for _, tc := range []struct {
		argv []string
		code int
		msg  string
	}{
		{[]string{"--max-delete-ratio", "2"}, 2, "a ratio is from 0 to 1"},
		{[]string{"--max-delete-ratio", "half"}, 2, "not a ratio"},
		{[]string{"--grace", "0", "--max-delete-ratio", "1%"}, 1, "refusing a plan over the maximum delete ratio: the plan deletes"},
		{[]string{"--grace", "0", "--max-delete-ratio", "0.01", "--dry-run"}, 1, "more than --max-delete-ratio 0.01"},
	} {
		code, _, stderr := runCLI(t, append([]string{"gc", "--root", srv.Root}, tc.argv...)...)
		if code != tc.code || !strings.Contains(stderr, tc.msg) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d mentioning %q", tc.argv, code, stderr, tc.code, tc.msg)
		}
	}

	if err := os.RemoveAll(filepath.Join(srv.Root, "docker/registry/v2/repositories")); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runCLI(t, "gc", "--root", srv.Root, "--grace", "0")
	if code != 1 || !strings.Contains(stderr, "refusing to delete every blob: the plan deletes all ") || !strings.Contains(stderr, "0 repositories and 0 tags") {
		t.Errorf("wrong root: exit %d, stderr %q", code, stderr)
	}
	code, out, stderr := runCLI(t, "gc", "--root", srv.Root, "--grace", "0", "--allow-delete-all", "-o", "json")
	var rep gc.Report
	if code != 0 || json.Unmarshal([]byte(out), &rep) != nil || rep.BlobsDeleted == 0 {
		t.Errorf("--allow-delete-all: exit %d, stderr %q\n%s", code, stderr, out)
	}
}
