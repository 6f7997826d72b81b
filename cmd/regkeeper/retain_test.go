package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/regkeeper/regkeeper/internal/testbed/embedded"
	"github.com/regkeeper/regkeeper/internal/testbed/regtest"
	"github.com/regkeeper/regkeeper/retain"
)

func writeFile(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRetainCommand(t *testing.T) {
	srv, _ := regtest.Seeded(t, embedded.Options{})
	pol := writeFile(t, "retain.yml", `
policies:
  - repositories: ["team-a/**"]
    keep:
      - tags: ['^latest$']
`)
	tagsOf := func(repo string) []string {
		tags, err := remote.List(regtest.Ref(t, srv, repo+":x").Context())
		if err != nil {
			t.Fatal(err)
		}
		sort.Strings(tags)
		return tags
	}
	before := tagsOf("team-a/api")

	code, out, errOut := runCLI(t, "retain", srv.Host, "--insecure", "--policy", pol, "--dry-run", "-o", "json", "--root", srv.Root)
	if code != 0 {
		t.Fatalf("dry run: exit %d: %s", code, errOut)
	}
	var plan retain.Result
	if err := json.Unmarshal([]byte(out), &plan); err != nil {
		t.Fatal(err)
	}
	var kept, removed []string
	for _, tp := range plan.Tags {
		if tp.Repository != "team-a/api" {
			t.Errorf("%s:%s judged: no policy covers it", tp.Repository, tp.Tag)
		}
		if tp.PushedFrom != retain.FromStorage {
			t.Errorf("%s: pushedFrom %q, want storage", tp.Tag, tp.PushedFrom)
		}
		if tp.Action == retain.Keep {
			kept = append(kept, tp.Tag)
		} else {
			removed = append(removed, tp.Tag)
		}
	}
	sort.Strings(kept)
	// 1.0 and latest name one digest in the estate: removing 1.0 frees
	// nothing.
	if !plan.DryRun || !contains(removed, "1.0") || !contains(kept, "latest") || plan.BytesFreed != 0 {
		t.Fatalf("plan: dryRun %v kept %q removed %q bytes %d", plan.DryRun, kept, removed, plan.BytesFreed)
	}
	if diff := cmp.Diff(before, tagsOf("team-a/api")); diff != "" {
		t.Fatalf("a dry run removed tags (-want +got):\n%s", diff)
	}

	// --explain: which policy, its rules, and only that repository's tags.
	code, out, errOut = runCLI(t, "retain", srv.Host, "--insecure", "--policy", pol, "--explain", "team-a/api")
	if code != 0 || !strings.Contains(out, "team-a/api: covered by policies[0] (repositories team-a/**, exclude none)") ||
		!strings.Contains(out, "policies[0].keep[0] tags ^latest$") || !strings.Contains(out, "1.0") {
		t.Errorf("--explain: exit %d\n%s%s", code, out, errOut)
	}
	code, out, _ = runCLI(t, "retain", srv.Host, "--insecure", "--policy", pol, "--explain", "base/debian")
	if code != 0 || !strings.Contains(out, "base/debian: no policy covers it; retention leaves it untouched") {
		t.Errorf("--explain of an uncovered repository: exit %d\n%s", code, out)
	}

	// Above the cap: exit 1, nothing removed.
	code, _, errOut = runCLI(t, "retain", srv.Host, "--insecure", "--policy", pol, "--max-remove", "0", "--journal", filepath.Join(t.TempDir(), "j"))
	if code != 1 || !strings.Contains(errOut, "more than --max-remove allows (0)") {
		t.Fatalf("cap: exit %d, %s", code, errOut)
	}
	if diff := cmp.Diff(before, tagsOf("team-a/api")); diff != "" {
		t.Fatalf("a refused plan removed tags (-want +got):\n%s", diff)
	}

	// A real run removes exactly the plan's tags; undo puts them back.
	journal := filepath.Join(t.TempDir(), "journal.jsonl")
	code, _, errOut = runCLI(t, "retain", srv.Host, "--insecure", "--policy", pol, "--root", srv.Root, "--journal", journal)
	if code != 0 {
		t.Fatalf("run: exit %d: %s", code, errOut)
	}
	if diff := cmp.Diff(kept, tagsOf("team-a/api")); diff != "" {
		t.Errorf("tags after retain (-want +got):\n%s", diff)
	}
	code, out, errOut = runCLI(t, "retain", srv.Host, "--insecure", "--undo", journal)
	if code != 0 {
		t.Fatalf("undo: exit %d: %s %s", code, out, errOut)
	}
	if diff := cmp.Diff(before, tagsOf("team-a/api")); diff != "" {
		t.Errorf("tags after undo (-want +got):\n%s", diff)
	}
}

func TestRetainCommandUsage(t *testing.T) {
	srv, _ := regtest.Seeded(t, embedded.Options{})
	pol := writeFile(t, "retain.yml", `
policies:
  - repositories: ["team-a/**"]
    keep:
      - pulledWithin: 90d
`)
	code, _, errOut := runCLI(t, "retain", srv.Host, "--insecure", "--policy", pol, "--journal", filepath.Join(t.TempDir(), "j"))
	if code != 1 || !strings.Contains(errOut, "no usage ledger (--usage) for policies[0].keep[0] pulledWithin 90d") {
		t.Fatalf("no ledger: exit %d, %s", code, errOut)
	}
	code, _, errOut = runCLI(t, "retain", srv.Host, "--insecure", "--policy", pol, "--usage", "/nonexistent")
	if code != 1 || !strings.Contains(errOut, "opening the usage ledger /nonexistent") {
		t.Fatalf("--usage: exit %d, %s", code, errOut)
	}
	// With --allow-stale-usage, every tag is unknown to the rule: kept.
	code, out, errOut := runCLI(t, "retain", srv.Host, "--insecure", "--policy", pol, "--allow-stale-usage", "--dry-run", "-o", "json")
	if code != 0 {
		t.Fatalf("allowed: exit %d, %s", code, errOut)
	}
	var plan retain.Result
	if err := json.Unmarshal([]byte(out), &plan); err != nil {
		t.Fatal(err)
	}
	if plan.Removed != 0 || plan.Kept == 0 {
		t.Errorf("allowed without a ledger: kept %d removed %d, want every tag kept", plan.Kept, plan.Removed)
	}
	code, _, errOut = runCLI(t, "retain", srv.Host, "--insecure", "--policy", writeFile(t, "bad.yml", "policies:\n  - repositories: [a]\n    kep: []\n"))
	if code != 2 || !strings.Contains(errOut, "unknown key kep (the keys here are repositories, exclude, keep)") {
		t.Fatalf("bad policy: exit %d, %s", code, errOut)
	}
}

func contains(s []string, x string) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}

