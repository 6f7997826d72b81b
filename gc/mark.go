// Mark: reading every repository and marking what is live.

package gc

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/opencontainers/go-digest"
)

// manifestInfo is what gc knows of one revision of a repository.
type manifestInfo struct {
	digest  digest.Digest
	modTime time.Time
	parsed  *parsedManifest // nil when unreadable
	// unknown says why gc keeps this manifest without judging it (unknown
	// media type, unreadable); "" when understood.
	unknown string
}

// parsedManifest is the part of any manifest gc follows.
type parsedManifest struct {
	MediaType     string       `json:"mediaType"`
	SchemaVersion int          `json:"schemaVersion"`
	Config        *descriptor  `json:"config"`
	Layers        []descriptor `json:"layers"`
	Manifests     []descriptor `json:"manifests"`
	Blobs         []descriptor `json:"blobs"`
	Subject       *descriptor  `json:"subject"`
	// Annotations naming the image's base (provenance.go).
	Annotations baseAnnotations `json:"annotations"`
}

type descriptor struct {
	Digest digest.Digest `json:"digest"`
}

// Media types gc understands.
var knownTypes = map[string]bool{
	"application/vnd.docker.distribution.manifest.v2+json":      true,
	"application/vnd.docker.distribution.manifest.list.v2+json": true,
	"application/vnd.oci.image.manifest.v1+json":                true,
	"application/vnd.oci.image.index.v1+json":                   true,
}

// knownTypeNames gives each known media type one string.
var knownTypeNames = func() map[string]string {
	m := map[string]string{}
	for t := range knownTypes {
		m[t] = t
	}
	return m
}()

// intern makes the digests m names the run's (interner).
func (m *parsedManifest) intern(in *interner) {
	if in == nil {
		return
	}
	for _, d := range []*descriptor{m.Config, m.Subject} {
		if d != nil {
			d.Digest = in.of(d.Digest)
		}
	}
	for _, list := range [][]descriptor{m.Layers, m.Manifests, m.Blobs} {
		for i := range list {
			list[i].Digest = in.of(list[i].Digest)
		}
	}
	m.Annotations.Digest = in.of(m.Annotations.Digest)
}

// refs are the blobs (configs, layers) and manifests (children) a manifest
// names.
func (m *parsedManifest) blobs() []digest.Digest {
	var out []digest.Digest
	if m.Config != nil {
		out = append(out, m.Config.Digest)
	}
	for _, l := range append(append([]descriptor{}, m.Layers...), m.Blobs...) {
		out = append(out, l.Digest)
	}
	return out
}

// repoState is a repository as read from storage.
type repoState struct {
	name      string
	revisions map[digest.Digest]*manifestInfo
	// current tag -> digest
	tags map[string]digest.Digest
	// history: tag -> digest -> mtime of the index entry
	history map[string]map[digest.Digest]time.Time
	layers  map[digest.Digest]time.Time
	uploads map[string]time.Time // id -> startedat (zero if unreadable)

	// results of marking
	marked     map[digest.Digest]bool // manifests
	markedBlob map[digest.Digest]bool // configs, layers, manifests, children
	kept       []KeptManifest
	// baseRoots are untagged manifests live images name as their base
	// (provenance.go): roots of the next mark.
	baseRoots map[digest.Digest]bool
}

