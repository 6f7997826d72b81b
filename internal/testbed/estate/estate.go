// Package estate seeds a registry, through its HTTP API, with a small but
// realistic fleet of images, and returns the facts a test needs to state
// exactly what must be found: every manifest pushed, which tags point where,
// which manifests and blobs are live and which are dead, and what each
// application was built on.
//
// The fleet (dates relative to Options.Now, default 2026-11-01):
//
//	base/debian:12      rebuilt three times under one tag (400d, 200d, 10d ago)
//	base/centos:7       Docker schema 2, 900 days old: the banned base
//	base/alpine:3.20    multi-arch index (amd64, arm64) replaced under its tag
//	team-a/api          1.0 and latest rebuilt nightly on each debian; a cosign
//	                    .sig tag per build; a tagless SBOM referrer per build;
//	                    an attestation behind the referrers fallback tag
//	team-b/web:prod     built on the oldest debian, named by base annotations
//	                    (that base is untagged since), replaced once
//	team-c/worker:2.3   built on centos:7, found only by layers
//	team-d/tool:1.0     FROM scratch
//	team-d/repro:1.0    reproducible build (created 1970-01-01) on current debian
//	team-e/edge:1.0     multi-arch: amd64 on current alpine, arm64 on the old one
//	mirror/alpine:3.20  an index-only copy of base/alpine:3.20 (no children, no
//	                    _layers directory)
package estate

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// DefaultNow is the reference date of the estate when Options.Now is zero.
var DefaultNow = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)

// Annotation keys of the OCI image spec naming an image's base.
const (
	AnnotationBaseName   = "org.opencontainers.image.base.name"
	AnnotationBaseDigest = "org.opencontainers.image.base.digest"
)

// Roles of manifests in the estate.
const (
	RoleImage     = "image"     // a platform image manifest
	RoleIndex     = "index"     // an image index
	RoleSignature = "signature" // a cosign-style signature behind a sha256-<hex>.sig tag
	RoleReferrer  = "referrer"  // an artifact with a subject
	RoleFallback  = "fallback"  // a referrers fallback-tag index (sha256-<hex>)
)

// Manifest is one manifest pushed to one repository.
type Manifest struct {
	Repository string
	Digest     v1.Hash
	MediaType  types.MediaType
	Role       string
	// Tags point at this manifest at the end of seeding.
	Tags []string
	// Live: reachable from a tag (directly, as the child of a live index, or
	// as a referrer of a live subject). Dead manifests are what tag
	// replacement left behind.
	Live bool
	// Platform, for image manifests: "linux/amd64".
	Platform string
	// Blobs are the config and layers of an image (none for an index).
	Blobs []v1.Hash
	// Children of an index.
	Children []v1.Hash
	// Subject of a referrer.
	Subject *v1.Hash
	// Size of the manifest in bytes.
	Size int64
}

// Build is what one application image (one platform) was built on, for the
// audit tests.
type Build struct {
	Repository, Tag, Platform string
	// Digest is the platform manifest.
	Digest v1.Hash
	// BaseRepository and BaseTag name the base; empty for FROM scratch.
	BaseRepository, BaseTag string
	// BaseDigest is the platform manifest of the base.
	BaseDigest  v1.Hash
	BaseCreated time.Time
	// BaseCurrent: the base's tag still points at that base.
	BaseCurrent bool
	// Annotated: the image names its base by annotation.
	Annotated bool
	Created   time.Time
}

// Estate is a seeded registry's facts.
type Estate struct {
	Registry  string
	Now       time.Time
	Manifests []Manifest
	Builds    []Build
}

// Options for Seed.
type Options struct {
	// Now is the reference date; zero means DefaultNow.
	Now time.Time
	// Auth for pushing; nil means anonymous.
	Auth authn.Authenticator
	// Transport for pushing; nil means remote.DefaultTransport.
	Transport http.RoundTripper
	// Insecure: the registry speaks plain HTTP.
	Insecure bool
}

// Repositories returns the repositories of the estate, sorted.
func (e *Estate) Repositories() []string {
	seen := map[string]bool{}
	for _, m := range e.Manifests {
		seen[m.Repository] = true
	}
	return sortedKeys(seen)
}

