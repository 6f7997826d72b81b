package main

import (
	"encoding/csv"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/regkeeper/regkeeper/internal/testbed/embedded"
	"github.com/regkeeper/regkeeper/internal/testbed/regtest"
	"github.com/regkeeper/regkeeper/internal/walk"
)

func TestInventoryCommand(t *testing.T) {
	srv, e := regtest.Seeded(t, embedded.Options{})

	// The whole estate: its index-only copy cannot be pulled for any
	// platform, a problem in the registry, reported; the run did its job.
	code, out, stderr := runCLI(t, "inventory", srv.Host, "--insecure", "-o", "json")
	if code != 0 || stderr != "" {
		t.Errorf("exit %d, stderr %q; want 0 and nothing on stderr", code, stderr)
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("-o json: %v\n%s", err, out)
	}
	images, _ := doc["images"].([]any)
	if len(images) != len(e.Tags()) || doc["registry"] != srv.Host || len(doc["errors"].([]any)) != 0 {
		t.Errorf("json: %d images (want %d), registry %v, errors %v", len(images), len(e.Tags()), doc["registry"], doc["errors"])
	}
	problems, _ := doc["problems"].([]any)
	if len(problems) != 1 {
		t.Fatalf("json problems %v, want mirror/alpine:3.20's", doc["problems"])
	}
	want := map[string]any{"repository": "mirror/alpine", "tag": "3.20", "digest": e.Tags()["mirror/alpine:3.20"].String(), "kind": "children-absent"}
	for k, v := range want {
		if problems[0].(map[string]any)[k] != v {
			t.Errorf("problem %s = %v, want %v", k, problems[0].(map[string]any)[k], v)
		}
	}
	if msg, _ := problems[0].(map[string]any)["message"].(string); !strings.Contains(msg, "not in mirror/alpine") {
		t.Errorf("problem message %q", msg)
	}
	first := images[0].(map[string]any)
	for _, key := range []string{"repository", "tag", "digest", "mediaType", "size", "created", "platforms", "labels", "annotations"} {
		if _, ok := first[key]; !ok {
			t.Errorf("image JSON lacks %q: %v", key, first)
		}
	}
	plat := first["platforms"].([]any)[0].(map[string]any)
	for _, key := range []string{"platform", "digest", "size", "created"} {
		if _, ok := plat[key]; !ok {
			t.Errorf("platform JSON lacks %q: %v", key, plat)
		}
	}

	// Filtered to readable repositories: exit 0, CSV with exact values.
	code, out, stderr = runCLI(t, "inventory", srv.Host, "--insecure", "--repo", "^team-", "-o", "csv")
	if code != 0 {
		t.Fatalf("filtered: exit %d: %s", code, stderr)
	}
	recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(recs[0], ",") != "REPOSITORY,TAG,DIGEST,PLATFORMS,SIZE,CREATED" {
		t.Errorf("csv header %v", recs[0])
	}
	for _, r := range recs[1:] {
		if want := e.Tags()[r[0]+":"+r[1]].String(); r[2] != want {
			t.Errorf("%s:%s digest %s, want %s", r[0], r[1], r[2], want)
		}
	}

	code, out, _ = runCLI(t, "inventory", srv.Host, "--insecure", "--repo", "^team-e/")
	if code != 0 || !strings.Contains(out, "linux/amd64 linux/arm64") || !strings.Contains(out, "1 tags in 1 repositories") {
		t.Errorf("table: exit %d\n%s", code, out)
	}

	// The table lists the index-only copy with its platforms marked absent,
	// then the problem; --fail-on-problems makes it fail the run.
	code, out, _ = runCLI(t, "inventory", srv.Host, "--insecure", "--repo", "^mirror/")
	if code != 0 || !strings.Contains(out, "linux/amd64(absent) linux/arm64(absent)") ||
		!strings.Contains(out, "1 problem in the registry") || !strings.Contains(out, "children-absent") {
		t.Errorf("table with a problem: exit %d\n%s", code, out)
	}
	code, _, stderr = runCLI(t, "inventory", srv.Host, "--insecure", "--repo", "^mirror/", "--fail-on-problems")
	if code != 1 || !strings.Contains(stderr, "1 problem in the registry (--fail-on-problems)") {
		t.Errorf("--fail-on-problems: exit %d, %s", code, stderr)
	}

	// A filter that matches nothing says so.
	code, _, stderr = runCLI(t, "inventory", srv.Host, "--insecure", "--repo", "^taem-a/")
	if code != 0 || !strings.Contains(stderr, `warning: --repo "^taem-a/" matches none of the 10 repositories`) {
		t.Errorf("--repo typo: exit %d, stderr %q", code, stderr)
	}
	code, _, stderr = runCLI(t, "inventory", srv.Host, "--insecure", "--repo", "^team-a/", "--tag", "^v9")
	if code != 0 || !strings.Contains(stderr, `warning: --tag "^v9" matches none of the 6 tags in the 1 repositories selected`) {
		t.Errorf("--tag typo: exit %d, stderr %q", code, stderr)
	}
	// A script sees it too: inventory's and backup's selection, audit's
	// warnings (said once on stderr).
	code, out, stderr = runCLI(t, "inventory", srv.Host, "--insecure", "--repo", "^team-a/", "--tag", "^v9", "-o", "json")
	var inv struct{ Selection walk.Selection }
	if err := json.Unmarshal([]byte(out), &inv); code != 0 || err != nil {
		t.Fatalf("inventory -o json: exit %d, %v: %s", code, err, stderr)
	}
	if want := (walk.Selection{Repositories: 10, MatchedRepositories: 1, Tags: 6, MatchedTags: 0}); inv.Selection != want {
		t.Errorf("inventory selection = %+v, want %+v", inv.Selection, want)
	}
	code, out, stderr = runCLI(t, "backup", srv.Host, filepath.Join(t.TempDir(), "bk"), "--insecure", "--repo", "^taem-a/", "-o", "json")
	var bk struct{ Selection walk.Selection }
	if err := json.Unmarshal([]byte(out), &bk); code != 0 || err != nil {
		t.Fatalf("backup -o json: exit %d, %v: %s", code, err, stderr)
	}
	if bk.Selection.Repositories != 10 || bk.Selection.MatchedRepositories != 0 {
		t.Errorf("backup selection = %+v, want 10 repositories, 0 matched", bk.Selection)
	}
	code, out, stderr = runCLI(t, "audit", srv.Host, "--insecure", "--repo", "^taem-a/", "-o", "json")
	var au struct {
		Warnings []struct{ Kind, Source, Pattern string }
	}
	if err := json.Unmarshal([]byte(out), &au); code != 0 || err != nil {
		t.Fatalf("audit -o json: exit %d, %v: %s", code, err, stderr)
	}
	if len(au.Warnings) != 1 || au.Warnings[0].Source != "--repo" || au.Warnings[0].Pattern != "^taem-a/" || au.Warnings[0].Kind != "pattern-unmatched" {
		t.Errorf("audit warnings = %+v, want the --repo one", au.Warnings)
	}
	if n := strings.Count(stderr, `warning: --repo "^taem-a/" matches none`); n != 1 {
		t.Errorf("audit said the --repo warning %d times:\n%s", n, stderr)
	}
}

func TestInventoryCommandErrors(t *testing.T) {
	for _, tc := range []struct {
		argv []string
		code int
		msg  string
	}{
		{[]string{"inventory"}, 2, "missing REGISTRY"},
		{[]string{"inventory", "127.0.0.1:1", "--repo", "("}, 2, "--repo: invalid regular expression"},
		{[]string{"inventory", "not a host"}, 1, "invalid registry"},
		{[]string{"inventory", "127.0.0.1:1", "--insecure"}, 1, "registry unreachable"},
	} {
		code, _, stderr := runCLI(t, tc.argv...)
		if code != tc.code || !strings.Contains(stderr, tc.msg) || strings.Count(stderr, "\n") > 2 {
			t.Errorf("%v: exit %d, stderr %q; want exit %d, one line mentioning %q", tc.argv, code, stderr, tc.code, tc.msg)
		}
	}
}
