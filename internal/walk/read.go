package walk

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/regkeeper/regkeeper/internal/client"
)

// Kinds of Problem.
const (
	// KindChildrenAbsent: an index names platform manifests its repository
	// does not have (an index-only copy, as `skopeo copy
	// --multi-arch=index-only` makes).
	KindChildrenAbsent = "children-absent"
	// KindManifestMissing: a tag whose manifest the registry does not have.
	KindManifestMissing = "manifest-missing"
	// KindManifestCorrupt: a manifest that does not parse.
	KindManifestCorrupt = "manifest-corrupt"
	// KindConfigMissing: an image config blob the repository does not have.
	KindConfigMissing = "config-missing"
	// KindConfigCorrupt: an image config that does not parse.
	KindConfigCorrupt = "config-corrupt"
	// KindUnknownMediaType: a tag whose manifest regkeeper does not read.
	KindUnknownMediaType = "unknown-media-type"
)

// Problem is something broken in the registry: found, reported, walked
// past. Its JSON field names are a contract (the README).
type Problem struct {
	Repository string `json:"repository"`
	Tag        string `json:"tag,omitempty"`
	Digest     string `json:"digest,omitempty"`
	Kind       string `json:"kind"`
	Message    string `json:"message"`
}

// Where names the repository, and the tag when there is one.
func (p Problem) Where() string { return where(p.Repository, p.Tag) }

// SortProblems sorts problems by repository, tag, then kind.
func SortProblems(ps []Problem) {
	sort.SliceStable(ps, func(i, j int) bool {
		a, b := ps[i], ps[j]
		if a.Repository != b.Repository {
			return a.Repository < b.Repository
		}
		if a.Tag != b.Tag {
			return a.Tag < b.Tag
		}
		return a.Kind < b.Kind
	})
}

// maxConfigSize bounds an image config read into memory.
const maxConfigSize = 32 << 20

// Image is what one tag points at: its manifest and, for every platform
// (each child an index names, or the manifest itself), the platform
// manifest and image config where they could be read.
type Image struct {
	Repository, Tag string
	// Descriptor of the tag's manifest: digest, media type, size.
	Descriptor v1.Descriptor
	// Index is the parsed index when the tag names one.
	Index *v1.IndexManifest
	// Manifest is the parsed manifest when the tag names an image.
	Manifest *v1.Manifest
	// Platforms, in the order the index names them (one for an image).
	Platforms []Platform
}

// Platform is one platform manifest of an image.
type Platform struct {
	// Descriptor as the index names it (for an image, the tag's own).
	Descriptor v1.Descriptor
	// Absent: the index names this manifest but its repository does not
	// have it.
	Absent bool
	// Manifest and Config, when this is an image manifest that could be
	// read (nil for a nested index or an artifact without image config).
	Manifest *v1.Manifest
	Config   *v1.ConfigFile
}

