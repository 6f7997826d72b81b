package estate

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Media types of the artifacts the estate holds.
const (
	MediaTypeCosignSimpleSigning types.MediaType = "application/vnd.dev.cosign.simplesigning.v1+json"
	MediaTypeEmpty               types.MediaType = "application/vnd.oci.empty.v1+json"
	ArtifactTypeSPDX                             = "application/spdx+json"
	ArtifactTypeInToto                           = "application/vnd.in-toto+json"
)

const kib = 1024

func (s *seeder) seed(now time.Time) error {
	ago := func(d int) time.Time { return now.Add(-days(d)) }
	img := func(spec ImageSpec) v1.Image {
		i, err := BuildImage(spec)
		if err != nil {
			panic(err) // only for programming errors in the fixed specs below
		}
		return i
	}

	// base/debian:12, rebuilt three times under one tag.
	var debian []v1.Image
	var debianM []Manifest
	for i, age := range []int{400, 200, 10} {
		d := img(ImageSpec{Platform: amd64, Created: ago(age),
			Layers: []LayerSpec{{fmt.Sprintf("debian-12-rootfs-r%d", i+1), 96 * kib}},
			Labels: map[string]string{"org.opencontainers.image.version": fmt.Sprintf("12.%d", i+5)}})
		m, err := s.pushImage("base/debian", "12", d, i == 2)
		if err != nil {
			return err
		}
		debian, debianM = append(debian, d), append(debianM, m)
	}

	// base/centos:7, Docker schema 2, old: the banned base.
	centos := img(ImageSpec{Docker: true, Platform: amd64, Created: ago(900),
		Layers: []LayerSpec{{"centos-7-rootfs", 80 * kib}}})
	centosM, err := s.pushImage("base/centos", "7", centos, true)
	if err != nil {
		return err
	}

	// base/alpine:3.20, a multi-arch index replaced under its tag.
	var alpine [2][2]v1.Image // [build][amd64, arm64]
	var alpineIdx [2]Manifest
	for b, age := range []int{300, 5} {
		for p, plat := range []v1.Platform{amd64, arm64} {
			alpine[b][p] = img(ImageSpec{Platform: plat, Created: ago(age),
				Layers: []LayerSpec{{fmt.Sprintf("alpine-3.20-%s-r%d", plat.Architecture, b+1), 32 * kib}}})
		}
		idx, err := Index(alpine[b][0], alpine[b][1])
		if err != nil {
			return err
		}
		if alpineIdx[b], err = s.pushIndex("base/alpine", "3.20", idx, b == 1); err != nil {
			return err
		}
	}

	// team-a/api: 1.0 and latest rebuilt nightly on each debian, found by
	// layers; each build signed; each build with a tagless SBOM.
	for i, d := range debian {
		current := i == 2
		created := ago([]int{300, 100, 2}[i])
		api := img(ImageSpec{Base: d, Created: created,
			Layers: []LayerSpec{{fmt.Sprintf("team-a-api-bin-b%d", i+1), 24 * kib}},
			Labels: map[string]string{"org.opencontainers.image.source": "https://git.example.com/team-a/api", "team": "a"}})
		m, err := s.pushImage("team-a/api", "1.0", api, current)
		if err != nil {
			return err
		}
		if err := s.tag("team-a/api", "latest", m); err != nil {
			return err
		}
		s.build(m, "1.0", debianM[i], d, current, false, created)
		s.build(m, "latest", debianM[i], d, current, false, created)
		// A cosign signature stays tagged after its subject is replaced:
		// live, and an orphan once gc removes the subject.
		if _, err := s.pushSignature("team-a/api", m.Digest); err != nil {
			return err
		}
		if _, err := s.pushReferrer("team-a/api", m, ArtifactTypeSPDX, fmt.Sprintf("sbom-team-a-api-b%d", i+1), false, current); err != nil {
			return err
		}
		if current {
			if _, err := s.pushReferrer("team-a/api", m, ArtifactTypeInToto, "provenance-team-a-api-b3", true, true); err != nil {
				return err
			}
		}
	}

	// team-b/web:prod on the oldest debian, named by annotations; replaced
	// once by a rebuild on the same (now untagged) base.
	for i, age := range []int{380, 350} {
		created := ago(age)
		web := img(ImageSpec{Base: debian[0], Created: created,
			Layers:      []LayerSpec{{fmt.Sprintf("team-b-web-static-b%d", i+1), 40 * kib}},
			Annotations: map[string]string{AnnotationBaseName: "base/debian:12", AnnotationBaseDigest: debianM[0].Digest.String()}})
		m, err := s.pushImage("team-b/web", "prod", web, i == 1)
		if err != nil {
			return err
		}
		s.build(m, "prod", debianM[0], debian[0], false, true, created)
	}

	// team-c/worker:2.3 on the banned centos, Docker media types.
	workerCreated := ago(60)
	worker := img(ImageSpec{Base: centos, Docker: true, Created: workerCreated,
		Layers: []LayerSpec{{"team-c-worker-bin", 16 * kib}}})
	wm, err := s.pushImage("team-c/worker", "2.3", worker, true)
	if err != nil {
		return err
	}
	s.build(wm, "2.3", centosM, centos, true, false, workerCreated)

	// team-d/tool:1.0 FROM scratch.
	toolCreated := ago(20)
	tool := img(ImageSpec{Platform: amd64, Created: toolCreated,
		Layers: []LayerSpec{{"team-d-tool-static-binary", 20 * kib}}})
	tm, err := s.pushImage("team-d/tool", "1.0", tool, true)
	if err != nil {
		return err
	}
	s.e.Builds = append(s.e.Builds, Build{Repository: "team-d/tool", Tag: "1.0", Platform: tm.Platform, Digest: tm.Digest, Created: toolCreated})

	// team-d/repro:1.0, a reproducible build on the current debian.
	epoch := time.Unix(0, 0).UTC()
	repro := img(ImageSpec{Base: debian[2], Created: epoch,
		Layers: []LayerSpec{{"team-d-repro-bin", 12 * kib}}})
	rm, err := s.pushImage("team-d/repro", "1.0", repro, true)
	if err != nil {
		return err
	}
	s.build(rm, "1.0", debianM[2], debian[2], true, false, epoch)

	// team-e/edge:1.0: amd64 on the current alpine, arm64 on the old one.
	edgeCreated := ago(4)
	edgeAMD := img(ImageSpec{Base: alpine[1][0], Created: edgeCreated, Layers: []LayerSpec{{"team-e-edge-amd64", 16 * kib}}})
	edgeARM := img(ImageSpec{Base: alpine[0][1], Created: edgeCreated, Layers: []LayerSpec{{"team-e-edge-arm64", 16 * kib}}})
	edgeIdx, err := Index(edgeAMD, edgeARM)
	if err != nil {
		return err
	}
	if _, err := s.pushIndex("team-e/edge", "1.0", edgeIdx, true); err != nil {
		return err
	}
	for _, pair := range []struct {
		img, base v1.Image
		current   bool
	}{{edgeAMD, alpine[1][0], true}, {edgeARM, alpine[0][1], false}} {
		m, err := imageFacts("team-e/edge", pair.img)
		if err != nil {
			return err
		}
		m.Live = true
		bm, err := imageFacts("base/alpine", pair.base)
		if err != nil {
			return err
		}
		s.build(m, "1.0", bm, pair.base, pair.current, false, edgeCreated)
	}

	// mirror/alpine:3.20: the current alpine index alone, children absent.
	curIdx, err := Index(alpine[1][0], alpine[1][1])
	if err != nil {
		return err
	}
	raw, err := curIdx.RawManifest()
	if err != nil {
		return err
	}
	if err := s.putManifest("mirror/alpine", "3.20", raw, types.OCIImageIndex); err != nil {
		return err
	}
	if _, err := s.recordIndex("mirror/alpine", "3.20", curIdx, true); err != nil {
		return err
	}
	_ = alpineIdx
	return nil
}

