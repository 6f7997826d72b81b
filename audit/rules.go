package audit

import (
	"context"
	"regexp"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/regkeeper/regkeeper/inventory"
)

// The rules on the image itself rather than on its base: its age, its tags,
// its labels, and what is attached to it (signatures, SBOMs).

// ReferrersFetcher is a Fetcher that can also list the OCI referrers of a
// manifest through the registry's referrers API
// (GET /v2/<name>/referrers/<digest>). It is asked only when the policy
// requires a signature or an SBOM.
type ReferrersFetcher interface {
	Fetcher
	// Referrers returns the descriptors of the manifests whose subject is
	// digest in repo. supported is false when the registry has no referrers
	// API (it answered 404): the audit then stops asking and relies on the
	// referrers fallback tags (sha256-<hex>) and cosign-style tags it
	// already has in the inventory.
	Referrers(ctx context.Context, repo, digest string) (descs []v1.Descriptor, supported bool, err error)
}

// Artifact types that are signatures or SBOMs. An attestation (in-toto,
// DSSE, a cosign .att tag) counts as an SBOM when its predicate type names
// SPDX or CycloneDX.
var (
	signatureTypes = []string{
		"application/vnd.dev.cosign.artifact.sig.v1+json",
		"application/vnd.dev.cosign.simplesigning.v1+json",
		"application/vnd.dev.sigstore.bundle", // v0.1, v0.2, v0.3+json
		"application/vnd.cncf.notary.signature",
	}
	sbomTypes = []string{
		"application/spdx+json", "text/spdx", "application/spdx",
		"application/vnd.cyclonedx", // +json, +xml
		"application/vnd.syft+json",
		"application/vnd.dev.cosign.artifact.sbom.v1+json",
	}
	attestationTypes = []string{
		"application/vnd.in-toto", // +json
		"application/vnd.dsse.envelope.v1+json",
		"application/vnd.dev.cosign.artifact.att.v1+json",
	}
	// predicateKeys are the annotations that carry an attestation's
	// predicate type: cosign's on the layers of a .att manifest, BuildKit's
	// and ORAS's on manifests and descriptors.
	predicateKeys = []string{"predicateType", "in-toto.io/predicate-type", "dev.sigstore.cosign/predicateType"}
)

func hasTypePrefix(t string, list []string) bool {
	t, _, _ = strings.Cut(strings.ToLower(strings.TrimSpace(t)), ";")
	for _, p := range list {
		if strings.HasPrefix(t, p) {
			return true
		}
	}
	return false
}

// sbomPredicate reports whether annotations name an SBOM predicate type.
func sbomPredicate(anns ...map[string]string) bool {
	for _, ann := range anns {
		for _, k := range predicateKeys {
			v := strings.ToLower(ann[k])
			if strings.Contains(v, "spdx") || strings.Contains(v, "cyclonedx") {
				return true
			}
		}
	}
	return false
}

// classify says whether an artifact of this type (annotations: its own and
// its layers') is a signature or an SBOM.
func classify(artifactType string, anns ...map[string]string) attachment {
	switch {
	case hasTypePrefix(artifactType, signatureTypes):
		return attachment{signed: true}
	case hasTypePrefix(artifactType, sbomTypes):
		return attachment{sbom: true}
	case hasTypePrefix(artifactType, attestationTypes):
		return attachment{sbom: sbomPredicate(anns...)}
	}
	return attachment{}
}

// attachment is what is attached to one manifest.
type attachment struct{ signed, sbom bool }

func (x attachment) or(y attachment) attachment {
	return attachment{signed: x.signed || y.signed, sbom: x.sbom || y.sbom}
}

// cosignTag is a cosign-style tag: sha256-<hex>.sig, .sbom or .att.
var cosignTag = regexp.MustCompile(`^(sha256|sha512)-([0-9a-f]{64,128})\.(sig|sbom|att)$`)

// fallbackTag is the OCI referrers fallback tag: sha256-<hex>.
var fallbackTag = regexp.MustCompile(`^(sha256|sha512)-([0-9a-f]{64,128})$`)

// indexTags records, from the inventory, which tags name each manifest
// (for tag-latest-only) and what the cosign-style and referrers fallback
// tags attach to which manifest (for unsigned and no-sbom).
func (a *analyzer) indexTags() {
	for i := range a.inv.Images {
		img := &a.inv.Images[i]
		a.tagsOf[img.Repository+"@"+img.Digest] = append(a.tagsOf[img.Repository+"@"+img.Digest], img.Tag)
		for _, p := range img.Platforms {
			if p.Digest != img.Digest {
				a.tagsOf[img.Repository+"@"+p.Digest] = append(a.tagsOf[img.Repository+"@"+p.Digest], img.Tag)
			}
		}
		if m := cosignTag.FindStringSubmatch(img.Tag); m != nil {
			var at attachment
			switch m[3] {
			case "sig":
				at.signed = true
			case "sbom":
				at.sbom = true
			case "att":
				for _, p := range img.Platforms {
					if p.Manifest != nil && sbomPredicate(layerAnnotations(p.Manifest)...) {
						at.sbom = true
					}
				}
			}
			a.attach(img.Repository, m[1]+":"+m[2], at)
			continue
		}
		if m := fallbackTag.FindStringSubmatch(img.Tag); m != nil {
			var at attachment
			for _, p := range img.Platforms {
				if p.Manifest != nil {
					at = at.or(classify(artifactTypeOf(p.Manifest), layerAnnotations(p.Manifest)...))
				}
			}
			a.attach(img.Repository, m[1]+":"+m[2], at)
		}
	}
}