// Read reads the tag of repository repo: its manifest and, per platform,
// the platform manifest and image config. What is broken in the registry
// is returned as problems, with the image as far as it could be read (nil
// when the tag's own manifest is missing or does not parse). The error is
// for what could not be read (the registry did not answer, or answered an
// error other than "not found" after retries).
func (w *Walker) Read(ctx context.Context, repo, tag string) (*Image, []Problem, error) {
	r := w.reg.Repo(repo)
	desc, err := w.puller.Get(ctx, r.Tag(tag))
	if isNotFound(err) {
		return nil, []Problem{{Repository: repo, Tag: tag, Kind: KindManifestMissing,
			Message: "the tag is listed but its manifest is not in the registry: " + client.Describe(err)}}, nil
	}
	if StoredCorrupt(err) {
		return nil, []Problem{{Repository: repo, Tag: tag, Kind: KindManifestCorrupt,
			Message: "the registry cannot parse the manifest it stores for this tag: " + client.Describe(err)}}, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("reading manifest: %w", client.Explain(err))
	}
	img := &Image{Repository: repo, Tag: tag, Descriptor: desc.Descriptor}
	// The tag's manifest stands for its digest too: an image's platform is
	// the manifest itself, not fetched again.
	seed := &once[*remote.Descriptor]{}
	seed.once.Do(func() { seed.v = desc })
	w.manifests.LoadOrStore(repo+"@"+desc.Digest.String(), seed)
	problem := func(kind, digest, format string, a ...any) Problem {
		return Problem{Repository: repo, Tag: tag, Digest: digest, Kind: kind, Message: fmt.Sprintf(format, a...)}
	}
	switch {
	case desc.MediaType.IsIndex():
		im, err := v1.ParseIndexManifest(bytes.NewReader(desc.Manifest))
		if err != nil {
			return nil, []Problem{problem(KindManifestCorrupt, desc.Digest.String(), "index %s does not parse: %v", desc.Digest, err)}, nil
		}
		img.Index = im
		var problems []Problem
		var absent []string
		for _, child := range im.Manifests {
			p, ps, err := w.platform(ctx, r, tag, child)
			if err != nil {
				return img, problems, err
			}
			problems = append(problems, ps...)
			if p.Absent {
				absent = append(absent, fmt.Sprintf("%s (%s)", orUnknown(platformString(child.Platform)), child.Digest))
			}
			img.Platforms = append(img.Platforms, p)
		}
		if len(absent) > 0 {
			problems = append(problems, problem(KindChildrenAbsent, desc.Digest.String(),
				"index names %d of %d platform manifests that are not in %s (an index copied without its children?): %s",
				len(absent), len(im.Manifests), repo, strings.Join(absent, ", ")))
		}
		return img, problems, nil
	case IsImageManifest(desc.MediaType, desc.Manifest):
		p, problems, err := w.platform(ctx, r, tag, desc.Descriptor)
		img.Manifest = p.Manifest
		img.Platforms = append(img.Platforms, p)
		return img, problems, err
	default:
		return img, []Problem{problem(KindUnknownMediaType, desc.Digest.String(), "manifest %s has media type %q, which regkeeper does not read", desc.Digest, desc.MediaType)}, nil
	}
}

// platform reads one platform manifest (by digest, once per repository)
// and its image config (once per registry).
func (w *Walker) platform(ctx context.Context, repo name.Repository, tag string, d v1.Descriptor) (Platform, []Problem, error) {
	p := Platform{Descriptor: d}
	pl := orUnknown(platformString(d.Platform))
	problem := func(kind, digest, format string, a ...any) []Problem {
		return []Problem{{Repository: repo.RepositoryStr(), Tag: tag, Digest: digest, Kind: kind, Message: fmt.Sprintf(format, a...)}}
	}
	md, err := w.Manifest(ctx, repo.RepositoryStr(), d.Digest.String())
	if isNotFound(err) {
		p.Absent = true
		return p, nil, nil // reported once per index by Read
	}
	if StoredCorrupt(err) {
		return p, problem(KindManifestCorrupt, d.Digest.String(), "platform %s: the registry cannot parse manifest %s: %s", pl, d.Digest, client.Describe(err)), nil
	}
	if err != nil {
		return p, nil, fmt.Errorf("platform %s: reading manifest %s: %w", pl, d.Digest, client.Explain(err))
	}
	if !IsImageManifest(md.MediaType, md.Manifest) {
		return p, nil, nil // a nested index or an artifact: counted by its own size
	}
	m, err := v1.ParseManifest(bytes.NewReader(md.Manifest))
	if err != nil {
		return p, problem(KindManifestCorrupt, d.Digest.String(), "platform %s: manifest %s does not parse: %v", pl, d.Digest, err), nil
	}
	p.Manifest = m
	if !isImageConfig(m.Config.MediaType) {
		return p, nil, nil // signatures, SBOMs and other artifacts have no image config
	}
	cf, err := w.Config(ctx, repo.RepositoryStr(), m.Config.Digest)
	var perr parseError
	switch {
	case isNotFound(err):
		return p, problem(KindConfigMissing, d.Digest.String(), "platform %s: config %s is not in the repository", pl, m.Config.Digest), nil
	case errors.As(err, &perr):
		return p, problem(KindConfigCorrupt, d.Digest.String(), "platform %s: config %s does not parse: %v", pl, m.Config.Digest, perr.err), nil
	case err != nil:
		return p, nil, fmt.Errorf("platform %s: reading config %s: %w", pl, m.Config.Digest, client.Explain(err))
	}
	p.Config = cf
	return p, nil, nil
}