// build records what an application image was built on.
func (s *seeder) build(m Manifest, tag string, base Manifest, baseImg v1.Image, baseCurrent, annotated bool, created time.Time) {
	cf, _ := baseImg.ConfigFile()
	var bc time.Time
	if cf != nil {
		bc = cf.Created.Time
	}
	if !m.Live {
		return // only what a tag points at is audited
	}
	s.e.Builds = append(s.e.Builds, Build{Repository: m.Repository, Tag: tag, Platform: m.Platform, Digest: m.Digest,
		BaseRepository: base.Repository, BaseTag: firstTag(base.Repository), BaseDigest: base.Digest, BaseCreated: bc,
		BaseCurrent: baseCurrent, Annotated: annotated, Created: created})
}

func firstTag(repo string) string {
	switch repo {
	case "base/debian":
		return "12"
	case "base/centos":
		return "7"
	case "base/alpine":
		return "3.20"
	}
	return ""
}

// tag points another tag at an existing manifest.
func (s *seeder) tag(repo, tag string, m Manifest) error {
	desc, err := remote.Get(s.repo(repo).Digest(m.Digest.String()), s.opts...)
	if err != nil {
		return err
	}
	if err := remote.Tag(s.repo(repo).Tag(tag), desc, s.opts...); err != nil {
		return fmt.Errorf("tagging %s:%s: %w", repo, tag, err)
	}
	m.Tags = []string{tag}
	s.record(m)
	return nil
}