// Tags maps "repo:tag" to the digest it points at.
func (e *Estate) Tags() map[string]v1.Hash {
	out := map[string]v1.Hash{}
	for _, m := range e.Manifests {
		for _, t := range m.Tags {
			out[m.Repository+":"+t] = m.Digest
		}
	}
	return out
}

// AbsentChildren are the children of the index d in repo that the estate
// never pushed to repo (mirror/alpine:3.20, an index-only copy): absent by
// design, which a pull must not count as a loss.
func (e *Estate) AbsentChildren(repo string, d v1.Hash) []v1.Hash {
	m, ok := e.Find(repo, d)
	if !ok {
		return nil
	}
	var out []v1.Hash
	for _, c := range m.Children {
		if _, ok := e.Find(repo, c); !ok {
			out = append(out, c)
		}
	}
	return out
}

// Find returns the manifest of repo with digest d.
func (e *Estate) Find(repo string, d v1.Hash) (Manifest, bool) {
	for _, m := range e.Manifests {
		if m.Repository == repo && m.Digest == d {
			return m, true
		}
	}
	return Manifest{}, false
}

// ManifestsByLiveness returns repository -> digests of live (or dead)
// manifests.
func (e *Estate) ManifestsByLiveness(live bool) map[string][]v1.Hash {
	out := map[string][]v1.Hash{}
	for _, m := range e.Manifests {
		if m.Live == live {
			out[m.Repository] = append(out[m.Repository], m.Digest)
		}
	}
	return out
}

// LiveBlobs is every blob a live manifest needs: the live manifests
// themselves and their configs and layers.
func (e *Estate) LiveBlobs() map[v1.Hash]bool {
	live := map[v1.Hash]bool{}
	for _, m := range e.Manifests {
		if m.Live {
			live[m.Digest] = true
			for _, b := range m.Blobs {
				live[b] = true
			}
		}
	}
	return live
}

// DeadBlobs is every blob pushed that no live manifest needs.
func (e *Estate) DeadBlobs() map[v1.Hash]bool {
	live := e.LiveBlobs()
	dead := map[v1.Hash]bool{}
	for _, m := range e.Manifests {
		for _, b := range append([]v1.Hash{m.Digest}, m.Blobs...) {
			if !live[b] {
				dead[b] = true
			}
		}
	}
	return dead
}

// seeder pushes and records.
type seeder struct {
	ctx  context.Context
	reg  name.Registry
	auth authn.Authenticator
	rt   http.RoundTripper
	opts []remote.Option
	e    *Estate
}

// client returns an HTTP client authorised to push to repo.
func (s *seeder) client(repo string) (*http.Client, error) {
	r := s.repo(repo)
	t, err := transport.NewWithContext(s.ctx, s.reg, s.auth, s.rt, []string{r.Scope(transport.PushScope)})
	if err != nil {
		return nil, err
	}
	return &http.Client{Transport: t}, nil
}

func (s *seeder) repo(r string) name.Repository { return s.reg.Repo(r) }

// record adds a manifest, moving tag from whatever held it before.
func (s *seeder) record(m Manifest) {
	for _, t := range m.Tags {
		for i := range s.e.Manifests {
			old := &s.e.Manifests[i]
			if old.Repository != m.Repository {
				continue
			}
			old.Tags = remove(old.Tags, t)
		}
	}
	for i := range s.e.Manifests {
		if s.e.Manifests[i].Repository == m.Repository && s.e.Manifests[i].Digest == m.Digest {
			s.e.Manifests[i].Tags = append(s.e.Manifests[i].Tags, m.Tags...)
			return
		}
	}
	s.e.Manifests = append(s.e.Manifests, m)
}

