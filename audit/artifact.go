package audit

import (
	"fmt"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/regkeeper/regkeeper/inventory"
)

// What audit does not judge, by kind (NotJudged.Kind). Images are told from
// artifacts by what they are, not by a field an image may leave empty (an
// image made by `crane append` without a base has no os): a manifest is an
// image when its config is an image config and every layer a filesystem
// layer, and it follows no artifact convention (a cosign tag, an
// artifactType).
const (
	KindSignature   = "signature"   // cosign .sig tags, cosign/sigstore/Notation signature types
	KindSBOM        = "sbom"        // cosign .sbom tags, SPDX, CycloneDX, Syft
	KindAttestation = "attestation" // cosign .att tags, in-toto and DSSE
	KindHelmChart   = "helm-chart"  // application/vnd.cncf.helm.*
	KindArtifact    = "artifact"    // any other artifact type, a nested index
	// KindUnreadable: a platform manifest or config that is absent or
	// does not parse (listed under problems too).
	KindUnreadable = "unreadable"
)

// NotJudgedKinds lists every kind of NotJudged, in the order of
// NotJudgedSummary.
var NotJudgedKinds = []string{KindSignature, KindSBOM, KindAttestation, KindHelmChart, KindArtifact, KindUnreadable}

// kindOrder is the order and the nouns of NotJudgedSummary.
var kindOrder = []struct{ kind, one, many string }{
	{KindSignature, "signature", "signatures"},
	{KindSBOM, "SBOM", "SBOMs"},
	{KindAttestation, "attestation", "attestations"},
	{KindHelmChart, "Helm chart", "Helm charts"},
	{KindArtifact, "other artifact", "other artifacts"},
	{KindUnreadable, "unreadable manifest", "unreadable manifests"},
}

// NotJudged is a tag (and platform) of the selection that audit did not
// judge, and why: it is not an image. Its JSON field names are a contract.
type NotJudged struct {
	Repository string `json:"repository"`
	Tag        string `json:"tag"`
	// Digest is the manifest's (the platform manifest's, under an index).
	Digest   string `json:"digest"`
	Platform string `json:"platform,omitempty"`
	Kind     string `json:"kind"`
}

// helmTypes are the config and layer media types of Helm charts.
var helmTypes = []string{"application/vnd.cncf.helm."}

// kindOfType says what an artifact of this media type is.
func kindOfType(t string) string {
	switch {
	case hasTypePrefix(t, signatureTypes):
		return KindSignature
	case hasTypePrefix(t, sbomTypes), hasTypePrefix(t, []string{"text/spdx", "application/spdx", "text/cyclonedx"}):
		return KindSBOM
	case hasTypePrefix(t, attestationTypes):
		return KindAttestation
	case hasTypePrefix(t, helmTypes):
		return KindHelmChart
	}
	return KindArtifact
}

// KindOf says what the platform manifest p of a tag is: "" for an image
// that audit judges, else the Kind* of what it does not judge.
func KindOf(tag string, p *inventory.Platform) string { return kindOf(tag, p, nil) }

// kindOf says what a platform manifest of a tag is: "" for an image, else
// the kind of what is not judged. unreadable holds the digests the walk
// reported as problems.
func kindOf(tag string, p *inventory.Platform, unreadable map[string]bool) string {
	if m := cosignTag.FindStringSubmatch(tag); m != nil {
		switch m[3] {
		case "sig":
			return KindSignature
		case "sbom":
			return KindSBOM
		}
		return KindAttestation
	}
	if p.Absent || unreadable[p.Digest] {
		return KindUnreadable
	}
	m := p.Manifest
	if m == nil {
		return KindArtifact // a nested index, or a manifest regkeeper does not read
	}
	if m.ArtifactType != "" {
		return kindOfType(m.ArtifactType)
	}
	// The walk reads a config only when its media type is an image
	// config's.
	if mt := m.Config.MediaType; mt != types.DockerConfigJSON && mt != types.OCIConfigJSON && !(mt == "" && p.Config != nil) {
		if k := kindOfType(string(mt)); k != KindArtifact {
			return k
		}
		return kindOfLayers(m.Layers)
	}
	for _, l := range m.Layers {
		if !isLayer(l.MediaType) {
			return kindOfLayers(m.Layers)
		}
	}
	if p.Config == nil {
		return KindUnreadable
	}
	return ""
}

// isLayer reports whether a media type is a filesystem layer's: the types
// go-containerregistry knows, and any other OCI or Docker layer type
// (encrypted, a compression it does not know).
func isLayer(mt types.MediaType) bool {
	return mt.IsLayer() || strings.HasPrefix(string(mt), "application/vnd.oci.image.layer.") ||
		strings.HasPrefix(string(mt), "application/vnd.docker.image.rootfs.")
}

// kindOfLayers says what an artifact is by its first layer of a known
// artifact type.
func kindOfLayers(layers []v1.Descriptor) string {
	for _, l := range layers {
		if k := kindOfType(string(l.MediaType)); k != KindArtifact {
			return k
		}
	}
	return KindArtifact
}

// NotJudgedSummary counts what was not judged, by kind: "2 signatures,
// 1 SBOM and 1 Helm chart not judged"; empty when everything was judged.
func (r *Result) NotJudgedSummary() string {
	n := map[string]int{}
	for _, x := range r.NotJudged {
		n[x.Kind]++
	}
	var parts []string
	for _, k := range kindOrder {
		if c := n[k.kind]; c > 0 {
			parts = append(parts, plural(c, k.one, k.many))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return joinAnd(parts) + " not judged"
}

// plural is "1 image", "2 images".
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// joinAnd is "a", "a and b", "a, b and c".
func joinAnd(parts []string) string {
	if len(parts) <= 1 {
		return strings.Join(parts, "")
	}
	return strings.Join(parts[:len(parts)-1], ", ") + " and " + parts[len(parts)-1]
}
