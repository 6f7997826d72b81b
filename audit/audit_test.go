package audit_test

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/regkeeper/regkeeper/audit"
	"github.com/regkeeper/regkeeper/internal/testbed/embedded"
	"github.com/regkeeper/regkeeper/internal/testbed/estate"
	"github.com/regkeeper/regkeeper/internal/testbed/regtest"
	"github.com/regkeeper/regkeeper/inventory"
)

func runAudit(t *testing.T, host string, pol audit.Policy, now time.Time) *audit.Result {
	t.Helper()
	res, err := audit.Run(context.Background(), host, audit.Options{
		Inventory: inventory.Options{Client: regtest.Client()}, Policy: pol, Now: now,
	})
	if err != nil {
		t.Fatalf("audit.Run: %v", err)
	}
	return res
}

func mustPattern(t *testing.T, s string) audit.Pattern {
	t.Helper()
	p, err := audit.ParsePattern(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

type verdict struct {
	Base, DetectedBy, Confidence string
	Age                          int
	Reasons                      string
}

func TestAuditEstate(t *testing.T) {
	srv, e := regtest.Seeded(t, embedded.Options{})
	pol := audit.Policy{MaxBaseAge: 180 * 24 * time.Hour, Ban: []audit.Pattern{mustPattern(t, "base/centos")}}
	res := runAudit(t, srv.Host, pol, e.Now)

	got := map[string]verdict{}
	byDigest := map[string]audit.Image{}
	for _, img := range res.Images {
		v := verdict{Reasons: strings.Join(img.Reasons, ",")}
		if img.Base != nil {
			v.Base, v.DetectedBy, v.Confidence = img.Base.Name(), img.Base.DetectedBy, img.Base.Confidence
		}
		if img.BaseAgeDays != nil {
			v.Age = *img.BaseAgeDays
		}
		got[img.Repository+":"+img.Tag+" "+img.Platform] = v
		byDigest[img.Repository+"@"+img.Digest] = img
	}
	want := map[string]verdict{
		// Bases themselves, and FROM scratch: no base, no finding.
		"base/alpine:3.20 linux/amd64": {}, "base/alpine:3.20 linux/arm64": {},
		"base/centos:7 linux/amd64": {}, "base/debian:12 linux/amd64": {},
		"team-d/tool:1.0 linux/amd64": {},
		// Found by layers on the current debian.
		"team-a/api:1.0 linux/amd64":    {"base/debian:12", "layers", "high", 10, ""},
		"team-a/api:latest linux/amd64": {"base/debian:12", "layers", "high", 10, ""},
		// A reproducible build (created 1970) on a fresh base is not old.
		"team-d/repro:1.0 linux/amd64": {"base/debian:12", "layers", "high", 10, ""},
		// Known by annotation only: its base is untagged since.
		"team-b/web:prod linux/amd64": {"base/debian:12@" + short(e.Builds, "team-b/web") + " (untagged since)", "annotation", "high", 400, "base-outdated,base-too-old"},
		// The banned base.
		"team-c/worker:2.3 linux/amd64": {"base/centos:7", "layers", "high", 900, "base-banned,base-too-old"},
		// The multi-arch image, per platform: amd64 on the current alpine,
		// arm64 on a build of it that no tag names any more, which only the
		// history shows.
		"team-e/edge:1.0 linux/amd64": {"base/alpine:3.20", "layers", "high", 5, ""},
		"team-e/edge:1.0 linux/arm64": {"(unknown)", "history", "low", 300, "base-too-old,base-unknown"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("verdicts (-want +got):\n%s", diff)
	}

	// Each base digest is the one the estate built on.
	for _, b := range e.Builds {
		img, ok := byDigest[b.Repository+"@"+b.Digest.String()]
		if !ok {
			t.Errorf("%s:%s %s not audited", b.Repository, b.Tag, b.Platform)
			continue
		}
		switch {
		case b.BaseRepository == "" && img.Base != nil:
			t.Errorf("%s: FROM scratch but base %+v", b.Repository, img.Base)
		case b.BaseRepository != "" && img.Base != nil && img.Base.DetectedBy != "history" && img.Base.Digest != b.BaseDigest.String():
			t.Errorf("%s:%s %s: base digest %s, want %s", b.Repository, b.Tag, b.Platform, img.Base.Digest, b.BaseDigest)
		}
	}
}

func short(builds []estate.Build, repo string) string {
	for _, b := range builds {
		if b.Repository == repo {
			return b.BaseDigest.String()[:19]
		}
	}
	return ""
}

func TestAuditPolicyAllow(t *testing.T) {
	srv, e := regtest.Seeded(t, embedded.Options{})
	pol := audit.Policy{Allow: []audit.Pattern{mustPattern(t, srv.Host+"/base/debian:12"), mustPattern(t, "base/alp*")}}
	res := runAudit(t, srv.Host, pol, e.Now)
	notAllowed := map[string]bool{}
	for _, img := range res.Images {
		for _, r := range img.Reasons {
			if r == audit.ReasonNotAllowed {
				notAllowed[img.Repository+" "+img.Platform] = true
			}
		}
	}
	want := map[string]bool{"team-c/worker linux/amd64": true, "team-e/edge linux/arm64": true}
	if diff := cmp.Diff(want, notAllowed); diff != "" {
		t.Errorf("not allowed (-want +got):\n%s", diff)
	}
}

func TestAuditFiltersKeepTheWholeLineage(t *testing.T) {
	srv, e := regtest.Seeded(t, embedded.Options{})
	res, err := audit.Run(context.Background(), srv.Host, audit.Options{
		Inventory: inventory.Options{Client: regtest.Client(), Repo: mustRegexp("^team-a/")}, Now: e.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Images) != 2 {
		t.Fatalf("%d images, want team-a/api's 2 tags", len(res.Images))
	}
	for _, img := range res.Images {
		if img.Base == nil || img.Base.Name() != "base/debian:12" {
			t.Errorf("%s:%s: base %+v, want base/debian:12 found outside the filter", img.Repository, img.Tag, img.Base)
		}
	}
}

func TestLineage(t *testing.T) {
	srv, e := regtest.Seeded(t, embedded.Options{})
	res := runAudit(t, srv.Host, audit.Policy{MaxBaseAge: audit.DefaultMaxBaseAge}, e.Now)
	var b strings.Builder
	if err := audit.WriteTree(&b, res.Lineage()); err != nil {
		t.Fatal(err)
	}
	tree := b.String()
	for _, want := range []string{
		"base/debian:12 [linux/amd64]\n├── team-a/api:1.0, team-a/api:latest [linux/amd64]\n└── team-d/repro:1.0 [linux/amd64]\n",
		"base/centos:7 [linux/amd64]\n└── team-c/worker:2.3 [linux/amd64]  ! base-too-old\n",
		"(untagged since) [linux/amd64]\n└── team-b/web:prod [linux/amd64]  ! base-outdated, base-too-old\n",
		"└── team-e/edge:1.0 [linux/arm64]  ! base-too-old, base-unknown\n",
	} {
		if !strings.Contains(tree, want) {
			t.Errorf("lineage lacks\n%s\nin\n%s", want, tree)
		}
	}
}

func mustRegexp(s string) *regexp.Regexp { return regexp.MustCompile(s) }
