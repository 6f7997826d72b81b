package audit_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/regkeeper/regkeeper/audit"
	"github.com/regkeeper/regkeeper/gc"
	"github.com/regkeeper/regkeeper/internal/testbed/embedded"
	"github.com/regkeeper/regkeeper/internal/testbed/regtest"
	"github.com/regkeeper/regkeeper/inventory"
)

// finding is what must not change when gc runs between two audits: the
// base named, the reasons, and the ages (compared within a day, the
// precision of a history timestamp against a config's created time).
type finding struct {
	Base, BaseDigest string
	Reasons          string
	BaseAge          int
	ImageAge         int
}

func findingsOf(res *audit.Result) map[string]finding {
	out := map[string]finding{}
	for _, img := range res.Images {
		f := finding{Reasons: strings.Join(img.Reasons, ","), BaseAge: -1, ImageAge: -1}
		if img.Base != nil {
			f.Base, f.BaseDigest = img.Base.Name(), img.Base.Digest
		}
		if img.BaseAgeDays != nil {
			f.BaseAge = *img.BaseAgeDays
		}
		if img.ImageAgeDays != nil {
			f.ImageAge = *img.ImageAgeDays
		}
		out[img.Repository+":"+img.Tag+" "+img.Platform] = f
	}
	return out
}

func withinADay(x, y int) bool { return x-y <= 1 && y-x <= 1 }

// TestAuditSurvivesGC is issue 15 as a new user met it: audit, gc --grace 0,
// audit again on the same estate. team-b/web:prod names its base, an
// untagged debian, only by annotation; gc (by the stock rule) deletes that
// base, and the second audit must still find it too old, from the image's
// own history. Whether gc keeps the base or not, the findings are the same.
func TestAuditSurvivesGC(t *testing.T) {
	srv, e := regtest.Seeded(t, embedded.Options{})
	ctx := context.Background()
	pol := audit.DefaultPolicy()
	pol.Ban = []audit.Pattern{mustPattern(t, "base/centos")}
	before := runAudit(t, srv.Host, pol, e.Now)

	d, err := gc.Open(ctx, srv.ConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	opts := gc.DefaultOptions()
	opts.Grace = 0
	opts.NoKeepBases = true // the stock rule: gc keeps bases by default
	opts.MaxDeleteRatio = 1
	rep, err := gc.Run(ctx, d, opts)
	if err != nil {
		t.Fatalf("gc: %v", err)
	}
	if rep.ManifestsDeleted == 0 {
		t.Fatal("gc deleted nothing: the test would prove nothing")
	}
	after := runAudit(t, srv.Host, pol, e.Now)

	want, got := findingsOf(before), findingsOf(after)
	if diff := cmp.Diff(want, got, cmp.Comparer(func(x, y finding) bool {
		return x.Base == y.Base && x.BaseDigest == y.BaseDigest && x.Reasons == y.Reasons &&
			withinADay(x.BaseAge, y.BaseAge) && withinADay(x.ImageAge, y.ImageAge)
	})); diff != "" {
		t.Errorf("findings changed by gc (-before +after):\n%s", diff)
	}
	before2, _ := before.Counts()
	after2, _ := after.Counts()
	if before2[audit.ReasonTooOld] != 3 || after2[audit.ReasonTooOld] != 3 {
		t.Errorf("base-too-old: %d before gc, %d after, want 3 and 3", before2[audit.ReasonTooOld], after2[audit.ReasonTooOld])
	}

	// --no-keep-bases deleted the untagged base; the second audit knew it
	// from the image's history.
	web := imageOf(t, after, "team-b/web", "prod")
	baseGone := false
	if _, err := remote.Head(regtest.Ref(t, srv, "base/debian@"+web.Base.Digest)); err != nil {
		var terr *transport.Error
		if !errors.As(err, &terr) || terr.StatusCode != http.StatusNotFound {
			t.Fatalf("head of the annotated base: %v", err)
		}
		baseGone = true
	}
	if !baseGone {
		t.Errorf("gc with NoKeepBases and no grace kept the untagged base %s of team-b/web:prod", web.Base.Digest)
	}
	wantBy, wantConf := audit.ByAnnotationHistory, audit.Medium
	if web.Base.DetectedBy != wantBy || web.Base.Confidence != wantConf || web.Base.Created == "" {
		t.Errorf("team-b/web:prod after gc (base deleted: %v): base %+v, want detected by %s (%s) with a date", baseGone, web.Base, wantBy, wantConf)
	}
	t.Logf("gc deleted %d manifests; the annotated base was deleted: %v; team-b/web:prod base %s, %d days, %s (%s)",
		rep.ManifestsDeleted, baseGone, web.Base.Name(), *web.BaseAgeDays, web.Base.DetectedBy, web.Base.Confidence)
}

func imageOf(t *testing.T, res *audit.Result, repo, tag string) audit.Image {
	t.Helper()
	for _, img := range res.Images {
		if img.Repository == repo && img.Tag == tag {
			return img
		}
	}
	t.Fatalf("%s:%s not audited", repo, tag)
	return audit.Image{}
}

// unreadable is a Fetcher for a registry where every base that no tag
// names has been collected.
type unreadable struct{}

func (unreadable) Platform(context.Context, string, string, *v1.Platform) (*inventory.Platform, error) {
	return nil, errors.New("MANIFEST_UNKNOWN")
}

// TestAnnotatedBaseDatedByHistory: with the fallback alone (the annotated
// base cannot be read, whatever gc does), the base is named by its
// annotation and dated by the image's history, as old as its config said.
func TestAnnotatedBaseDatedByHistory(t *testing.T) {
	srv, e := regtest.Seeded(t, embedded.Options{})
	ctx := context.Background()
	inv, err := inventory.Run(ctx, srv.Host, inventory.Options{Client: regtest.Client()})
	if err != nil {
		t.Fatal(err)
	}
	opts := audit.Options{Policy: audit.Policy{MaxBaseAge: 180 * 24 * time.Hour}, Now: e.Now}
	res := audit.Analyze(ctx, inv, unreadable{}, opts)
	web := imageOf(t, res, "team-b/web", "prod")
	var webBuild struct{ digest string }
	for _, b := range e.Builds {
		if b.Repository == "team-b/web" {
			webBuild.digest = b.BaseDigest.String()
		}
	}
	got := verdict{Reasons: strings.Join(web.Reasons, ",")}
	got.Base, got.DetectedBy, got.Confidence = web.Base.Name(), web.Base.DetectedBy, web.Base.Confidence
	if web.BaseAgeDays != nil {
		got.Age = *web.BaseAgeDays
	}
	want := verdict{"base/debian:12@" + webBuild.digest[:19] + " (untagged since)", "annotation+history", "medium", 400, "base-outdated,base-too-old"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("team-b/web:prod (-want +got):\n%s", diff)
	}
	if web.Base.Digest != webBuild.digest || !strings.Contains(web.Base.Note, "history") {
		t.Errorf("base %+v: want the annotation's digest and a note saying the age is from history", web.Base)
	}
}
