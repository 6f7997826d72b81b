package audit_test

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/regkeeper/regkeeper/audit"
	"github.com/regkeeper/regkeeper/internal/testbed/artifacts"
	"github.com/regkeeper/regkeeper/internal/testbed/embedded"
	"github.com/regkeeper/regkeeper/internal/testbed/regtest"
	"github.com/regkeeper/regkeeper/inventory"
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

// TestAuditDoesNotDependOnTheRegistryName is issue 24 item 9: images name
// their base as 127.0.0.1:PORT/base/busybox:1 with its current digest;
// audited as localhost:PORT (the same registry), they were base-outdated
// ("base is on another registry"). A base whose repository and digest are
// here is this registry's; --registry-alias names other hosts; a base on
// another registry is never base-outdated, as its tag was not read.
func TestAuditDoesNotDependOnTheRegistryName(t *testing.T) {
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	srv := regtest.Registry(t, embedded.Options{})
	busybox := artifacts.OSless(t, nil, now.AddDate(0, 0, -30), "busybox rootfs")
	bd := artifacts.PushIndex(t, srv, "base/busybox:1", busybox)
	app := artifacts.OSless(t, busybox, now.AddDate(0, 0, -1), "app")
	_, port, _ := strings.Cut(srv.Host, ":")
	// Named with this registry's other name and the current digest.
	artifacts.Push(t, srv, "team/app:1", artifacts.Annotated(app, srv.Host+"/base/busybox:1", bd.String()))
	// Named by a host only an alias says is this one, without a digest.
	artifacts.Push(t, srv, "team/app:alias", artifacts.Annotated(app, "registry.internal:5000/base/busybox:1", ""))
	// On another registry, same repository and tag, another digest: the
	// tag here says nothing about the tag there.
	artifacts.Push(t, srv, "team/app:elsewhere", artifacts.Annotated(app, "mirror.example.com/base/busybox:1", "sha256:"+strings.Repeat("e", 64)))

	want := map[string]string{
		"team/app:1":         "base/busybox:1 annotation high []",
		"team/app:alias":     "base/busybox:1 annotation high []",
		"team/app:elsewhere": "mirror.example.com/base/busybox:1@sha256:eeeeeeeeeeee annotation medium []",
	}
	for _, host := range []string{srv.Host, "localhost:" + port} {
		pol := audit.DefaultPolicy()
		pol.RegistryAliases = []string{"registry.internal:5000"}
		got := map[string]string{}
		for _, img := range runAudit(t, host, pol, now).Images {
			if img.Repository != "team/app" {
				continue
			}
			b := img.Base
			if b == nil {
				got[img.Repository+":"+img.Tag] = "no base"
				continue
			}
			got[img.Repository+":"+img.Tag] = fmt.Sprintf("%s %s %s %v", b.Name(), b.DetectedBy, b.Confidence, img.Reasons)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("audit %s (-want +got):\n%s", host, diff)
		}
	}
}

