package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/regkeeper/regkeeper/internal/metrics"
	"github.com/regkeeper/regkeeper/internal/testbed/embedded"
	"github.com/regkeeper/regkeeper/internal/testbed/regtest"
)

// readmeMetrics returns the metric names of the README's metrics table,
// by command (regkeeper_<command>_<thing>).
func readmeMetrics(t *testing.T) map[string][]string {
	t.Helper()
	raw, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	// A row's first cell names one metric, or the same metric of several
	// commands: | `regkeeper_gc_success`, `regkeeper_cycle_success` | …
	name := regexp.MustCompile("`(regkeeper_([a-z]+)_[a-z_]+)`")
	out := map[string][]string{}
	for _, line := range strings.Split(string(raw), "\n") {
		if !strings.HasPrefix(line, "| `regkeeper_") {
			continue
		}
		first, _, _ := strings.Cut(strings.TrimPrefix(line, "|"), "|")
		for _, m := range name.FindAllStringSubmatch(first, -1) {
			out[m[2]] = append(out[m[2]], m[1])
		}
	}
	for _, names := range out {
		sort.Strings(names)
	}
	return out
}

// The README's metrics table is what the commands write, name for name.
func TestMetricsTableInREADME(t *testing.T) {
	srv, _ := regtest.Seeded(t, embedded.Options{})
	dir := t.TempDir()
	prom := func(command string) string { return filepath.Join(dir, command+".prom") }
	policy := filepath.Join(dir, "keep-all.yml")
	if err := os.WriteFile(policy, []byte("policies:\n  - repositories: ['team-*/**']\n    keep:\n      - tags: ['.*']\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	keepNone := filepath.Join(dir, "keep-none.yml")
	if err := os.WriteFile(keepNone, []byte("policies:\n  - repositories: ['team-*/**']\n    keep:\n      - tags: ['^no-such-tag$']\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, argv := range [][]string{
		{"audit", srv.Host, "--insecure", "--repo", "^(base|team)", "--metrics-file", prom("audit")},
		{"backup", srv.Host, filepath.Join(dir, "bk1"), "--insecure", "--repo", "^(base|team)", "--metrics-file", prom("backup")},
		{"cycle", srv.Host, "--insecure", "--config", srv.ConfigFile, "--backup", filepath.Join(dir, "bk2"), "--repo", "^(base|team)", "--grace", "0", "--retain-policy", policy, "--metrics-file", prom("cycle")},
		{"retain", srv.Host, "--insecure", "--policy", keepNone, "--dry-run", "--metrics-file", prom("retain")},
		{"gc", "--root", srv.Root, "--grace", "0", "--metrics-file", prom("gc")},
	} {
		if code, _, stderr := runCLI(t, argv...); code != 0 {
			t.Fatalf("%v: exit %d: %s", argv, code, stderr)
		}
	}
	documented := readmeMetrics(t)
	for _, command := range []string{"audit", "backup", "cycle", "gc", "retain"} {
		written, err := metrics.Names(prom(command))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(documented[command], written); diff != "" {
			t.Errorf("%s: README metrics table vs what --metrics-file holds (-README +written):\n%s", command, diff)
		}
		delete(documented, command)
	}
	// retain's figures are the plan's: every team-* tag planned, none removed
	// (a dry run), against the same plan read from -o json.
	code, stdout, stderr := runCLI(t, "retain", srv.Host, "--insecure", "--policy", keepNone, "--dry-run", "-o", "json")
	if code != 0 {
		t.Fatalf("retain -o json: exit %d: %s", code, stderr)
	}
	var plan struct{ Kept, Removed int }
	if err := json.Unmarshal([]byte(stdout), &plan); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(prom("retain"))
	if err != nil {
		t.Fatal(err)
	}
	if plan.Removed == 0 {
		t.Fatal("the keep-none policy plans nothing: the estate has no team-* tags?")
	}
	for _, want := range []string{
		fmt.Sprintf("\nregkeeper_retain_tags_planned %d\n", plan.Removed),
		fmt.Sprintf("\nregkeeper_retain_tags_kept %d\n", plan.Kept),
		"\nregkeeper_retain_tags_removed 0\n",
		"\nregkeeper_retain_dry_run 1\n",
		"\nregkeeper_retain_success 1\n",
	} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("retain metrics lack %q:\n%s", strings.TrimSpace(want), raw)
		}
	}
	delete(documented, "usage") // served by usage serve, not written: TestUsageMetricsInREADME
	for command, names := range documented {
		t.Errorf("README lists metrics of %s, which writes none: %v", command, names)
	}
}

// regkeeper_cycle_success (and _audit_success) is 0 whenever the exit
// code is not.
func TestCycleSuccessMetricFollowsExitCode(t *testing.T) {
	srv, _ := regtest.Seeded(t, embedded.Options{})
	// A registry that refuses one repository: the cycle runs every step
	// and exits 1.
	target, _ := url.Parse("http://" + srv.Host)
	proxy := httputil.NewSingleHostReverseProxy(target)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/v2/team-d/tool/") {
			http.Error(w, `{"errors":[{"code":"DENIED","message":"no"}]}`, http.StatusForbidden)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	defer front.Close()
	host := strings.TrimPrefix(front.URL, "http://")
	prom := filepath.Join(t.TempDir(), "cycle.prom")
	code, _, stderr := runCLI(t, "cycle", host, "--insecure", "--config", srv.ConfigFile, "--backup", filepath.Join(t.TempDir(), "bk"),
		"--repo", "^(base|team)", "--grace", "0", "--metrics-file", prom)
	if code == 0 {
		t.Fatalf("cycle with an unreadable repository: exit 0: %s", stderr)
	}
	raw, _ := os.ReadFile(prom)
	if !strings.Contains(string(raw), "\nregkeeper_cycle_success 0\n") {
		t.Errorf("exit %d but:\n%s", code, raw)
	}

	// So does audit's.
	prom = filepath.Join(t.TempDir(), "audit.prom")
	if code, _, _ := runCLI(t, "audit", host, "--insecure", "--repo", "^(base|team)", "--metrics-file", prom); code != 1 {
		t.Errorf("audit with an unreadable repository: exit %d, want 1", code)
	}
	if raw, _ := os.ReadFile(prom); !strings.Contains(string(raw), "\nregkeeper_audit_success 0\n") {
		t.Errorf("audit exit 1 but:\n%s", raw)
	}
}
