package main

import (
	"encoding/csv"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/regkeeper/regkeeper/internal/testbed/artifacts"
	"github.com/regkeeper/regkeeper/internal/testbed/embedded"
	"github.com/regkeeper/regkeeper/internal/testbed/regtest"
)

// TestAuditCommandOSlessImages is issue 24 item 1 from the command line:
// images with no os in their config, one on a banned 900-day-old base, were
// not audited and the run said "no findings", exit 0, even with --exit-code
// 3. Every format now judges them and says what it did not judge.
func TestAuditCommandOSlessImages(t *testing.T) {
	srv := artifacts.SeedOSless(t, time.Now())
	base := []string{"audit", srv.Host, "--insecure", "--ban", "base/centos"}
	const notJudged = "2 signatures, 1 SBOM, 1 Helm chart and 1 other artifact not judged"

	code, out, stderr := runCLI(t, append(base, "--exit-code", "3")...)
	if code != 3 {
		t.Errorf("exit %d, want 3 (--exit-code 3 with findings): %s", code, stderr)
	}
	if !regexp.MustCompile(`base-banned +team/app:1.0`).MatchString(out) || !strings.Contains(out, "1 of 3 images (tag and platform) with findings: 1 base-banned, 1 base-too-old; "+notJudged) {
		t.Errorf("table:\n%s", out)
	}

	// The metrics count them by kind.
	mfile := filepath.Join(t.TempDir(), "audit.prom")
	if code, _, stderr := runCLI(t, append(base, "--ban", "base/cent0s", "--metrics-file", mfile)...); code != 0 {
		t.Fatalf("metrics: exit %d: %s", code, stderr)
	}
	prom, err := os.ReadFile(mfile)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`regkeeper_audit_not_judged{kind="signature"} 2`, `regkeeper_audit_not_judged{kind="sbom"} 1`,
		`regkeeper_audit_not_judged{kind="unreadable"} 0`, "regkeeper_audit_warnings 1"} {
		if !strings.Contains(string(prom), want+"\n") {
			t.Errorf("metrics lack %q:\n%s", want, prom)
		}
	}

	code, out, stderr = runCLI(t, append(base, "-o", "markdown")...)
	if code != 0 || !strings.Contains(out, notJudged) || !strings.Contains(out, "team/app:1.0") {
		t.Errorf("markdown: exit %d: %s\n%s", code, stderr, out)
	}

	code, out, stderr = runCLI(t, append(base, "-o", "json")...)
	if code != 0 {
		t.Fatalf("json: exit %d: %s", code, stderr)
	}
	var doc struct {
		Images    []struct{ Repository string } `json:"images"`
		NotJudged []struct {
			Repository, Tag, Digest, Kind string
		} `json:"notJudged"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, n := range doc.NotJudged {
		if n.Repository == "" || n.Tag == "" || n.Digest == "" {
			t.Errorf("notJudged entry lacks a field: %+v", n)
		}
		kinds[n.Kind]++
	}
	if len(doc.Images) != 3 || kinds["signature"] != 2 || kinds["sbom"] != 1 || kinds["helm-chart"] != 1 || kinds["artifact"] != 1 {
		t.Errorf("json: %d images, not judged %v; want 3 images, 2 signatures, 1 sbom, 1 helm-chart, 1 artifact", len(doc.Images), kinds)
	}

	code, out, stderr = runCLI(t, append(base, "-o", "csv")...)
	if code != 0 {
		t.Fatalf("csv: exit %d: %s", code, stderr)
	}
	rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	last := len(rows[0]) - 1
	if rows[0][last] != "NOT JUDGED" || len(rows) != 1+8 {
		t.Fatalf("csv: want a NOT JUDGED column and a row per tag (8):\n%s", out)
	}
	judged := 0
	for _, r := range rows[1:] {
		if r[last] == "" {
			judged++
		}
	}
	if judged != 3 {
		t.Errorf("csv: %d rows judged, want 3:\n%s", judged, out)
	}
}

// TestAuditCommandRegistryName is issue 24 item 9 from the command line:
// the same embedded registry audited as 127.0.0.1:PORT and as
// localhost:PORT gives the same findings, and --registry-alias names a
// host the annotations use.
func TestAuditCommandRegistryName(t *testing.T) {
	now := time.Now()
	srv := regtest.Registry(t, embedded.Options{})
	busybox := artifacts.OSless(t, nil, now.AddDate(0, 0, -30), "busybox rootfs")
	bd := artifacts.PushIndex(t, srv, "base/busybox:1", busybox)
	app := artifacts.OSless(t, busybox, now.AddDate(0, 0, -1), "app")
	artifacts.Push(t, srv, "team/app:1", artifacts.Annotated(app, srv.Host+"/base/busybox:1", bd.String()))
	artifacts.Push(t, srv, "team/app:2", artifacts.Annotated(app, "registry.internal/base/busybox:1", ""))
	_, port, _ := strings.Cut(srv.Host, ":")
	for _, host := range []string{srv.Host, "localhost:" + port} {
		code, out, stderr := runCLI(t, "audit", host, "--insecure", "--registry-alias", "registry.internal",
			"--ban", "registry.internal/base/busybox", "--exit-code", "3")
		if code != 3 {
			t.Errorf("audit %s: exit %d, want 3: %s", host, code, stderr)
		}
		if !strings.Contains(out, "2 of 3 images (tag and platform) with findings: 2 base-banned\n") || strings.Contains(out, "base-outdated") {
			t.Errorf("audit %s:\n%s", host, out)
		}
	}
}

// TestAuditCommandUnmatchedPatterns is issue 24 item 6: --ban base/cent0s
// (a typo) turned the policy off without a word. A --ban, --allow or
// policy file pattern that matches no image or base of the registry is
// warned about on stderr, in every format, and listed under "warnings" in
// JSON.
func TestAuditCommandUnmatchedPatterns(t *testing.T) {
	srv := artifacts.SeedOSless(t, time.Now())
	policy := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(policy, []byte("ban:\n  - base/centos\n  - base/alpine*\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"audit", srv.Host, "--insecure", "--policy", policy, "--ban", "base/cent0s", "--allow", "base/centos:7", "--allow", "base/debian:13"}
	wantWarnings := []string{
		policy + ` line 3 (ban) "base/alpine*" matches none of`,
		`--ban "base/cent0s" matches none of`,
		`--allow "base/debian:13" matches none of`,
	}
	for _, format := range []string{"table", "json", "csv", "markdown"} {
		code, out, stderr := runCLI(t, append(args, "-o", format)...)
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", format, code, stderr)
		}
		for _, w := range wantWarnings {
			if !strings.Contains(stderr, "warning: "+w) {
				t.Errorf("%s: stderr lacks %q:\n%s", format, w, stderr)
			}
		}
		if strings.Count(stderr, "warning: ") != len(wantWarnings) {
			t.Errorf("%s: want %d warnings:\n%s", format, len(wantWarnings), stderr)
		}
		if format != "json" {
			continue
		}
		var doc struct {
			Warnings []struct{ Kind, Source, Pattern, Message string } `json:"warnings"`
		}
		if err := json.Unmarshal([]byte(out), &doc); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, w := range doc.Warnings {
			got = append(got, w.Kind+" "+w.Source+" "+w.Pattern)
		}
		want := []string{"pattern-unmatched " + policy + " line 3 (ban) base/alpine*", "pattern-unmatched --ban base/cent0s", "pattern-unmatched --allow base/debian:13"}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("json warnings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
}

// TestReportCommandWarnsAboutUnmatchedPatterns: report shares audit's
// policy flags and says the same warnings on stderr.
func TestReportCommandWarnsAboutUnmatchedPatterns(t *testing.T) {
	srv := artifacts.SeedOSless(t, time.Now())
	out := filepath.Join(t.TempDir(), "report.md")
	code, _, stderr := runCLI(t, "report", srv.Host, "--insecure", "--ban", "base/cent0s", "-o", "markdown", "--out", out)
	if code != 0 || !strings.Contains(stderr, `warning: --ban "base/cent0s" matches none of the 8 tags`) {
		t.Errorf("exit %d, stderr:\n%s", code, stderr)
	}
	md, err := os.ReadFile(out)
	if err != nil || !strings.Contains(string(md), "2 signatures, 1 SBOM, 1 Helm chart and 1 other artifact not judged") {
		t.Errorf("report (%v):\n%s", err, md)
	}
}