func remove(ss []string, s string) []string {
	out := ss[:0]
	for _, x := range ss {
		if x != s {
			out = append(out, x)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// imageFacts describes an image for the record.
func imageFacts(repo string, img v1.Image) (Manifest, error) {
	d, err := img.Digest()
	if err != nil {
		return Manifest{}, err
	}
	mt, err := img.MediaType()
	if err != nil {
		return Manifest{}, err
	}
	m, err := img.Manifest()
	if err != nil {
		return Manifest{}, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return Manifest{}, err
	}
	size, err := img.Size()
	if err != nil {
		return Manifest{}, err
	}
	out := Manifest{Repository: repo, Digest: d, MediaType: mt, Role: RoleImage, Size: size,
		Platform: cf.OS + "/" + cf.Architecture, Blobs: []v1.Hash{m.Config.Digest}}
	for _, l := range m.Layers {
		out.Blobs = append(out.Blobs, l.Digest)
	}
	return out, nil
}

// pushImage pushes img to repo under tag ("" pushes by digest).
func (s *seeder) pushImage(repo, tag string, img v1.Image, live bool) (Manifest, error) {
	m, err := imageFacts(repo, img)
	if err != nil {
		return m, err
	}
	var ref name.Reference = s.repo(repo).Digest(m.Digest.String())
	if tag != "" {
		ref = s.repo(repo).Tag(tag)
		m.Tags = []string{tag}
	}
	if err := remote.Write(ref, img, s.opts...); err != nil {
		return m, fmt.Errorf("pushing %s: %w", ref, err)
	}
	m.Live = live
	s.record(m)
	return m, nil
}

// pushIndex pushes an index and its children to repo under tag.
func (s *seeder) pushIndex(repo, tag string, idx v1.ImageIndex, live bool) (Manifest, error) {
	if err := remote.WriteIndex(s.repo(repo).Tag(tag), idx, s.opts...); err != nil {
		return Manifest{}, fmt.Errorf("pushing %s:%s: %w", repo, tag, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return Manifest{}, err
	}
	for _, desc := range im.Manifests {
		img, err := idx.Image(desc.Digest)
		if err != nil {
			return Manifest{}, err
		}
		cm, err := imageFacts(repo, img)
		if err != nil {
			return Manifest{}, err
		}
		cm.Live = live
		s.record(cm)
	}
	return s.recordIndex(repo, tag, idx, live)
}

func (s *seeder) recordIndex(repo, tag string, idx v1.ImageIndex, live bool) (Manifest, error) {
	d, err := idx.Digest()
	if err != nil {
		return Manifest{}, err
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return Manifest{}, err
	}
	size, err := idx.Size()
	if err != nil {
		return Manifest{}, err
	}
	m := Manifest{Repository: repo, Digest: d, MediaType: im.MediaType, Role: RoleIndex, Tags: []string{tag}, Live: live, Size: size}
	for _, desc := range im.Manifests {
		m.Children = append(m.Children, desc.Digest)
	}
	s.record(m)
	return m, nil
}

// Seed pushes the estate to the registry at host and returns its facts.
func Seed(ctx context.Context, host string, opts Options) (*Estate, error) {
	var nopts []name.Option
	if opts.Insecure {
		nopts = append(nopts, name.Insecure)
	}
	reg, err := name.NewRegistry(host, nopts...)
	if err != nil {
		return nil, err
	}
	now := opts.Now
	if now.IsZero() {
		now = DefaultNow
	}
	if opts.Auth == nil {
		opts.Auth = authn.Anonymous
	}
	if opts.Transport == nil {
		opts.Transport = remote.DefaultTransport
	}
	s := &seeder{ctx: ctx, reg: reg, auth: opts.Auth, rt: opts.Transport,
		opts: []remote.Option{remote.WithContext(ctx), remote.WithAuth(opts.Auth), remote.WithTransport(opts.Transport)},
		e:    &Estate{Registry: reg.RegistryStr(), Now: now}}
	if err := s.seed(now); err != nil {
		return nil, err
	}
	sort.SliceStable(s.e.Manifests, func(i, j int) bool { return s.e.Manifests[i].Repository < s.e.Manifests[j].Repository })
	return s.e, nil
}

func days(n int) time.Duration { return time.Duration(n) * 24 * time.Hour }

var (
	amd64 = v1.Platform{OS: "linux", Architecture: "amd64"}
	arm64 = v1.Platform{OS: "linux", Architecture: "arm64"}
)

func sortedKeys[K ~string, V any](m map[K]V) []K {
	out := make([]K, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}