// cycle --retain-policy: retention runs after verify and before gc, which
// collects what it left untagged; the report says what it removed.
func TestCycleRetainStep(t *testing.T) {
	srv, _ := regtest.Seeded(t, embedded.Options{})
	dir := t.TempDir()
	pol := writeFile(t, "retain.yml", "policies:\n  - repositories: [\"team-a/**\"]\n    keep:\n      - tags: ['^latest$']\n")
	rep := filepath.Join(dir, "report.html")
	code, out, stderr := runCLI(t, "cycle", srv.Host, "--insecure", "--config", srv.ConfigFile, "--backup", filepath.Join(dir, "backup"),
		"--repo", "^(base|team)", "--grace", "0", "--settle", "100ms", "--retain-policy", pol, "--report", rep, "-o", "json")
	if code != 0 {
		t.Fatalf("cycle: exit %d: %s\n%s", code, stderr, out)
	}
	var doc struct {
		Steps  []struct{ Name, Status string }
		Retain struct {
			Removed, Untagged int
			Journal           string
		}
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatal(err)
	}
	var steps []string
	for _, s := range doc.Steps {
		steps = append(steps, s.Name+" "+s.Status)
	}
	want := []string{"check ok", "inventory ok", "audit ok", "backup ok", "verify ok", "retain ok", "gc ok"}
	if diff := cmp.Diff(want, steps); diff != "" {
		t.Errorf("steps (-want +got):\n%s", diff)
	}
	if doc.Retain.Removed == 0 || doc.Retain.Untagged != doc.Retain.Removed || !strings.HasPrefix(doc.Retain.Journal, filepath.Join(dir, "backup", ".regkeeper")) {
		t.Errorf("retain: %+v", doc.Retain)
	}
	tags, err := remote.List(regtest.Ref(t, srv, "team-a/api:x").Context())
	if err != nil || contains(tags, "1.0") || !contains(tags, "latest") {
		t.Errorf("team-a/api after the cycle: %q %v", tags, err)
	}
	html, _ := os.ReadFile(rep)
	if !strings.Contains(string(html), "What retention would remove") {
		t.Error("the report lacks what retention removed")
	}
}