// pushSignature pushes a cosign-style signature of subject under the tag
// sha256-<hex>.sig.
func (s *seeder) pushSignature(repo string, subject v1.Hash) (Manifest, error) {
	payload, _ := json.Marshal(map[string]any{
		"critical": map[string]any{
			"identity": map[string]string{"docker-reference": repo},
			"image":    map[string]string{"docker-manifest-digest": subject.String()},
			"type":     "cosign container image signature",
		},
		"optional": nil,
	})
	layer := static.NewLayer(payload, MediaTypeCosignSimpleSigning)
	tag := fmt.Sprintf("%s-%s.sig", subject.Algorithm, subject.Hex)
	ld, _ := layer.Digest()
	cfg := []byte(`{"architecture":"","os":"","config":{},"rootfs":{"type":"layers","diff_ids":["` + ld.String() + `"]}}`)
	m, err := s.pushArtifact(repo, tag, types.OCIManifestSchema1, types.OCIConfigJSON, cfg, "", layer, nil,
		map[string]string{"dev.cosignproject.cosign/signature": "MEUCIQD-regkeeper-estate-signature"})
	if err != nil {
		return m, err
	}
	return m, nil
}

// pushReferrer pushes an artifact whose subject is m. With fallbackTag, ggcr
// maintains the referrers fallback tag (sha256-<hex>) as a registry without
// the referrers API needs; without it the artifact is pushed by digest only.
func (s *seeder) pushReferrer(repo string, subject Manifest, artifactType, seed string, fallbackTag, live bool) (Manifest, error) {
	body := []byte(fmt.Sprintf(`{"spdxVersion":"SPDX-2.3","name":%q,"subject":%q}`, seed, subject.Digest))
	layer := static.NewLayer(body, types.MediaType(artifactType))
	sub := &v1.Descriptor{MediaType: subject.MediaType, Digest: subject.Digest, Size: subject.Size}
	m, err := s.artifact(repo, types.OCIManifestSchema1, MediaTypeEmpty, []byte("{}"), artifactType, layer, sub,
		map[string]string{"org.opencontainers.image.created": "2026-01-01T00:00:00Z"})
	if err != nil {
		return m.Manifest, err
	}
	m.Role, m.Live, m.Subject = RoleReferrer, live, &subject.Digest
	if fallbackTag {
		if err := remote.Put(s.repo(repo).Digest(m.Digest.String()), rawTaggable{m.raw, m.MediaType}, s.opts...); err != nil {
			return m.Manifest, fmt.Errorf("pushing referrer of %s: %w", subject.Digest, err)
		}
		s.record(m.Manifest)
		fb := fmt.Sprintf("%s-%s", subject.Digest.Algorithm, subject.Digest.Hex)
		desc, err := remote.Get(s.repo(repo).Tag(fb), s.opts...)
		if err != nil {
			return m.Manifest, fmt.Errorf("reading fallback tag %s: %w", fb, err)
		}
		s.record(Manifest{Repository: repo, Digest: desc.Digest, MediaType: desc.MediaType, Role: RoleFallback,
			Tags: []string{fb}, Live: true, Size: desc.Size, Children: []v1.Hash{m.Digest}})
		return m.Manifest, nil
	}
	if err := s.putManifest(repo, m.Digest.String(), m.raw, m.MediaType); err != nil {
		return m.Manifest, err
	}
	s.record(m.Manifest)
	return m.Manifest, nil
}

