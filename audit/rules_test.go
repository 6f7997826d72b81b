package audit_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/regkeeper/regkeeper/audit"
	"github.com/regkeeper/regkeeper/internal/testbed/embedded"
	"github.com/regkeeper/regkeeper/internal/testbed/estate"
	"github.com/regkeeper/regkeeper/internal/testbed/regtest"
	"github.com/regkeeper/regkeeper/inventory"
)

// The labels the rules estate's policy requires.
var requiredLabels = []string{"org.opencontainers.image.revision", "org.opencontainers.image.source", "org.opencontainers.image.version"}

func allLabels() map[string]string {
	return map[string]string{
		"org.opencontainers.image.revision": "0123abcd",
		"org.opencontainers.image.source":   "https://git.example.com/rules",
		"org.opencontainers.image.version":  "1.0.0",
	}
}

// rulesEstate pushes, to a registry of its own, one image for each case of
// the image rules (the shared estate is asserted exactly by other tests):
//
//	rules/good:1.0, :latest  10 days old, labelled, .sig and .sbom tags
//	rules/old:1.0            400 days old, nothing attached
//	rules/repro:1.0          created 1970; its layer dated 300 days ago;
//	                         a sigstore bundle and an SPDX SBOM as OCI
//	                         referrers (behind the fallback tag)
//	rules/undated:1.0        created 0001, history 1980; an SBOM attestation
//	                         behind a .att tag
//	rules/latest:latest      the only tag of its image
//	rules/partial:1.0        only the revision label
//	rules/multi:1.0          an index signed by a .sig tag on the index; an
//	                         SBOM (.sbom tag) on its amd64 child only
//	rules/prov:1.0           a notation signature referrer; a .att tag that
//	                         is provenance, not an SBOM
type rulesEstate struct {
	host string
	now  time.Time
}

