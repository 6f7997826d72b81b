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

// manifestInfo is what gc knows of one revision of a repository: 48
// bytes. Why gc keeps a manifest it does not judge (unknown media type,
// unreadable) is the manifest's, in the manifest cache (reason).
type manifestInfo struct {
	s    sum256
	mod  int64         // the revision link's modification time, Unix nanoseconds
	node *manifestNode // nil when unreadable
}

// revisionList is a repository's revisions sorted by sum.
type revisionList []manifestInfo

// get returns the revision s, nil when the repository has none.
func (l revisionList) get(s sum256) *manifestInfo {
	lo, hi := 0, len(l)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if l[m].s.less(s) {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < len(l) && l[lo].s == s {
		return &l[lo]
	}
	return nil
}

// manifestNode is what the mark keeps of a manifest's content, the same
// for every repository that holds it: what it references, as sums. A
// manifest is immutable by digest, so this is what the mark cache
// (markcache.go) stores.
type manifestNode struct {
	mediaType string   // one string per known type
	refs      []sum256 // config, layers, blobs
	children  []sum256 // an index's manifests
	subject   *sum256
	base      *baseRef // the base.name/base.digest annotations, nil without
}

// baseRef is the base an image names (provenance.go).
type baseRef struct {
	name   string
	digest sum256
}

// nodeOf is what the mark keeps of a parsed manifest (nil for nil).
// Digests that are not sha256 are dropped: gc lists and deletes only
// sha256 blobs and revisions, so nothing it could delete is lost.
func nodeOf(pm *parsedManifest) *manifestNode {
	if pm == nil {
		return nil
	}
	n := &manifestNode{mediaType: pm.MediaType}
	if t, ok := knownTypeNames[n.mediaType]; ok {
		n.mediaType = t
	}
	blobs := pm.blobs()
	if len(blobs) > 0 {
		n.refs = make([]sum256, 0, len(blobs)) // exactly: the node lives the whole run
	}
	for _, dg := range blobs {
		if s, ok := sumOf(dg); ok {
			n.refs = append(n.refs, s)
		}
	}
	if len(pm.Manifests) > 0 {
		n.children = make([]sum256, 0, len(pm.Manifests))
	}
	for _, c := range pm.Manifests {
		if s, ok := sumOf(c.Digest); ok {
			n.children = append(n.children, s)
		}
	}
	if pm.Subject != nil {
		if s, ok := sumOf(pm.Subject.Digest); ok {
			n.subject = &s
		}
	}
	if s, ok := sumOf(pm.Annotations.Digest); ok {
		n.base = &baseRef{name: pm.Annotations.Name, digest: s}
	}
	return n
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

// repoState is a repository as read from storage, compact: digests are
// sums, times Unix nanoseconds, links sorted slices (memory model in the
// README, "gc on S3 and at scale").
type repoState struct {
	name      string
	revisions revisionList
	// current tag -> digest
	tags map[string]sum256
	// history: tag -> its index entries with their mtimes, sorted
	history map[string][]sumTime
	layers  []sumTime            // sorted
	uploads map[string]time.Time // id -> startedat (zero if unreadable)

	// results of marking
	marked     map[sum256]struct{} // manifests
	markedBlob sumSet              // configs, layers, manifests, children
	kept       []KeptManifest
	// baseRoots are untagged manifests live images name as their base
	// (provenance.go): roots of the next mark.
	baseRoots map[sum256]struct{}
}

func (r *repoState) isMarked(s sum256) bool { _, ok := r.marked[s]; return ok }

// PlanGC reads the storage and decides what a run deletes. It deletes
// nothing (a real run writes the mark cache, markcache.go).
func PlanGC(ctx context.Context, d storagedriver.StorageDriver, opts Options) (*Plan, error) {
	opts.fill()
	p := &Plan{opts: opts, start: opts.Now()}
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

	// The blob store is listed first: the mark cache answers only for
	// manifests whose blob is there (one lost since is read, and found
	// missing, as without a cache).
	blobs, err := listBlobs(ctx, d, nil, opts)
	if err != nil {
		return nil, err
	}
	cache := newManifestCache(d)
	if !opts.NoMarkCache {
		cache.stored, cache.present = loadMarkCache(ctx, d, log), blobs.lookup()
	}
	repos, err := readRepositories(ctx, d, names, cache, opts)
	if err != nil {
		return nil, err
	}
	now := opts.Now().UnixNano()
	grace := opts.Grace.Nanoseconds()
	young := func(mod int64) bool { return grace > 0 && now-mod < grace }

	// Mark each repository, then the bases of live images (provenance.go).
	pruned, keptAsBase := markAll(ctx, cache, repos, opts, young)
	p.keptAsBase = keptAsBase
	log.Info("gc: manifests", "read", cache.read, "fromMarkCache", len(cache.m)-cache.read)
	if !opts.NoMarkCache && !opts.DryRun {
		saveMarkCache(ctx, d, cache, log)
	}
	cache.stored = nil // what this run used is in cache.m

	// The plan holds sums: a digest is spelled out only for the manifests
	// it deletes, and the sweep makes each path when it deletes it.
	anyYoungLeft := false
	repoIndex := make(map[string]int32, len(names))
	for i, name := range names {
		repoIndex[name] = int32(i)
	}
	for _, r := range repos {
		ri := repoIndex[r.name]
		for tag := range pruned[r.name] {
			p.Tags = append(p.Tags, TagRef{r.name, tag})
		}
		p.Kept = append(p.Kept, r.kept...)
		for _, dg := range r.markedBlob.s {
			p.live.add(dg)
		}
		for i := range r.revisions {
			mi := &r.revisions[i]
			dg := mi.s
			anyYoungLeft = anyYoungLeft || young(mi.mod)
			if r.isMarked(dg) {
				continue
			}
			md := ManifestDeletion{Repository: r.name, Digest: dg.digest()}
			for _, tag := range sortedKeys(r.history) {
				if _, ok := findSum(r.history[tag], dg); ok && !pruned[r.name][tag] {
					md.HistoryTags = append(md.HistoryTags, tag)
				}
			}
			p.Manifests = append(p.Manifests, md)
		}
		dead := 0
		for _, l := range r.layers {
			marked := r.markedBlob.has(l.s)
			anyYoungLeft = anyYoungLeft || young(l.mod)
			switch {
			case marked:
			case young(l.mod):
				p.live.add(l.s) // a push in flight: its blob stays too
			default:
				dead++
			}
		}
		if dead > 0 {
			// Made at its length as the repository's layers go.
			links := repoLinks{ri, make([]sum256, 0, dead)}
			for _, l := range r.layers {
				if !r.markedBlob.has(l.s) && !young(l.mod) {
					links.sums = append(links.sums, l.s)
				}
			}
			p.links = append(p.links, links)
		}
		for _, id := range sortedKeys(r.uploads) {
			started := r.uploads[id]
			if opts.UploadsOlderThan > 0 && !started.IsZero() && opts.Now().Sub(started) > opts.UploadsOlderThan {
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
		// This repository is done: what the grace count (grace.go) does
		// not need goes now.
		r.layers, r.uploads, r.markedBlob = nil, nil, sumSet{}
		if opts.KeepPrevious == 0 {
			r.history = nil
		}
	}
	p.live.done()

	// Sweep the blob store.
	p.blobs = newDeadBlobs(blobs)
	i := -1
	blobs.each(func(b *blobInfo) {
		i++
		if young(b.mod) {
			anyYoungLeft = true
			return
		}
		if p.live.has(b.s) {
			return
		}
		p.blobs.state[i] = noOwner
		p.blobs.n++
	})
	// Attribute each deleted blob's bytes to the first repository by name
	// whose deleted manifests or layer links name it.
	for _, m := range p.Manifests {
		s, _ := sumOf(m.Digest)
		ri := repoIndex[m.Repository]
		p.blobs.claim(s, ri, names)
		if n := cache.m[s]; n != nil {
			for _, b := range n.refs {
				p.blobs.claim(b, ri, names)
			}
		}
	}
	for _, l := range p.links {
		for _, s := range l.sums {
			p.blobs.claim(s, l.repo, names)
		}
	}
	if anyYoungLeft {
		p.spared = p.graceSpared(ctx, cache, repos, blobs)
	}
	p.storage = storageTotals(repos, blobs)
	sort.Slice(p.Tags, func(i, j int) bool {
		return p.Tags[i].Repository+":"+p.Tags[i].Tag < p.Tags[j].Repository+":"+p.Tags[j].Tag
	})
	for _, k := range p.Kept {
		log.Warn("gc: kept a manifest it does not understand", "repository", k.Repository, "digest", k.Digest, "mediaType", k.MediaType, "reason", k.Reason)
	}
	log.Info("gc: plan", "manifests", len(p.Manifests), "layerLinks", p.linkCount(), "blobs", p.blobCount(), "uploads", len(p.Uploads), "tags", len(p.Tags))
	return p, nil
}

func anyYoung(links []sumTime, young func(int64) bool) bool {
	for _, l := range links {
		if young(l.mod) {
			return true
		}
	}
	return false
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

// mark computes r.marked and r.markedBlob (a sorted slice: 32 bytes a
// marked digest, held until the repository's part of the plan is made).
// Roots: current tags (except pruned ones), KeepPrevious history entries,
// manifests within grace, manifests gc does not understand, and
// everything with KeepUntagged.
func mark(ctx context.Context, cache *manifestCache, r *repoState, pruned map[string]bool, opts Options, young func(int64) bool) {
	r.marked = map[sum256]struct{}{}
	markedBlob := map[sum256]struct{}{}
	r.kept = nil
	var queue []sum256
	push := func(dg sum256) {
		if !r.isMarked(dg) {
			r.marked[dg] = struct{}{}
			queue = append(queue, dg)
		}
	}
	for tag, dg := range r.tags {
		if pruned[tag] {
			continue
		}
		push(dg)
		if opts.KeepPrevious > 0 {
			var prev []sumTime
			for _, h := range r.history[tag] {
				if h.s != dg {
					prev = append(prev, h)
				}
			}
			sort.Slice(prev, func(i, j int) bool {
				if prev[i].mod != prev[j].mod {
					return prev[i].mod > prev[j].mod
				}
				return prev[i].s.less(prev[j].s)
			})
			for i := 0; i < len(prev) && i < opts.KeepPrevious; i++ {
				push(prev[i].s)
			}
		}
	}
	for dg := range r.baseRoots {
		push(dg)
	}
	for i := range r.revisions {
		mi := &r.revisions[i]
		dg, unknown := mi.s, cache.reason(mi.s)
		switch {
		case opts.KeepUntagged, young(mi.mod):
			push(dg)
		case unknown != "":
			push(dg)
		}
		if unknown != "" {
			mt := ""
			if mi.node != nil {
				mt = mi.node.mediaType
			}
			r.kept = append(r.kept, KeptManifest{Repository: r.name, Digest: dg.digest(), MediaType: mt, Reason: unknown})
		}
	}
	for {
		for len(queue) > 0 {
			dg := queue[0]
			queue = queue[1:]
			markedBlob[dg] = struct{}{}
			mi := r.revisions.get(dg)
			var n *manifestNode
			if mi != nil {
				n = mi.node
			} else {
				// A child absent from this repository (an index-only copy):
				// keep it, and what it references if the blob store has it.
				n, _, _ = cache.get(ctx, dg)
			}
			if n == nil {
				continue
			}
			for _, b := range n.refs {
				markedBlob[b] = struct{}{}
			}
			for _, c := range n.children {
				if mi == nil {
					markedBlob[c] = struct{}{} // don't chase further out of the repo
					continue
				}
				push(c)
			}
		}
		// Referrers of marked manifests.
		for i := range r.revisions {
			mi := &r.revisions[i]
			if !r.isMarked(mi.s) && mi.node != nil && mi.node.subject != nil && r.isMarked(*mi.node.subject) {
				push(mi.s)
			}
		}
		if len(queue) == 0 {
			break
		}
	}
	// Drop marks of manifests absent from the repository: they are kept as
	// blobs (markedBlob) but there is no revision to keep.
	for dg := range r.marked {
		if r.revisions.get(dg) == nil {
			delete(r.marked, dg)
		}
	}
	sort.Slice(r.kept, func(i, j int) bool { return r.kept[i].Digest < r.kept[j].Digest })
	r.markedBlob = sumSetOf(markedBlob)
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

func sortedSums[V any](m map[sum256]V) []sum256 {
	out := make([]sum256, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].less(out[j]) })
	return out
}
