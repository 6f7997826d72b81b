package audit_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/regkeeper/regkeeper/audit"
	"github.com/regkeeper/regkeeper/internal/testbed/artifacts"
)

// TestAuditJudgesImagesWithoutOS is issue 24 item 1: images whose config
// has an empty os were not audited at all, the one on a banned 900-day-old
// base included. Images are told from artifacts by their media types and
// the cosign conventions, and what is not judged is counted.
func TestAuditJudgesImagesWithoutOS(t *testing.T) {
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	srv := artifacts.SeedOSless(t, now)
	pol := audit.DefaultPolicy()
	pol.Ban = []audit.Pattern{mustPattern(t, "base/centos")}
	res := runAudit(t, srv.Host, pol, now)

	got := map[string]string{}
	for _, img := range res.Images {
		base := ""
		if img.Base != nil {
			base = img.Base.Name()
		}
		got[img.Repository+":"+img.Tag] = fmt.Sprintf("base=%s reasons=%v", base, img.Reasons)
	}
	want := map[string]string{
		"base/centos:7": "base= reasons=[]",
		"team/app:1.0":  "base=base/centos:7 reasons=[base-banned base-too-old]",
		"team/tool:1.0": "base= reasons=[]",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("images audited (-want +got):\n%s", diff)
	}
	var notJudged []string
	for _, n := range res.NotJudged {
		notJudged = append(notJudged, n.Repository+" "+n.Kind)
	}
	slices.Sort(notJudged)
	wantNot := []string{"charts/web helm-chart", "files/notes artifact", "team/app sbom", "team/app signature", "team/tool signature"}
	if diff := cmp.Diff(wantNot, notJudged); diff != "" {
		t.Errorf("not judged (-want +got):\n%s", diff)
	}
	if got, want := res.NotJudgedSummary(), "2 signatures, 1 SBOM, 1 Helm chart and 1 other artifact not judged"; got != want {
		t.Errorf("NotJudgedSummary() = %q, want %q", got, want)
	}
}
