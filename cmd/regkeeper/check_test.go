package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/regkeeper/regkeeper/internal/testbed/embedded"
	"github.com/regkeeper/regkeeper/internal/testbed/regtest"
)

// distributionExampleConfig writes distribution's own example config.yml,
// read from the module cache (cmd/registry/config-example.yml of the
// distribution module go.mod names), with its storage root pointed at root.
// It caches blob descriptors in memory.
func distributionExampleConfig(t *testing.T, root string) string {
	t.Helper()
	dir, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/distribution/distribution/v3").Output()
	if err != nil {
		t.Fatalf("go list distribution: %v", err)
	}
	raw, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(dir)), "cmd", "registry", "config-example.yml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(raw)
	if !strings.Contains(cfg, "blobdescriptor: inmemory") || !strings.Contains(cfg, "rootdirectory: /var/lib/registry") {
		t.Fatalf("distribution's example config changed:\n%s", cfg)
	}
	cfg = strings.Replace(cfg, "rootdirectory: /var/lib/registry", "rootdirectory: "+root, 1)
	path := filepath.Join(t.TempDir(), "config.yml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// On distribution's example config (an in-memory blob-descriptor cache), a
// cycle without a way out used to back the whole registry up and then fail
// at gc (exit 5), every week. The check step finds it before any work:
// `cycle --check` says which check failed and what to pass; a cycle fails
// at its first step (exit 6) with the backup not begun; with
// --restart-command every check passes, the cycle runs to its end and
// restarts the registry after gc. gc --dry-run warns.
func TestCycleCheck(t *testing.T) {
	srv, e := regtest.Seeded(t, embedded.Options{})
	cfg := distributionExampleConfig(t, srv.Root)
	dir := t.TempDir()
	bk, prom := filepath.Join(dir, "backup"), filepath.Join(dir, "metrics", "cycle.prom")
	os.Mkdir(filepath.Dir(prom), 0o755)
	base := []string{"cycle", srv.Host, "--insecure", "--config", cfg, "--backup", bk, "--metrics-file", prom, "--repo", "^(base|team)", "--grace", "0", "--settle", "100ms"}

	code, out, stderr := runCLI(t, append(base, "--check")...)
	if code != exitCheckFailed {
		t.Fatalf("--check on the example config: exit %d, want %d:\n%s\n%s", code, exitCheckFailed, out, stderr)
	}
	lines := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 1 {
			lines[f[0]] = l
		}
	}
	for _, name := range []string{"registry", "storage", "backup", "metrics-file"} {
		if !strings.Contains(lines[name], " ok ") {
			t.Errorf("check %s: %q\n%s", name, lines[name], out)
		}
	}
	if l := lines["gc-mode"]; !strings.Contains(l, "FAIL") || !strings.Contains(l, "--restart-command") || !strings.Contains(l, "inmemory") {
		t.Errorf("gc-mode: %q", l)
	}

	// The cycle as the shipped cron ran it: it stops at the check, before
	// the backup.
	code, out, stderr = runCLI(t, base...)
	if code != exitCheckFailed || !strings.Contains(stderr, "a check failed before any work started: gc-mode") {
		t.Errorf("cycle on the example config: exit %d, want %d:\n%s\n%s", code, exitCheckFailed, out, stderr)
	}
	if !strings.Contains(out, "backup     skipped") || !strings.Contains(out, "FAIL") {
		t.Errorf("the table does not say the backup was skipped and which check failed:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(bk, "index.json")); err == nil {
		t.Errorf("the backup ran after a failed check")
	}

	// With a restart command, every check passes, and the cycle runs it
	// right after gc.
	marker := filepath.Join(dir, "restarted")
	withRestart := append(base, "--restart-command", "touch "+marker)
	code, out, stderr = runCLI(t, append(withRestart, "--check", "-o", "json")...)
	var doc struct {
		Checks []struct{ Name, Status, Detail, Fix string }
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil || code != 0 {
		t.Fatalf("--check with --restart-command: exit %d, %v:\n%s\n%s", code, err, out, stderr)
	}
	var names []string
	for _, c := range doc.Checks {
		names = append(names, c.Name)
		if c.Status != "ok" {
			t.Errorf("check %+v", c)
		}
	}
	if got := strings.Join(names, " "); got != "registry storage gc-mode restart-command backup lock-file metrics-file" {
		t.Errorf("checks: %s", got)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Errorf("--check ran the restart command")
	}
	code, out, stderr = runCLI(t, withRestart...)
	if code != 0 || !strings.Contains(out, "registry restarted (touch ") {
		t.Errorf("cycle with --restart-command: exit %d:\n%s\n%s", code, out, stderr)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Errorf("the restart command did not run: %v", err)
	}
	regtest.PullAll(t, srv.Host, e)

	// An unreachable registry and a metrics directory that cannot be
	// made: each its own line, every check run.
	notDir := filepath.Join(dir, "file")
	os.WriteFile(notDir, nil, 0o644)
	code, out, _ = runCLI(t, "cycle", "127.0.0.1:1", "--insecure", "--config", cfg, "--backup", bk, "--offline",
		"--metrics-file", filepath.Join(notDir, "cycle.prom"), "--check")
	if code != exitCheckFailed || strings.Count(out, "FAIL") != 2 || !strings.Contains(out, "registry unreachable") || !strings.Contains(out, "not a directory") {
		t.Errorf("unreachable registry, metrics under a file: exit %d:\n%s", code, out)
	}

	// gc --dry-run on the example config warns that the real run refuses.
	code, _, stderr = runCLI(t, "gc", "--config", cfg, "--dry-run")
	if code != 0 || !strings.Contains(stderr, "warning: the run without --dry-run would refuse") || !strings.Contains(stderr, "inmemory") {
		t.Errorf("gc --dry-run on the example config: exit %d: %s", code, stderr)
	}
}
