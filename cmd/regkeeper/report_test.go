package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/regkeeper/regkeeper/internal/metrics"
	"github.com/regkeeper/regkeeper/internal/testbed/embedded"
	"github.com/regkeeper/regkeeper/internal/testbed/regtest"
)

func TestReportCommand(t *testing.T) {
	srv, _ := regtest.Seeded(t, embedded.Options{})
	out := filepath.Join(t.TempDir(), "report.html")
	code, _, stderr := runCLI(t, "report", srv.Host, "--insecure", "--config", srv.ConfigFile, "--grace", "0", "--out", out)
	if code != 1 || !strings.Contains(stderr, "mirror/alpine") { // the index-only copy is reported, exit 1
		t.Errorf("exit %d: %s", code, stderr)
	}
	html, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"<svg class=\"chart\" id=\"chart-storage\"", "id=\"chart-gc\"", "231.4 KiB", "team-b/web:prod"} {
		if !strings.Contains(string(html), want) {
			t.Errorf("report lacks %q", want)
		}
	}

	code, md, _ := runCLI(t, "report", srv.Host, "--insecure", "--repo", "^team-", "-o", "markdown")
	if code != 0 || !strings.HasPrefix(md, "# Registry report: "+srv.Host) || strings.Contains(md, "gc would reclaim") {
		t.Errorf("markdown without --config: exit %d\n%s", code, md)
	}

	code, _, stderr = runCLI(t, "report", srv.Host, "--insecure", "-o", "json")
	if code != 2 || !strings.Contains(stderr, "report writes html or markdown") {
		t.Errorf("-o json: exit %d, %s", code, stderr)
	}
}

func TestMetricsFiles(t *testing.T) {
	srv, _ := regtest.Seeded(t, embedded.Options{})
	dir := t.TempDir()

	gcProm := filepath.Join(dir, "gc.prom")
	if code, _, stderr := runCLI(t, "gc", "--root", srv.Root, "--grace", "0", "--settle", "100ms", "--metrics-file", gcProm); code != 0 {
		t.Fatalf("gc: exit %d: %s", code, stderr)
	}
	raw, _ := os.ReadFile(gcProm)
	for _, want := range []string{"regkeeper_gc_bytes_reclaimed 236931\n", "regkeeper_gc_manifests_deleted 9\n", "regkeeper_gc_kept_as_base_manifests 1\n", "regkeeper_gc_success 1\n", "regkeeper_gc_last_success_timestamp_seconds "} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("gc metrics lack %q:\n%s", want, raw)
		}
	}

	// A failed run says so and keeps the last success time.
	if code, _, _ := runCLI(t, "gc", "--root", t.TempDir(), "--metrics-file", gcProm); code != 1 {
		t.Errorf("gc on a non-registry: exit %d", code)
	}
	raw, _ = os.ReadFile(gcProm)
	if !strings.Contains(string(raw), "regkeeper_gc_success 0\n") || !strings.Contains(string(raw), "regkeeper_gc_last_success_timestamp_seconds ") {
		t.Errorf("after a failed gc:\n%s", raw)
	}

	// After the gc above, team-b/web's annotated base (untagged) is still
	// there (gc keeps the bases of live images): still too old.
	auditProm := filepath.Join(dir, "audit.prom")
	runCLI(t, "audit", srv.Host, "--insecure", "--ban", "base/centos", "--metrics-file", auditProm)
	raw, _ = os.ReadFile(auditProm)
	for _, want := range []string{`regkeeper_audit_findings{reason="base-banned"} 1`, `regkeeper_audit_findings{reason="base-too-old"} 3`, "regkeeper_audit_images 12\n"} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("audit metrics lack %q:\n%s", want, raw)
		}
	}
	backupProm := filepath.Join(dir, "backup.prom")
	if code, _, stderr := runCLI(t, "backup", srv.Host, filepath.Join(dir, "bk"), "--insecure", "--repo", "^team-", "--metrics-file", backupProm); code != 0 {
		t.Errorf("backup: exit %d: %s", code, stderr)
	}
	raw, _ = os.ReadFile(backupProm)
	for _, want := range []string{"regkeeper_backup_bytes_written ", "regkeeper_backup_images ", "regkeeper_backup_success 1"} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("backup metrics lack %q:\n%s", want, raw)
		}
	}
	if _, err := metrics.Names(auditProm); err != nil {
		t.Errorf("audit metrics do not parse: %v", err)
	}
}
