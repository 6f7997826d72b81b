package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/regkeeper/regkeeper/cycle"
	"github.com/regkeeper/regkeeper/internal/testbed/embedded"
	"github.com/regkeeper/regkeeper/internal/testbed/regtest"
)

func TestCycleCommand(t *testing.T) {
	srv, e := regtest.Seeded(t, embedded.Options{})
	dir := t.TempDir()
	bk, rep, prom := filepath.Join(dir, "backup"), filepath.Join(dir, "report.html"), filepath.Join(dir, "cycle.prom")

	// mirror/alpine (its children absent) left out: every step succeeds.
	code, out, stderr := runCLI(t, "cycle", srv.Host, "--insecure", "--config", srv.ConfigFile, "--backup", bk,
		"--repo", "^(base|team)", "--grace", "0", "--settle", "100ms", "--report", rep, "--metrics-file", prom, "-o", "json")
	if code != 0 {
		t.Fatalf("cycle: exit %d: %s\n%s", code, stderr, out)
	}
	var doc struct {
		Steps []struct{ Name, Status string }
		GC    struct{ BytesReclaimed int64 }
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Steps) != len(cycle.Steps) || doc.GC.BytesReclaimed == 0 {
		t.Errorf("json: %+v", doc)
	}
	for _, f := range []string{rep, prom, filepath.Join(bk, "index.json")} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("cycle did not write %s", f)
		}
	}
	raw, _ := os.ReadFile(prom)
	for _, want := range []string{`regkeeper_cycle_step_success{step="gc"} 1`, "regkeeper_cycle_gc_bytes_reclaimed ", "regkeeper_cycle_success 1"} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	regtest.PullAll(t, srv.Host, e)

	// A blob of the backup damaged in a way backup cannot see (bit rot:
	// the mtime stays the mark of a verified blob): verify fails, gc does
	// not run, exit 4.
	var victim string
	filepath.WalkDir(filepath.Join(bk, "blobs"), func(p string, d os.DirEntry, err error) error {
		if info, _ := d.Info(); err == nil && !d.IsDir() && info.Size() > 64<<10 && victim == "" {
			victim = p
		}
		return nil
	})
	data, _ := os.ReadFile(victim)
	data[100] ^= 0xff
	os.WriteFile(victim, data, 0o644)
	os.Chtimes(victim, time.Time{}, time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC))
	code, out, stderr = runCLI(t, "cycle", srv.Host, "--insecure", "--config", srv.ConfigFile, "--backup", bk, "--repo", "^(base|team)", "--metrics-file", prom)
	if code != 4 || !strings.Contains(stderr, "did not verify; gc was not run") || !strings.Contains(out, "gc         skipped") {
		t.Errorf("damaged backup: exit %d, stderr %q\n%s", code, stderr, out)
	}
	raw, _ = os.ReadFile(prom)
	if !strings.Contains(string(raw), "regkeeper_cycle_success 0") || !strings.Contains(string(raw), "regkeeper_cycle_last_success_timestamp_seconds") {
		t.Errorf("metrics after a failed cycle:\n%s", raw)
	}

	// A directory that is not a backup: exit 3, nothing in it touched.
	other := t.TempDir()
	os.WriteFile(filepath.Join(other, "notes.txt"), []byte("mine"), 0o644)
	code, _, stderr = runCLI(t, "cycle", srv.Host, "--insecure", "--root", srv.Root, "--backup", other)
	if code != 3 || !strings.Contains(stderr, "backup failed; gc was not run") {
		t.Errorf("non-layout backup dir: exit %d, %s", code, stderr)
	}
	if b, _ := os.ReadFile(filepath.Join(other, "notes.txt")); string(b) != "mine" {
		t.Errorf("cycle touched a file it does not own")
	}

	for _, argv := range [][]string{
		{"cycle", srv.Host, "--backup", bk},
		{"cycle", srv.Host, "--config", srv.ConfigFile},
	} {
		if code, _, _ := runCLI(t, argv...); code != 2 {
			t.Errorf("%v: exit %d, want 2", argv, code)
		}
	}
}

// A backup whose blobs cannot be written (blobs/sha256 is not a directory)
// fails on every blob at once: the table keeps one line per step, the
// failed step's line says why in short, and the whole error is on stderr
// and in the JSON.
func TestCycleTableOneLinePerStep(t *testing.T) {
	srv, _ := regtest.Seeded(t, embedded.Options{})
	bk := filepath.Join(t.TempDir(), "backup")
	if code, _, stderr := runCLI(t, "backup", srv.Host, bk, "--insecure", "--repo", "^base/debian$"); code != 0 {
		t.Fatalf("first backup: exit %d: %s", code, stderr)
	}
	algo := filepath.Join(bk, "blobs", "sha256")
	if err := os.RemoveAll(algo); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(algo, []byte("not a directory\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, stderr := runCLI(t, "cycle", srv.Host, "--insecure", "--config", srv.ConfigFile, "--backup", bk, "--repo", "^(base|team)", "--grace", "0")
	if code != exitBackupFailed {
		t.Fatalf("exit %d, want %d: %s\n%s", code, exitBackupFailed, stderr, out)
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	var table []string
	for _, l := range lines {
		if l == "" {
			break
		}
		table = append(table, l)
	}
	if len(table) != 1+len(cycle.Steps) {
		t.Errorf("the table has %d lines for %d steps:\n%s", len(table), len(cycle.Steps), out)
	}
	var backupLine string
	for _, l := range table {
		if strings.HasPrefix(l, "backup ") {
			backupLine = l
		}
	}
	if !strings.Contains(backupLine, "failed") || !strings.Contains(backupLine, "could not be backed up") || len([]rune(backupLine)) > 220 {
		t.Errorf("backup line: %q", backupLine)
	}
	if !strings.Contains(stderr, "writing the backup: ") || !strings.Contains(stderr, "blobs/sha256: not a directory") {
		t.Errorf("stderr lacks the whole error:\n%s", stderr)
	}
}
