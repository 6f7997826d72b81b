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

func TestGCCommand(t *testing.T) {
	srv, e := regtest.Seeded(t, embedded.Options{})

	code, out, stderr := runCLI(t, "gc", "--config", srv.ConfigFile, "--grace", "0", "--dry-run", "-o", "json")
	if code != 0 {
		t.Fatalf("dry run exit %d: %s", code, stderr)
	}
	var dry gc.Report
	if err := json.Unmarshal([]byte(out), &dry); err != nil {
		t.Fatalf("dry run output is not the report: %v\n%s", err, out)
	}
	if !dry.DryRun || dry.ManifestsDeleted == 0 || dry.BytesReclaimed == 0 {
		t.Errorf("dry run report: %+v", dry)
	}
	for _, key := range []string{"dryRun", "manifestsDeleted", "blobsDeleted", "bytesReclaimed", "layerLinksDeleted", "uploadsDeleted", "durationSeconds", "repositories"} {
		if !strings.Contains(out, `"`+key+`"`) {
			t.Errorf("JSON lacks %q", key)
		}
	}

	code, out, stderr = runCLI(t, "gc", "--root", srv.Root, "--grace", "0", "--jobs", "4", "--settle", "100ms", "-o", "json")
	if code != 0 {
		t.Fatalf("gc exit %d: %s", code, stderr)
	}
	var real gc.Report
	if err := json.Unmarshal([]byte(out), &real); err != nil {
		t.Fatal(err)
	}
	if real.DryRun || real.ManifestsDeleted != dry.ManifestsDeleted || real.BytesReclaimed != dry.BytesReclaimed || real.BlobsDeleted != dry.BlobsDeleted {
		t.Errorf("real run %+v differs from dry run %+v", real, dry)
	}
	regtest.PullAll(t, srv.Host, e)

	code, out, _ = runCLI(t, "gc", "--root", srv.Root)
	if code != 0 || !strings.Contains(out, "TOTAL") || !strings.Contains(out, "deleted: 0 manifests") {
		t.Errorf("table run: exit %d\n%s", code, out)
	}
}

func TestGCCommandErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yml")
	if err := os.WriteFile(bad, []byte("storage: [\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		argv []string
		code int
		msg  string
	}{
		{[]string{"gc"}, 2, "exactly one of --config or --root"},
		{[]string{"gc", "--root", dir, "--config", bad}, 2, "exactly one of"},
		{[]string{"gc", "--root", dir, "--grace", "soon"}, 2, "invalid argument"},
		{[]string{"gc", "--root", dir, "--keep-previous", "-1"}, 2, "must not be negative"},
		{[]string{"gc", "--root", dir, "--settle", "-1s"}, 2, "must not be negative"},
		{[]string{"gc", "--config", bad}, 1, "parsing registry config"},
		{[]string{"gc", "--root", dir}, 1, "not a registry storage"},
		{[]string{"gc", "--root", filepath.Join(dir, "nope")}, 1, "opening storage root"},
	} {
		code, _, stderr := runCLI(t, tc.argv...)
		if code != tc.code || !strings.Contains(stderr, tc.msg) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d mentioning %q", tc.argv, code, stderr, tc.code, tc.msg)
		}
	}
}

// The grace says what it spared, in the table, JSON and metrics; the base
// of a live image is kept and counted unless --keep-base-images=false; a
// plan over --max-delete-ratio is refused with its numbers.
func TestGCCommandSparedBasesGuard(t *testing.T) {
	srv, _ := regtest.Seeded(t, embedded.Options{})
	prom := filepath.Join(t.TempDir(), "gc.prom")
	code, out, stderr := runCLI(t, "gc", "--root", srv.Root, "--metrics-file", prom)
	if code != 0 || !strings.Contains(out, "nothing deleted: everything unreferenced was written within the 1h0m0s grace (9 manifests") ||
		!strings.Contains(out, "kept as the base of live images: 1 untagged manifests") {
		t.Errorf("default grace on a fresh estate: exit %d\n%s%s", code, out, stderr)
	}
	if b, err := os.ReadFile(prom); err != nil || !strings.Contains(string(b), "regkeeper_gc_spared_by_grace_manifests 9") {
		t.Errorf("metrics: %v\n%s", err, b)
	}
	code, out, stderr = runCLI(t, "gc", "--root", srv.Root, "--grace", "0", "--dry-run", "--keep-base-images=false", "-o", "json")
	var rep gc.Report
	if code != 0 || json.Unmarshal([]byte(out), &rep) != nil || rep.KeptAsBase != 0 || rep.ManifestsDeleted != 10 || !strings.Contains(out, `"sparedByGrace"`) {
		t.Errorf("--keep-base-images=false: exit %d %+v\n%s", code, rep, stderr)
	}
	code, _, stderr = runCLI(t, "gc", "--root", srv.Root, "--grace", "0", "--max-delete-ratio", "0.01")
	if code != 1 || !strings.Contains(stderr, "more than --max-delete-ratio 0.01") {
		t.Errorf("--max-delete-ratio: exit %d\n%s", code, stderr)
	}
	if code, _, _ = runCLI(t, "gc", "--root", srv.Root, "--max-delete-ratio", "1.5"); code != 2 {
		t.Errorf("--max-delete-ratio 1.5: exit %d, want 2", code)
	}
}

// A registry that caches blob descriptors in memory: gc refuses, naming the
// setting and the ways out, and runs when told which one is taken.
func TestGCCommandInMemoryCache(t *testing.T) {
	srv, e := regtest.Seeded(t, embedded.Options{BlobDescriptorCache: gc.CacheInMemory})
	code, _, stderr := runCLI(t, "gc", "--config", srv.ConfigFile, "--grace", "0")
	if code != 1 {
		t.Fatalf("exit %d, want 1: %s", code, stderr)
	}
	for _, want := range []string{"storage.cache.blobdescriptor: inmemory", "--offline", "--blob-cache-dropped", "--restart-after"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("refusal does not mention %q: %s", want, stderr)
		}
	}
	code, out, stderr := runCLI(t, "gc", "--config", srv.ConfigFile, "--grace", "0", "--offline", "-o", "json")
	if code != 0 {
		t.Fatalf("--offline: exit %d: %s", code, stderr)
	}
	var rep gc.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil || rep.BlobsDeleted == 0 {
		t.Errorf("--offline report: %+v (%v)", rep, err)
	}
	regtest.PullAll(t, srv.Host, e)
}
