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
	if code != 0 || !strings.Contains(out, "kept as the base of live images: 1 manifests") {
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