// pushArtifact pushes a one-layer artifact under tag and records it live.
func (s *seeder) pushArtifact(repo, tag string, mt, cfgMT types.MediaType, cfg []byte, artifactType string, layer v1.Layer, subject *v1.Descriptor, ann map[string]string) (Manifest, error) {
	m, err := s.artifact(repo, mt, cfgMT, cfg, artifactType, layer, subject, ann)
	if err != nil {
		return m.Manifest, err
	}
	if err := s.putManifest(repo, tag, m.raw, mt); err != nil {
		return m.Manifest, err
	}
	m.Tags, m.Live, m.Role = []string{tag}, true, RoleSignature
	s.record(m.Manifest)
	return m.Manifest, nil
}

type rawManifest struct {
	Manifest
	raw []byte
}

// artifact uploads the blobs of a one-layer artifact and returns its
// manifest, not yet pushed.
func (s *seeder) artifact(repo string, mt, cfgMT types.MediaType, cfg []byte, artifactType string, layer v1.Layer, subject *v1.Descriptor, ann map[string]string) (rawManifest, error) {
	cfgLayer := static.NewLayer(cfg, cfgMT)
	for _, l := range []v1.Layer{cfgLayer, layer} {
		if err := remote.WriteLayer(s.repo(repo), l, s.opts...); err != nil {
			return rawManifest{}, fmt.Errorf("uploading artifact blob to %s: %w", repo, err)
		}
	}
	desc := func(l v1.Layer) v1.Descriptor {
		d, _ := l.Digest()
		n, _ := l.Size()
		m, _ := l.MediaType()
		return v1.Descriptor{MediaType: m, Digest: d, Size: n}
	}
	man := v1.Manifest{SchemaVersion: 2, MediaType: mt, ArtifactType: artifactType, Config: desc(cfgLayer),
		Layers: []v1.Descriptor{desc(layer)}, Subject: subject, Annotations: ann}
	raw, err := json.Marshal(man)
	if err != nil {
		return rawManifest{}, err
	}
	d, n, _ := v1.SHA256(bytes.NewReader(raw))
	return rawManifest{Manifest: Manifest{Repository: repo, Digest: d, MediaType: mt, Size: n,
		Blobs: []v1.Hash{man.Config.Digest, man.Layers[0].Digest}}, raw: raw}, nil
}

type rawTaggable struct {
	raw []byte
	mt  types.MediaType
}

func (r rawTaggable) RawManifest() ([]byte, error)        { return r.raw, nil }
func (r rawTaggable) MediaType() (types.MediaType, error) { return r.mt, nil }

// putManifest PUTs a manifest as it is, by tag or digest, without the
// referrers bookkeeping ggcr does for manifests with a subject.
func (s *seeder) putManifest(repo, ref string, raw []byte, mt types.MediaType) error {
	r := s.repo(repo)
	u := fmt.Sprintf("%s://%s/v2/%s/manifests/%s", r.Scheme(), r.RegistryStr(), r.RepositoryStr(), ref)
	req, err := http.NewRequestWithContext(s.ctx, http.MethodPut, u, bytes.NewReader(raw))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", string(mt))
	client, err := s.client(repo)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("putting manifest %s:%s: %w", repo, ref, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("putting manifest %s:%s: %s: %s", repo, ref, resp.Status, strings.TrimSpace(string(b)))
	}
	return nil
}
