package backup

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/regkeeper/regkeeper/internal/walk"
)

// DefaultReferrersDepth is how deep referrers are followed by default: a
// signature on an SBOM on an image is depth 2. Content addressing rules out
// cycles (a manifest cannot name a subject that names it), so the limit
// only bounds the work a registry full of chained artifacts can cause.
const DefaultReferrersDepth = 16

// referrersDepth is d, or the default when d is not positive.
func referrersDepth(d int) int {
	if d <= 0 {
		return DefaultReferrersDepth
	}
	return d
}

// referrersTagPattern is the referrers tag schema of the OCI distribution
// spec (v1.1, "Referrers Tag Schema") for sha256 subjects: the fallback tag
// that lists a subject's referrers on a registry without the referrers API.
var referrersTagPattern = regexp.MustCompile(`^sha256-[0-9a-f]{64}$`)

// referrersTag is the fallback tag of subject d: <alg>-<hex>, the hex
// truncated to 64 characters.
func referrersTag(d v1.Hash) string {
	h := d.Hex
	if len(h) > 64 {
		h = h[:64]
	}
	return d.Algorithm + "-" + h
}

// fallbackSubject returns the subject a referrers fallback tag lists
// referrers of, when tag is one.
func fallbackSubject(tag string) (v1.Hash, bool) {
	if !referrersTagPattern.MatchString(tag) {
		return v1.Hash{}, false
	}
	h, err := v1.NewHash("sha256:" + strings.TrimPrefix(tag, "sha256-"))
	return h, err == nil
}

// referrerInfo is what a manifest with a subject contributes to its
// subject's referrers list.
type referrerInfo struct {
	Subject v1.Hash
	// Descriptor is the entry of the referrers list, built as the spec says
	// a client must when it maintains the fallback tag: the manifest's
	// media type, digest and size; artifactType from the manifest, else
	// its config's media type; and every annotation of the manifest.
	Descriptor v1.Descriptor
}

// parseReferrer reads the subject of a manifest; ok is false when it has
// none.
func parseReferrer(desc v1.Descriptor, raw []byte) (referrerInfo, bool) {
	var m struct {
		MediaType    types.MediaType   `json:"mediaType"`
		ArtifactType string            `json:"artifactType"`
		Config       *v1.Descriptor    `json:"config"`
		Subject      *v1.Descriptor    `json:"subject"`
		Annotations  map[string]string `json:"annotations"`
	}
	if err := json.Unmarshal(raw, &m); err != nil || m.Subject == nil {
		return referrerInfo{}, false
	}
	mt := desc.MediaType
	if mt == "" {
		mt = m.MediaType
	}
	d := v1.Descriptor{MediaType: mt, Digest: desc.Digest, Size: int64(len(raw)), ArtifactType: m.ArtifactType, Annotations: m.Annotations}
	if d.ArtifactType == "" && m.Config != nil {
		d.ArtifactType = string(m.Config.MediaType)
	}
	return referrerInfo{Subject: m.Subject.Digest, Descriptor: d}, true
}

// backupReferrers backs up, through the referrers API when the registry
// has it, the referrers of the given manifests and, level by level, the
// referrers of those referrers, down to the depth limit. A subject is
// listed once per run.
func (r *runner) backupReferrers(ctx context.Context, repo name.Repository, subjects []v1.Hash) error {
	if !r.opts.Referrers || !r.referrersAPI(repo) {
		return nil
	}
	level := subjects
	for depth := 1; depth <= referrersDepth(r.opts.ReferrersDepth) && len(level) > 0; depth++ {
		var next []v1.Hash
		for _, s := range level {
			if err := ctx.Err(); err != nil {
				return err
			}
			found, err := r.listReferrers(repo, s)
			if err != nil {
				return err
			}
			for _, desc := range found {
				if _, err := r.copyManifest(ctx, repo, desc, nil); err != nil {
					return fmt.Errorf("referrer %s of %s: %w", desc.Digest, s, err)
				}
				if r.idx.addReferrer(repo.RepositoryStr(), desc, s, r.now) {
					r.mu.Lock()
					r.res.Referrers++
					r.mu.Unlock()
				}
				if e, ok := r.idx.referrer(repo.RepositoryStr(), desc.Digest); ok {
					r.record(repo.RepositoryStr()+"@"+desc.Digest.String(), e)
				}
				next = append(next, r.coveredDigests(desc.Digest)...)
			}
		}
		level = next
	}
	return nil
}

// listReferrers asks the referrers API for the referrers of s in repo,
// once per run: a second caller gets nothing, as the first one backs them
// up (and their referrers in turn).
func (r *runner) listReferrers(repo name.Repository, s v1.Hash) ([]v1.Descriptor, error) {
	key := repo.RepositoryStr() + "@" + s.String()
	r.mu.Lock()
	if r.listed == nil {
		r.listed = map[string]bool{}
	}
	done := r.listed[key]
	r.listed[key] = true
	r.mu.Unlock()
	if done {
		return nil, nil
	}
	idx, err := remote.Referrers(repo.Digest(s.String()), r.refOpts...)
	if err == nil {
		var im *v1.IndexManifest
		if im, err = idx.IndexManifest(); err == nil {
			return im.Manifests, nil
		}
	}
	r.mu.Lock()
	delete(r.listed, key) // let another caller try again
	r.mu.Unlock()
	return nil, fmt.Errorf("listing referrers of %s: %w", s, err)
}

// backupAttached backs up, when a tag filter selects images, the tags
// attached to what was backed up: cosign signature tags
// (sha256-<hex>.sig, .att, .sbom) and referrers fallback tags
// (sha256-<hex>), then those attached to these (a signature on an SBOM
// listed in a fallback tag), down to the referrers depth limit. digests is
// what backupAll returned for the selected tags and grows with each level.
func (r *runner) backupAttached(ctx context.Context, l *walk.Listing, digests map[string]map[string]bool) {
	done := map[target]bool{}
	for depth := 1; depth <= referrersDepth(r.opts.ReferrersDepth); depth++ {
		var attached []target
		for _, repo := range l.Repositories {
			for _, t := range repo.All {
				tg := target{repo.Name, t}
				if r.opts.Tag.MatchString(t) || done[tg] {
					continue
				}
				if d, ok := attachedTo(t); ok && digests[repo.Name][d] {
					attached = append(attached, tg)
					done[tg] = true
				}
			}
		}
		if len(attached) == 0 || ctx.Err() != nil {
			return
		}
		for repo, ds := range r.backupAll(ctx, attached) {
			if digests[repo] == nil {
				digests[repo] = map[string]bool{}
			}
			for d := range ds {
				digests[repo][d] = true
			}
		}
	}
}