// PlanGC reads the storage and decides what a run deletes. It deletes
// nothing.
func PlanGC(ctx context.Context, d storagedriver.StorageDriver, opts Options) (*Plan, error) {
	opts.fill()
	p := &Plan{opts: opts, start: opts.Now(), owner: map[digest.Digest]string{}}
	if err := checkRegistry(ctx, d); err != nil {
		return nil, err
	}
	log := opts.Logger
	names, err := listRepositories(ctx, d, opts.Jobs)
	if err != nil {
		return nil, err
	}
	log.Info("gc: repositories found", "count", len(names))
	p.repos = names

	cache := newManifestCache(d, newInterner())
	repos, err := readRepositories(ctx, d, names, cache, opts)
	if err != nil {
		return nil, err
	}

	now := opts.Now()
	young := func(t time.Time) bool { return opts.Grace > 0 && now.Sub(t) < opts.Grace }

	// Mark each repository, then the bases of live images (provenance.go).
	pruned, keptAsBase := markAll(ctx, cache, repos, opts, young)
	p.keptAsBase = keptAsBase

	live := map[digest.Digest]bool{}
	for _, r := range repos {
		for tag := range pruned[r.name] {
			p.Tags = append(p.Tags, TagRef{r.name, tag})
		}
		p.Kept = append(p.Kept, r.kept...)
		for dg := range r.markedBlob {
			live[dg] = true
		}
		for _, dg := range sortedDigests(r.revisions) {
			if r.marked[dg] {
				continue
			}
			md := ManifestDeletion{Repository: r.name, Digest: dg}
			for _, tag := range sortedKeys(r.history) {
				if _, ok := r.history[tag][dg]; ok && !pruned[r.name][tag] {
					md.HistoryTags = append(md.HistoryTags, tag)
				}
			}
			p.Manifests = append(p.Manifests, md)
			claim(p.owner, dg, r.name)
			if mi := r.revisions[dg]; mi.parsed != nil {
				for _, b := range mi.parsed.blobs() {
					claim(p.owner, b, r.name)
				}
			}
		}
		for _, dg := range sortedDigests(r.layers) {
			switch {
			case r.markedBlob[dg]:
			case young(r.layers[dg]):
				live[dg] = true // a push in flight: its blob stays too
			default:
				p.LayerLinks = append(p.LayerLinks, BlobRef{r.name, dg})
				claim(p.owner, dg, r.name)
			}
		}
		for _, id := range sortedKeys(r.uploads) {
			started := r.uploads[id]
			if opts.UploadsOlderThan > 0 && !started.IsZero() && now.Sub(started) > opts.UploadsOlderThan {
				p.Uploads = append(p.Uploads, UploadRef{r.name, id})
			}
		}
		if opts.PruneEmptyRepos && len(r.marked) == 0 && len(r.tags) == len(pruned[r.name]) && !anyYoung(r.layers, young) {
			uploadsLeft := len(r.uploads)
			for _, u := range p.Uploads {
				if u.Repository == r.name {
					uploadsLeft--
				}
			}
			if uploadsLeft == 0 {
				p.EmptyRepos = append(p.EmptyRepos, r.name)
			}
		}
	}

	p.live = live
	// Sweep the blob store.
	blobs, err := listBlobs(ctx, d, cache.in, opts)
	if err != nil {
		return nil, err
	}
	for _, b := range blobs {
		if live[b.digest] || young(b.modTime) {
			continue
		}
		p.Blobs = append(p.Blobs, BlobDeletion{Digest: b.digest, Size: b.size})
	}
	p.spared = p.graceSpared(ctx, cache, repos, blobs, young)
	p.storage = storageTotals(repos, blobs)
	sort.Slice(p.Tags, func(i, j int) bool {
		return p.Tags[i].Repository+":"+p.Tags[i].Tag < p.Tags[j].Repository+":"+p.Tags[j].Tag
	})
	for _, k := range p.Kept {
		log.Warn("gc: kept a manifest it does not understand", "repository", k.Repository, "digest", k.Digest, "mediaType", k.MediaType, "reason", k.Reason)
	}
	log.Info("gc: plan", "manifests", len(p.Manifests), "layerLinks", len(p.LayerLinks), "blobs", len(p.Blobs), "uploads", len(p.Uploads), "tags", len(p.Tags))
	return p, nil
}

func anyYoung(m map[digest.Digest]time.Time, young func(time.Time) bool) bool {
	for _, t := range m {
		if young(t) {
			return true
		}
	}
	return false
}

// claim attributes a digest to the first repository by name.
func claim(owner map[digest.Digest]string, d digest.Digest, repo string) {
	if o, ok := owner[d]; !ok || repo < o {
		owner[d] = repo
	}
}

// signatureSubject recognises cosign tags (sha256-<hex>.sig, .att, .sbom)
// and referrers fallback tags (sha256-<hex>) and returns their subject.
func signatureSubject(tag string) (digest.Digest, bool) {
	alg, rest, ok := strings.Cut(tag, "-")
	if !ok {
		return "", false
	}
	for _, suf := range []string{".sig", ".att", ".sbom"} {
		rest = strings.TrimSuffix(rest, suf)
	}
	d := digest.NewDigestFromEncoded(digest.Algorithm(alg), rest)
	if d.Validate() != nil {
		return "", false
	}
	return d, true
}

