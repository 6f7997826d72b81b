package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/regkeeper/regkeeper/internal/testbed/embedded"
	"github.com/regkeeper/regkeeper/internal/testbed/regtest"
)

func TestAuditCommand(t *testing.T) {
	srv, _ := regtest.Seeded(t, embedded.Options{})
	base := []string{"audit", srv.Host, "--insecure", "--repo", "^(base|team)-?"}

	// Table: findings grouped, worst first; --exit-code on findings.
	code, out, stderr := runCLI(t, append(base, "--ban", "base/centos", "--exit-code", "3")...)
	if code != 3 {
		t.Errorf("exit %d with findings and --exit-code 3: %s", code, stderr)
	}
	banned := strings.Index(out, "base-banned")
	outdated := strings.Index(out, "base-outdated")
	old := strings.Index(out, "base-too-old")
	if banned < 0 || outdated < banned || old < outdated || !strings.Contains(out, "team-c/worker:2.3") {
		t.Errorf("table not grouped worst first:\n%s", out)
	}
	if !strings.Contains(out, "with findings: 1 base-banned, 1 base-outdated, 3 base-too-old, 1 base-unknown") {
		t.Errorf("summary:\n%s", out)
	}

	// JSON: every tag and platform, the contract's field names.
	code, out, stderr = runCLI(t, append(base, "--policy", "../../testdata/policy.yaml", "-o", "json")...)
	if code != 0 {
		t.Fatalf("json: exit %d: %s", code, stderr)
	}
	var doc struct {
		Images []map[string]any `json:"images"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatal(err)
	}
	var web map[string]any
	for _, img := range doc.Images {
		for _, k := range []string{"repository", "tag", "digest", "platform", "base", "baseAgeDays", "reasons"} {
			if _, ok := img[k]; !ok {
				t.Errorf("image lacks %q: %v", k, img)
			}
		}
		if img["repository"] == "team-b/web" {
			web = img
		}
	}
	b, _ := web["base"].(map[string]any)
	for _, k := range []string{"repository", "tag", "digest", "created", "detectedBy", "confidence"} {
		if _, ok := b[k]; !ok {
			t.Errorf("base lacks %q: %v", k, b)
		}
	}
	// The policy file's image rules: web is unsigned, has no SBOM and none
	// of the required labels (and, as the clock moves on from the estate's
	// dates, it becomes image-too-old: not asserted).
	var reasons []string
	for _, r := range web["reasons"].([]any) {
		if r != "image-too-old" {
			reasons = append(reasons, fmt.Sprint(r))
		}
	}
	if r := strings.Join(reasons, " "); r != "base-outdated base-too-old unsigned no-sbom missing-label" {
		t.Errorf("team-b/web reasons %v", web["reasons"])
	}
	for _, k := range []string{"created", "createdFrom", "imageAgeDays", "missingLabels", "signed", "sbom"} {
		if _, ok := web[k]; !ok {
			t.Errorf("team-b/web lacks %q: %v", k, web)
		}
	}

	// The image rules by flag; the table says what each finding is about.
	code, out, stderr = runCLI(t, append(base, "--max-image-age", "50w", "--require-label", "org.opencontainers.image.source", "--require-signature", "--max-base-age", "0")...)
	if code != 0 {
		t.Fatalf("image rules: exit %d: %s", code, stderr)
	}
	for _, want := range []string{"image-too-old", "team-b/web:prod", "built 3", "unsigned", "missing-label", "lacks org.opencontainers.image.source"} {
		if !strings.Contains(out, want) {
			t.Errorf("image rules: table lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "base-too-old") || strings.Contains(out, "no-sbom") {
		t.Errorf("image rules: --max-base-age 0 and no --require-sbom, yet:\n%s", out)
	}

	code, out, _ = runCLI(t, append(base, "--tree")...)
	if code != 0 || !strings.Contains(out, "base/debian:12 [linux/amd64]\n├── team-a/api:1.0, team-a/api:latest") {
		t.Errorf("--tree: exit %d\n%s", code, out)
	}
}

func TestAuditCommandBadInput(t *testing.T) {
	for _, tc := range []struct {
		argv []string
		msg  string
	}{
		{[]string{"--max-base-age", "soon"}, "--max-base-age"},
		{[]string{"--ban", "base/centos:"}, "--ban: pattern"},
		{[]string{"--policy", "/no/such/policy.yaml"}, "reading policy"},
		{[]string{"--exit-code", "300"}, "--exit-code"},
		{[]string{"--max-image-age", "7x"}, "--max-image-age"},
		{[]string{"--require-label", " "}, "--require-label"},
	} {
		code, _, stderr := runCLI(t, append([]string{"audit", "127.0.0.1:1", "--insecure"}, tc.argv...)...)
		if code != 2 || !strings.Contains(stderr, tc.msg) {
			t.Errorf("%v: exit %d, stderr %q; want 2 mentioning %q", tc.argv, code, stderr, tc.msg)
		}
	}
}