func seedRules(t *testing.T) rulesEstate {
	t.Helper()
	srv := regtest.Registry(t, embedded.Options{})
	now := estate.DefaultNow
	ago := func(d int) time.Time { return now.Add(-time.Duration(d) * 24 * time.Hour) }
	amd64 := v1.Platform{OS: "linux", Architecture: "amd64"}
	arm64 := v1.Platform{OS: "linux", Architecture: "arm64"}
	build := func(seed string, plat v1.Platform, created, layerCreated time.Time, labels map[string]string) v1.Image {
		img, err := estate.BuildImage(estate.ImageSpec{Platform: plat, Created: created, LayerCreated: layerCreated,
			Layers: []estate.LayerSpec{{Seed: seed, Size: 512}}, Labels: labels})
		if err != nil {
			t.Fatal(err)
		}
		return img
	}
	ref := func(s string) name.Reference {
		r, err := name.ParseReference(srv.Host+"/"+s, name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	push := func(repo string, img v1.Image, tags ...string) v1.Descriptor {
		for _, tag := range tags {
			if err := remote.Write(ref(repo+":"+tag), img); err != nil {
				t.Fatal(err)
			}
		}
		d, _ := img.Digest()
		mt, _ := img.MediaType()
		n, _ := img.Size()
		return v1.Descriptor{MediaType: mt, Digest: d, Size: n}
	}
	// artifact pushes a one-layer artifact: under tag, or, with a subject,
	// by digest as an OCI referrer (ggcr keeps the fallback tag).
	artifact := func(repo, tag, artifactType string, layerAnn map[string]string, subject *v1.Descriptor) {
		cfg := static.NewLayer([]byte("{}"), estate.MediaTypeEmpty)
		layer := static.NewLayer([]byte(fmt.Sprintf("%s %s %s", repo, tag, artifactType)), types.MediaType("application/octet-stream"))
		for _, l := range []v1.Layer{cfg, layer} {
			if err := remote.WriteLayer(ref(repo+":x").Context(), l); err != nil {
				t.Fatal(err)
			}
		}
		desc := func(l v1.Layer, ann map[string]string) v1.Descriptor {
			d, _ := l.Digest()
			n, _ := l.Size()
			m, _ := l.MediaType()
			return v1.Descriptor{MediaType: m, Digest: d, Size: n, Annotations: ann}
		}
		man := v1.Manifest{SchemaVersion: 2, MediaType: types.OCIManifestSchema1, ArtifactType: artifactType,
			Config: desc(cfg, nil), Layers: []v1.Descriptor{desc(layer, layerAnn)}, Subject: subject}
		raw, err := json.Marshal(man)
		if err != nil {
			t.Fatal(err)
		}
		d, _, _ := v1.SHA256(strings.NewReader(string(raw)))
		r := ref(repo + "@" + d.String())
		if tag != "" {
			r = ref(repo + ":" + tag)
		}
		if err := remote.Put(r, rawManifest{raw, types.OCIManifestSchema1}, remote.WithContext(context.Background())); err != nil {
			t.Fatal(err)
		}
	}
	cosign := func(repo string, subject v1.Descriptor, suffix string, layerAnn map[string]string) {
		artifact(repo, fmt.Sprintf("%s-%s.%s", subject.Digest.Algorithm, subject.Digest.Hex, suffix), "", layerAnn, nil)
	}
	spdxAtt := map[string]string{"predicateType": "https://spdx.dev/Document"}
	slsaAtt := map[string]string{"predicateType": "https://slsa.dev/provenance/v1"}

	good := push("rules/good", build("good", amd64, ago(10), time.Time{}, allLabels()), "1.0", "latest")
	cosign("rules/good", good, "sig", nil)
	cosign("rules/good", good, "sbom", nil)

	push("rules/old", build("old", amd64, ago(400), time.Time{}, allLabels()), "1.0")

	repro := push("rules/repro", build("repro", amd64, time.Unix(0, 0).UTC(), ago(300), allLabels()), "1.0")
	artifact("rules/repro", "", "application/vnd.dev.sigstore.bundle.v0.3+json", nil, &repro)
	artifact("rules/repro", "", "application/spdx+json", nil, &repro)

	undated := push("rules/undated", build("undated", amd64, time.Time{}, time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC), allLabels()), "1.0")
	cosign("rules/undated", undated, "att", spdxAtt)

	latest := push("rules/latest", build("latest", amd64, ago(5), time.Time{}, allLabels()), "latest")
	cosign("rules/latest", latest, "sig", nil)
	cosign("rules/latest", latest, "sbom", nil)

	partial := push("rules/partial", build("partial", amd64, ago(5), time.Time{}, map[string]string{"org.opencontainers.image.revision": "0123abcd"}), "1.0")
	cosign("rules/partial", partial, "sig", nil)
	cosign("rules/partial", partial, "sbom", nil)

	mAMD, mARM := build("multi-amd64", amd64, ago(5), time.Time{}, allLabels()), build("multi-arm64", arm64, ago(5), time.Time{}, allLabels())
	idx, err := estate.Index(mAMD, mARM)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(ref("rules/multi:1.0"), idx); err != nil {
		t.Fatal(err)
	}
	idxDigest, _ := idx.Digest()
	cosign("rules/multi", v1.Descriptor{Digest: idxDigest}, "sig", nil)
	amdDigest, _ := mAMD.Digest()
	cosign("rules/multi", v1.Descriptor{Digest: amdDigest}, "sbom", nil)

	prov := push("rules/prov", build("prov", amd64, ago(5), time.Time{}, allLabels()), "1.0")
	artifact("rules/prov", "", "application/vnd.cncf.notary.signature", nil, &prov)
	cosign("rules/prov", prov, "att", slsaAtt)

	return rulesEstate{host: srv.Host, now: now}
}

type rawManifest struct {
	raw []byte
	mt  types.MediaType
}

func (r rawManifest) RawManifest() ([]byte, error)        { return r.raw, nil }
func (r rawManifest) MediaType() (types.MediaType, error) { return r.mt, nil }

// ruleVerdict is what the image rules say of one image.
type ruleVerdict struct {
	Reasons       string
	Age           int // -1: undated
	From          string
	MissingLabels string
	Signed, SBOM  string // "true", "false", or "" when not looked up
}

func ruleVerdicts(res *audit.Result) map[string]ruleVerdict {
	b := func(p *bool) string {
		if p == nil {
			return ""
		}
		return fmt.Sprint(*p)
	}
	out := map[string]ruleVerdict{}
	for _, img := range res.Images {
		v := ruleVerdict{Reasons: strings.Join(img.Reasons, ","), Age: -1, From: img.CreatedFrom,
			MissingLabels: strings.Join(img.MissingLabels, ","), Signed: b(img.Signed), SBOM: b(img.SBOM)}
		if img.ImageAgeDays != nil {
			v.Age = *img.ImageAgeDays
		}
		key := img.Repository + ":" + img.Tag
		if img.Repository == "rules/multi" {
			key += " " + img.Platform
		}
		out[key] = v
	}
	return out
}

func TestImageRules(t *testing.T) {
	e := seedRules(t)
	all := audit.DefaultPolicy()
	all.MaxImageAge = 180 * 24 * time.Hour
	all.RequireLabels = requiredLabels
	all.RequireSignature, all.RequireSBOM = true, true

	const (
		old, labels, sig, sbom = "image-too-old", "missing-label", "unsigned", "no-sbom"
	)
	for _, tc := range []struct {
		name string
		pol  audit.Policy
		want map[string]ruleVerdict
	}{{
		// Only tag-latest-only is on by default; ages are reported anyway.
		name: "default",
		pol:  audit.DefaultPolicy(),
		want: map[string]ruleVerdict{
			"rules/good:1.0":              {"", 10, "config", "", "", ""},
			"rules/good:latest":           {"", 10, "config", "", "", ""},
			"rules/old:1.0":               {"", 400, "config", "", "", ""},
			"rules/repro:1.0":             {"", 300, "history", "", "", ""},
			"rules/undated:1.0":           {"", -1, "", "", "", ""},
			"rules/latest:latest":         {"tag-latest-only", 5, "config", "", "", ""},
			"rules/partial:1.0":           {"", 5, "config", "", "", ""},
			"rules/multi:1.0 linux/amd64": {"", 5, "config", "", "", ""},
			"rules/multi:1.0 linux/arm64": {"", 5, "config", "", "", ""},
			"rules/prov:1.0":              {"", 5, "config", "", "", ""},
		},
	}, {
		name: "every rule",
		pol:  all,
		want: map[string]ruleVerdict{
			"rules/good:1.0":    {"", 10, "config", "", "true", "true"},
			"rules/good:latest": {"", 10, "config", "", "true", "true"},
			// Built 400 days ago, nothing attached.
			"rules/old:1.0": {old + "," + sig + "," + sbom, 400, "config", "", "false", "false"},
			// Created 1970: the age is its history's, and says so.
			"rules/repro:1.0": {old, 300, "history", "", "true", "true"},
			// No date at all: undated, not old.
			"rules/undated:1.0":   {sig + ",image-undated", -1, "", "", "false", "true"},
			"rules/latest:latest": {"tag-latest-only", 5, "config", "", "true", "true"},
			"rules/partial:1.0":   {labels, 5, "config", "org.opencontainers.image.source,org.opencontainers.image.version", "true", "true"},
			// Signed on the index: both platforms; the SBOM on amd64 only.
			"rules/multi:1.0 linux/amd64": {"", 5, "config", "", "true", "true"},
			"rules/multi:1.0 linux/arm64": {sbom, 5, "config", "", "true", "false"},
			// A provenance attestation is not an SBOM.
			"rules/prov:1.0": {sbom, 5, "config", "", "true", "false"},
		},
	}, {
		name: "nothing",
		pol:  audit.Policy{},
		want: nil, // filled below: no reasons anywhere
	}} {
		t.Run(tc.name, func(t *testing.T) {
			res := runAudit(t, e.host, tc.pol, e.now)
			got := ruleVerdicts(res)
			if tc.want == nil {
				for k, v := range got {
					if v.Reasons != "" {
						t.Errorf("%s: reasons %q with every rule off", k, v.Reasons)
					}
				}
				return
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("verdicts (-want +got):\n%s", diff)
			}
		})
	}
}

// fakeReferrers answers the referrers API for one manifest, counting calls.
type fakeReferrers struct {
	supported bool
	subject   string
	descs     []v1.Descriptor
	calls     int
}

func (f *fakeReferrers) Platform(context.Context, string, string, *v1.Platform) (*inventory.Platform, error) {
	return nil, fmt.Errorf("not here")
}

func (f *fakeReferrers) Referrers(_ context.Context, _, digest string) ([]v1.Descriptor, bool, error) {
	f.calls++
	if !f.supported || digest != f.subject {
		return nil, f.supported, nil
	}
	return f.descs, true, nil
}

// TestReferrersAPI: what a registry's referrers API lists counts; a
// registry without one is asked once.
func TestReferrersAPI(t *testing.T) {
	e := seedRules(t)
	ctx := context.Background()
	inv, err := inventory.Run(ctx, e.host, inventory.Options{Client: regtest.Client(), Repo: mustRegexp("^rules/old$")})
	if err != nil {
		t.Fatal(err)
	}
	old := inv.Images[0]
	opts := audit.Options{Policy: audit.Policy{RequireSignature: true, RequireSBOM: true}, Now: e.now}

	api := &fakeReferrers{supported: true, subject: old.Digest, descs: []v1.Descriptor{
		{MediaType: types.OCIManifestSchema1, ArtifactType: "application/vnd.cncf.notary.signature"},
		{MediaType: types.OCIManifestSchema1, ArtifactType: "application/vnd.in-toto+json", Annotations: map[string]string{"in-toto.io/predicate-type": "https://cyclonedx.org/bom"}},
	}}
	res := audit.Analyze(ctx, inv, api, opts)
	if img := res.Images[0]; len(img.Reasons) != 0 || !*img.Signed || !*img.SBOM {
		t.Errorf("with the referrers API: %+v", img)
	}

	none := &fakeReferrers{}
	res = audit.Analyze(ctx, inv, none, opts)
	if img := res.Images[0]; strings.Join(img.Reasons, ",") != "unsigned,no-sbom" || none.calls != 1 {
		t.Errorf("without a referrers API: reasons %v after %d calls, want unsigned,no-sbom after 1", img.Reasons, none.calls)
	}

	// The real registry (distribution 3.1) has no referrers API: it says
	// 404 once, and the audit stops asking.
	var log bytes.Buffer
	_, err = audit.Run(ctx, e.host, audit.Options{Policy: opts.Policy, Now: e.now, Inventory: inventory.Options{
		Client: regtest.Client(), Logger: slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelDebug}))}})
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(log.String(), "no referrers API"); n != 1 || strings.Contains(log.String(), "listing referrers") {
		t.Errorf("the registry's lack of a referrers API noted %d times, want once; log:\n%s", n, log.String())
	}
}