// mark computes r.marked and r.markedBlob. Roots: current tags (except
// pruned ones), KeepPrevious history entries, manifests within grace,
// manifests gc does not understand, and everything with KeepUntagged.
func mark(ctx context.Context, cache *manifestCache, r *repoState, pruned map[string]bool, opts Options, young func(time.Time) bool) {
	r.marked = map[digest.Digest]bool{}
	r.markedBlob = map[digest.Digest]bool{}
	r.kept = nil
	var queue []digest.Digest
	push := func(dg digest.Digest) {
		if !r.marked[dg] {
			r.marked[dg] = true
			queue = append(queue, dg)
		}
	}
	for tag, dg := range r.tags {
		if pruned[tag] {
			continue
		}
		push(dg)
		if opts.KeepPrevious > 0 {
			type ent struct {
				d digest.Digest
				t time.Time
			}
			var prev []ent
			for hd, t := range r.history[tag] {
				if hd != dg {
					prev = append(prev, ent{hd, t})
				}
			}
			sort.Slice(prev, func(i, j int) bool {
				if !prev[i].t.Equal(prev[j].t) {
					return prev[i].t.After(prev[j].t)
				}
				return prev[i].d < prev[j].d
			})
			for i := 0; i < len(prev) && i < opts.KeepPrevious; i++ {
				push(prev[i].d)
			}
		}
	}
	for dg := range r.baseRoots {
		push(dg)
	}
	for dg, mi := range r.revisions {
		switch {
		case opts.KeepUntagged, young(mi.modTime):
			push(dg)
		case mi.unknown != "":
			push(dg)
		}
		if mi.unknown != "" {
			mt := ""
			if mi.parsed != nil {
				mt = mi.parsed.MediaType
			}
			r.kept = append(r.kept, KeptManifest{Repository: r.name, Digest: dg, MediaType: mt, Reason: mi.unknown})
		}
	}
	for {
		for len(queue) > 0 {
			dg := queue[0]
			queue = queue[1:]
			r.markedBlob[dg] = true
			mi := r.revisions[dg]
			var pm *parsedManifest
			if mi != nil {
				pm = mi.parsed
			} else {
				// A child absent from this repository (an index-only copy):
				// keep it, and what it references if the blob store has it.
				pm, _, _ = cache.get(ctx, dg)
			}
			if pm == nil {
				continue
			}
			for _, b := range pm.blobs() {
				r.markedBlob[b] = true
			}
			for _, c := range pm.Manifests {
				if mi == nil {
					r.markedBlob[c.Digest] = true // don't chase further out of the repo
					continue
				}
				push(c.Digest)
			}
		}
		// Referrers of marked manifests.
		for dg, mi := range r.revisions {
			if !r.marked[dg] && mi.parsed != nil && mi.parsed.Subject != nil && r.marked[mi.parsed.Subject.Digest] {
				push(dg)
			}
		}
		if len(queue) == 0 {
			break
		}
	}
	// Drop marks of manifests absent from the repository: they are kept as
	// blobs (markedBlob) but there is no revision to keep.
	for dg := range r.marked {
		if _, ok := r.revisions[dg]; !ok {
			delete(r.marked, dg)
		}
	}
	sort.Slice(r.kept, func(i, j int) bool { return r.kept[i].Digest < r.kept[j].Digest })
}

// readManifest reads and parses a manifest from the blob store. A manifest
// gc must not judge comes with a reason (and, if it is JSON, its
// descriptors, which the caller may keep alive as a best effort).
func readManifest(ctx context.Context, d storagedriver.StorageDriver, in *interner, dg digest.Digest) (*parsedManifest, string, error) {
	if dg.Validate() != nil {
		return nil, "invalid digest", nil
	}
	b, err := getContent(ctx, d, pathFor(blobDataSpec{dg}))
	if isNotFound(err) {
		// A crashed online run may have left it in the quarantine.
		if qb, qerr := d.GetContent(ctx, pathFor(quarantineDataSpec{dg})); qerr == nil {
			b, err = qb, nil
		}
	}
	if err != nil {
		return nil, "blob missing", err
	}
	var pm parsedManifest
	if err := json.Unmarshal(b, &pm); err != nil {
		return nil, "not JSON", nil
	}
	mt := pm.MediaType
	if mt == "" && pm.SchemaVersion == 2 {
		// OCI allows mediaType to be absent; tell by shape.
		if pm.Manifests != nil {
			mt = "application/vnd.oci.image.index.v1+json"
		} else if pm.Config != nil {
			mt = "application/vnd.oci.image.manifest.v1+json"
		}
	}
	pm.intern(in)
	if !knownTypes[mt] {
		return &pm, fmt.Sprintf("unknown media type %q", pm.MediaType), nil
	}
	pm.MediaType = knownTypeNames[mt]
	return &pm, "", nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func sortedDigests[V any](m map[digest.Digest]V) []digest.Digest {
	out := make([]digest.Digest, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}