func (a *analyzer) attach(repo, digest string, at attachment) {
	k := repo + "@" + digest
	a.attached[k] = a.attached[k].or(at)
}

// artifactTypeOf is a manifest's artifactType, or its config's media type
// when it has none (OCI image spec 1.1).
func artifactTypeOf(m *v1.Manifest) string {
	if m.ArtifactType != "" {
		return m.ArtifactType
	}
	return string(m.Config.MediaType)
}

// layerAnnotations are the annotations of a manifest and of its layers.
func layerAnnotations(m *v1.Manifest) []map[string]string {
	out := []map[string]string{m.Annotations}
	for _, l := range m.Layers {
		out = append(out, l.Annotations)
	}
	return out
}

// imageTime is the date an image's age is counted from, and where it came
// from: its config's created time, else the newest dated history entry;
// zero when neither is an age.
func imageTime(cf *v1.ConfigFile, now time.Time) (time.Time, string) {
	if c := cf.Created.Time; validTime(c, now) {
		return c, FromConfig
	}
	if t := historyNewest(cf, now); !t.IsZero() {
		return t, FromHistory
	}
	return time.Time{}, ""
}

// imageRules applies the rules on the image itself, filling the fields of
// out they report on, and returns their reasons.
func (a *analyzer) imageRules(ctx context.Context, img *inventory.Image, p *inventory.Platform, out *Image) []string {
	pol := a.opts.Policy
	var reasons []string

	t, from := imageTime(p.Config, a.now)
	if !t.IsZero() {
		out.Created, out.CreatedFrom, out.ImageAgeDays = t.UTC().Format(time.RFC3339), from, a.days(t)
	}
	if pol.MaxImageAge > 0 {
		switch {
		case out.ImageAgeDays == nil:
			reasons = append(reasons, ReasonUndated)
		case time.Duration(*out.ImageAgeDays)*24*time.Hour > pol.MaxImageAge:
			reasons = append(reasons, ReasonImageTooOld)
		}
	}

	if pol.TagLatestOnly && img.Tag == "latest" && !a.otherTag(img, p) {
		reasons = append(reasons, ReasonLatestOnly)
	}

	for _, k := range pol.RequireLabels {
		if p.Config.Config.Labels[k] == "" {
			out.MissingLabels = append(out.MissingLabels, k)
		}
	}
	if len(out.MissingLabels) > 0 {
		reasons = append(reasons, ReasonMissingLabel)
	}

	if pol.RequireSignature || pol.RequireSBOM {
		at := a.attachments(ctx, img.Repository, img.Digest, p.Digest)
		out.Signed, out.SBOM = &at.signed, &at.sbom
		if pol.RequireSignature && !at.signed {
			reasons = append(reasons, ReasonUnsigned)
		}
		if pol.RequireSBOM && !at.sbom {
			reasons = append(reasons, ReasonNoSBOM)
		}
	}
	return reasons
}

// otherTag reports whether a tag other than "latest" of the image's
// repository names the image's manifest or its platform manifest.
func (a *analyzer) otherTag(img *inventory.Image, p *inventory.Platform) bool {
	for _, d := range []string{img.Digest, p.Digest} {
		for _, t := range a.tagsOf[img.Repository+"@"+d] {
			if t != "latest" {
				return true
			}
		}
	}
	return false
}

// attachments is what is attached to the manifests digests of repo: what
// the inventory's cosign-style and fallback tags say, and, when the
// registry has a referrers API, what it lists.
func (a *analyzer) attachments(ctx context.Context, repo string, digests ...string) attachment {
	var at attachment
	for _, d := range slices.Compact(slices.Clone(digests)) {
		at = at.or(a.attached[repo+"@"+d])
		if at.signed && at.sbom {
			return at
		}
		at = at.or(a.referrers(ctx, repo, d))
	}
	return at
}

// referrers asks the registry's referrers API, once per manifest, until the
// registry shows it has none.
func (a *analyzer) referrers(ctx context.Context, repo, digest string) attachment {
	rf, ok := a.fetch.(ReferrersFetcher)
	if !ok || a.noReferrersAPI {
		return attachment{}
	}
	k := repo + "@" + digest
	if at, ok := a.asked[k]; ok {
		return at
	}
	descs, supported, err := rf.Referrers(ctx, repo, digest)
	if err != nil {
		a.log.Info("listing referrers", "repository", repo, "digest", digest, "error", err)
		return attachment{}
	}
	if !supported {
		a.noReferrersAPI = true
		a.log.Debug("the registry has no referrers API; signatures and SBOMs are found by their tags only")
		return attachment{}
	}
	var at attachment
	for _, d := range descs {
		t := d.ArtifactType
		if t == "" {
			t = string(d.MediaType)
		}
		at = at.or(classify(t, d.Annotations))
	}
	a.asked[k] = at
	return at
}