// TestAuditWarnsAboutUnmatchedPatterns is issue 24 item 6 in the library:
// a ban or allow pattern that names no image of the registry (by tag or
// digest, whatever the filters) and no base found is a warning.
func TestAuditWarnsAboutUnmatchedPatterns(t *testing.T) {
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	srv := artifacts.SeedOSless(t, now)
	inv := runAudit(t, srv.Host, audit.Policy{}, now).Inventory
	var toolDigest string
	for _, img := range inv.Images {
		if img.Repository == "team/tool" && img.Tag == "1.0" {
			toolDigest = img.Digest
		}
	}
	pat := func(s, source string) audit.Pattern {
		p := mustPattern(t, s)
		p.Source = source
		return p
	}
	pol := audit.Policy{
		Ban: []audit.Pattern{pat("base/centos", "--ban"), pat("base/cent0s", "--ban"), pat(toolDigest, "--ban"),
			pat(srv.Host+"/team/*", "--ban"), pat("other.example.com/base/centos", "--ban")},
		Allow: []audit.Pattern{pat("base/centos:7", "p.yaml line 2 (allow)"), pat("base/centos:8", "p.yaml line 3 (allow)")},
	}
	// Filters do not make a pattern unmatched: it names a tag of the
	// registry all the same.
	res, err := audit.Run(context.Background(), srv.Host, audit.Options{
		Inventory: inventory.Options{Client: regtest.Client(), Repo: regexp.MustCompile("^charts/")}, Policy: pol, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, w := range res.Warnings {
		got = append(got, w.Kind+" "+w.Source+" "+w.Pattern)
	}
	want := []string{"pattern-unmatched --ban base/cent0s", "pattern-unmatched --ban other.example.com/base/centos", "pattern-unmatched p.yaml line 3 (allow) base/centos:8"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("warnings (-want +got):\n%s", diff)
	}
}

// TestSummaryCountsNouns: "1 image", not "1 images"; what is not judged
// is said in the same line.
func TestSummaryCountsNouns(t *testing.T) {
	none := []string{}
	for _, tc := range []struct {
		name string
		res  audit.Result
		want string
	}{
		{"one image", audit.Result{Images: []audit.Image{{Reasons: none}}},
			"1 image (tag and platform) audited: no findings"},
		{"one finding, one signature", audit.Result{Images: []audit.Image{{Reasons: []string{audit.ReasonTooOld}}},
			NotJudged: []audit.NotJudged{{Kind: audit.KindSignature}}},
			"1 of 1 image (tag and platform) with findings: 1 base-too-old; 1 signature not judged"},
		{"many", audit.Result{Images: []audit.Image{{Reasons: none}, {Reasons: none}},
			NotJudged: []audit.NotJudged{{Kind: audit.KindSBOM}, {Kind: audit.KindSignature}, {Kind: audit.KindSignature}}},
			"2 images (tag and platform) audited: no findings; 2 signatures and 1 SBOM not judged"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.res.Summary(); got != tc.want {
				t.Errorf("Summary() = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestKindOf: what a manifest is, from its tag, artifactType, config and
// layer media types; os plays no part.
func TestKindOf(t *testing.T) {
	const (
		ociConfig = "application/vnd.oci.image.config.v1+json"
		ociLayer  = "application/vnd.oci.image.layer.v1.tar+gzip"
	)
	d := func(mt string) v1.Descriptor { return v1.Descriptor{MediaType: types.MediaType(mt)} }
	cf := &v1.ConfigFile{} // no os, no architecture
	for _, tc := range []struct {
		name, tag    string
		artifactType string
		config       string
		layers       []string
		noConfig     bool
		want         string
	}{
		{"image with no os", "1.0", "", ociConfig, []string{ociLayer}, false, ""},
		{"docker image, foreign and zstd layers", "1.0", "", "application/vnd.docker.container.image.v1+json",
			[]string{"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", "application/vnd.oci.image.layer.v1.tar+zstd"}, false, ""},
		{"encrypted layer", "1.0", "", ociConfig, []string{"application/vnd.oci.image.layer.v1.tar+gzip+encrypted"}, false, ""},
		{"cosign signature", "sha256-" + strings.Repeat("a", 64) + ".sig", "", ociConfig, []string{"application/vnd.dev.cosign.simplesigning.v1+json"}, false, audit.KindSignature},
		{"cosign attestation", "sha256-" + strings.Repeat("a", 64) + ".att", "", ociConfig, []string{"application/vnd.dsse.envelope.v1+json"}, false, audit.KindAttestation},
		{"cosign sbom by tag alone", "sha256-" + strings.Repeat("a", 64) + ".sbom", "", ociConfig, []string{ociLayer}, false, audit.KindSBOM},
		{"signature by layer type", "x", "", ociConfig, []string{"application/vnd.dev.cosign.simplesigning.v1+json"}, false, audit.KindSignature},
		{"buildkit attestation manifest", "x", "", ociConfig, []string{"application/vnd.in-toto+json"}, false, audit.KindAttestation},
		{"notation by artifactType", "x", "application/vnd.cncf.notary.signature", "application/vnd.oci.empty.v1+json", []string{"application/jose+json"}, true, audit.KindSignature},
		{"cyclonedx referrer", "x", "application/vnd.cyclonedx+json", "application/vnd.oci.empty.v1+json", []string{"application/vnd.cyclonedx+json"}, true, audit.KindSBOM},
		{"helm chart", "0.1.0", "", "application/vnd.cncf.helm.config.v1+json", []string{"application/vnd.cncf.helm.chart.content.v1.tar+gzip"}, true, audit.KindHelmChart},
		{"oras file", "1", "", "application/vnd.unknown.config.v1+json", []string{"application/vnd.oci.image.layer.v1.tar"}, true, audit.KindArtifact},
		{"image config unreadable", "1.0", "", ociConfig, []string{ociLayer}, true, audit.KindUnreadable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := &v1.Manifest{SchemaVersion: 2, ArtifactType: tc.artifactType, Config: d(tc.config)}
			for _, l := range tc.layers {
				m.Layers = append(m.Layers, d(l))
			}
			p := &inventory.Platform{Digest: "sha256:" + strings.Repeat("b", 64), Manifest: m, Config: cf}
			if tc.noConfig {
				p.Config = nil
			}
			if got := audit.KindOf(tc.tag, p); got != tc.want {
				t.Errorf("KindOf = %q, want %q", got, tc.want)
			}
		})
	}
}