type once[T any] struct {
	once sync.Once
	v    T
	err  error
}

// Manifest fetches a manifest of repository repo by digest (or tag), once
// per repository and reference for the walker's life; failures are not
// remembered.
func (w *Walker) Manifest(ctx context.Context, repo, ref string) (*remote.Descriptor, error) {
	r := w.reg.Repo(repo)
	var nref name.Reference = r.Tag(ref)
	if strings.Contains(ref, ":") {
		nref = r.Digest(ref)
	}
	key := repo + "@" + ref
	v, _ := w.manifests.LoadOrStore(key, &once[*remote.Descriptor]{})
	e := v.(*once[*remote.Descriptor])
	e.once.Do(func() { e.v, e.err = w.puller.Get(ctx, nref) })
	if e.err != nil && !isNotFound(e.err) {
		w.manifests.CompareAndDelete(key, e)
	}
	return e.v, e.err
}

// parseError is a blob that was read but does not parse.
type parseError struct{ err error }

func (e parseError) Error() string { return e.err.Error() }

// Config fetches and parses an image config of repository repo, once per
// digest for the walker's life (content-addressed, so shared by every
// repository); a failure is not remembered.
func (w *Walker) Config(ctx context.Context, repo string, dg v1.Hash) (*v1.ConfigFile, error) {
	v, _ := w.configs.LoadOrStore(dg, &once[*v1.ConfigFile]{})
	ce := v.(*once[*v1.ConfigFile])
	ce.once.Do(func() {
		l, err := w.puller.Layer(ctx, w.reg.Repo(repo).Digest(dg.String()))
		if err != nil {
			ce.err = err
			return
		}
		rc, err := l.Compressed() // verified against dg while reading
		if err != nil {
			ce.err = err
			return
		}
		defer rc.Close()
		raw, err := io.ReadAll(io.LimitReader(rc, maxConfigSize))
		if err == nil {
			err = rc.Close()
		}
		if err != nil {
			ce.err = err
			return
		}
		if ce.v, err = v1.ParseConfigFile(bytes.NewReader(raw)); err != nil {
			ce.err = parseError{err}
		}
	})
	if ce.err != nil {
		// A failure in one repository (a missing blob link, say) must not
		// stand for the digest in others: forget it.
		w.configs.CompareAndDelete(dg, ce)
	}
	return ce.v, ce.err
}

// StoredCorrupt reports whether err is a registry's answer that what it
// stores does not parse: distribution answers a manifest corrupted on disk
// with a 500 whose UNKNOWN error carries the JSON decoder's message. That
// is a fact about the registry, not a failure to reach it. (The 500 has
// been retried by then.)
func StoredCorrupt(err error) bool {
	var terr *transport.Error
	if !errors.As(err, &terr) || terr.StatusCode != http.StatusInternalServerError {
		return false
	}
	for _, d := range terr.Errors {
		detail := fmt.Sprint(d.Detail)
		if d.Code == transport.UnknownErrorCode && (strings.Contains(detail, "invalid character") ||
			strings.Contains(detail, "unexpected end of JSON input") || strings.Contains(detail, "cannot unmarshal")) {
			return true
		}
	}
	return false
}

// IsImageManifest reports whether a manifest is a single-platform image
// manifest. Some registries serve OCI manifests without a media type, so
// the body is consulted when the type says nothing.
func IsImageManifest(mt types.MediaType, raw []byte) bool {
	if mt.IsImage() {
		return true
	}
	if mt != "" && mt != "application/json" {
		return false
	}
	m, err := v1.ParseManifest(bytes.NewReader(raw))
	return err == nil && m.Config.Digest.Hex != ""
}

func isImageConfig(mt types.MediaType) bool {
	return mt == types.DockerConfigJSON || mt == types.OCIConfigJSON
}

func platformString(p *v1.Platform) string {
	if p == nil {
		return ""
	}
	return p.String()
}

func orUnknown(s string) string {
	if s == "" {
		return "(unknown)"
	}
	return s
}
