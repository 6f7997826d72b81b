// Mark: reading every repository and marking what is live.

package gc

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/opencontainers/go-digest"
)

// manifestInfo is what gc knows of one revision of a repository: 24
// bytes. Why gc keeps a manifest it does not judge (unknown media type,
// unreadable) is the manifest's, in the manifest cache (reason).
type manifestInfo struct {
	id   uint32        // the manifest's digest (ids.go)
	mod  int64         // the revision link's modification time, Unix nanoseconds
	node *manifestNode // nil when unreadable
}

// revisionList is a repository's revisions sorted by id.
type revisionList []manifestInfo

// get returns the revision id, nil when the repository has none.
func (l revisionList) get(id uint32) *manifestInfo {
	i, ok := slices.BinarySearchFunc(l, id, func(m manifestInfo, id uint32) int { return cmpUint32(m.id, id) })
	if !ok {
		return nil
	}
	return &l[i]
}

// manifestNode is what the mark keeps of a manifest's content, the same
// for every repository that holds it: what it references, by id (ids.go),
// 48 bytes and 4 a reference. A manifest is immutable by digest, so this
// is what the mark cache (markcache.go) stores, with sums for ids.
type manifestNode struct {
	ids   []uint32 // refs (config, layers, blobs), then children (an index's manifests)
	nrefs uint32
	// mediaType is the media type's code in markCacheTypes, 0 for a type
	// gc does not know (spelled out in rare).
	mediaType byte
	rare      *nodeRare // nil for most
}

// nodeRare are the parts of a manifest few have.
type nodeRare struct {
	mediaType  string // a type gc does not know
	hasSubject bool
	subject    uint32
	base       *baseRef // the base.name/base.digest annotations, nil without
}

// baseRef is the base an image names (provenance.go).
type baseRef struct {
	name   string
	digest uint32
}

func (n *manifestNode) refs() []uint32     { return n.ids[:n.nrefs] }
func (n *manifestNode) children() []uint32 { return n.ids[n.nrefs:] }

func (n *manifestNode) mediaTypeName() string {
	if n.mediaType != 0 {
		return markCacheTypes[n.mediaType]
	}
	if n.rare != nil {
		return n.rare.mediaType
	}
	return ""
}

func (n *manifestNode) subject() (uint32, bool) {
	if n.rare == nil {
		return 0, false
	}
	return n.rare.subject, n.rare.hasSubject
}

func (n *manifestNode) base() *baseRef {
	if n.rare == nil {
		return nil
	}
	return n.rare.base
}

// setRare fills the rare parts, leaving rare nil when there are none.
func (n *manifestNode) setRare(mediaType string, subject *uint32, base *baseRef) {
	if n.mediaType != 0 {
		mediaType = ""
	}
	if mediaType == "" && subject == nil && base == nil {
		return
	}
	n.rare = &nodeRare{mediaType: mediaType, base: base}
	if subject != nil {
		n.rare.hasSubject, n.rare.subject = true, *subject
	}
}

// nodeOf is what the mark keeps of a parsed manifest (nil for nil).
// Digests that are not sha256 are dropped: gc lists and deletes only
// sha256 blobs and revisions, so nothing it could delete is lost.
func nodeOf(pm *parsedManifest, t *idTable) *manifestNode {
	if pm == nil {
		return nil
	}
	n := &manifestNode{mediaType: markCacheType(pm.MediaType)}
	blobs := pm.blobs()
	if len(blobs)+len(pm.Manifests) > 0 {
		n.ids = make([]uint32, 0, len(blobs)+len(pm.Manifests)) // exactly: the node lives the whole run
	}
	for _, dg := range blobs {
		if s, ok := sumOf(dg); ok {
			n.ids = append(n.ids, t.id(s))
		}
	}
	n.nrefs = uint32(len(n.ids))
	for _, c := range pm.Manifests {
		if s, ok := sumOf(c.Digest); ok {
			n.ids = append(n.ids, t.id(s))
		}
	}
	var subject *uint32
	if pm.Subject != nil {
		if s, ok := sumOf(pm.Subject.Digest); ok {
			id := t.id(s)
			subject = &id
		}
	}
	var base *baseRef
	if s, ok := sumOf(pm.Annotations.Digest); ok {
		base = &baseRef{name: pm.Annotations.Name, digest: t.id(s)}
	}
	n.setRare(pm.MediaType, subject, base)
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
// ids (ids.go), times Unix nanoseconds, links sorted slices (memory model
// in the README, "gc on S3 and at scale").
type repoState struct {
	name      string
	revisions revisionList
	// current tag -> digest
	tags map[string]uint32
	// history: tag -> its index entries with their mtimes, sorted
	history map[string][]idTime
	layers  []idTime             // sorted
	uploads map[string]time.Time // id -> startedat (zero if unreadable)

	// results of marking
	marked     idSet // manifests
	markedBlob idSet // configs, layers, manifests, children
	// deleted are the manifests the plan deletes, in the order of their
	// digests.
	deleted []uint32
	kept    []KeptManifest
	// baseRoots are untagged manifests live images name as their base
	// (provenance.go): roots of the next mark.
	baseRoots map[uint32]struct{}
}

func (r *repoState) isMarked(id uint32) bool { return r.marked.has(id) }

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
	ids := newIDTable(blobs)
	p.ids = ids
	cache := newManifestCache(d, ids)
	if !opts.NoMarkCache {
		loadMarkCache(ctx, d, log, cache)
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
	log.Info("gc: manifests", "read", cache.read, "fromMarkCache", cache.asked-cache.read)
	if !opts.NoMarkCache && !opts.DryRun {
		saveMarkCache(ctx, d, cache, log)
	}
	cache.dropUnasked() // what the mark cache file held that this run did not use

	// The plan holds ids: a digest is spelled out only for the manifests
	// it deletes, and the sweep makes each path when it deletes it.
	anyYoungLeft := false
	repoIndex := make(map[string]int32, len(names))
	for i, name := range names {
		repoIndex[name] = int32(i)
	}
	p.live = newIDBits(ids.len())
	for _, r := range repos {
		ri := repoIndex[r.name]
		for tag := range pruned[r.name] {
			p.Tags = append(p.Tags, TagRef{r.name, tag})
		}
		p.Kept = append(p.Kept, r.kept...)
		for _, id := range r.markedBlob {
			p.live.add(id)
		}
		// The manifests to delete, as ids in the order of their digests
		// (an id given past the listing is not in that order); they are
		// spelled out once the mark's state is freed (below).
		r.deleted = make([]uint32, 0, len(r.revisions)-len(r.marked))
		for i := range r.revisions {
			mi := &r.revisions[i]
			anyYoungLeft = anyYoungLeft || young(mi.mod)
			if !r.isMarked(mi.id) {
				r.deleted = append(r.deleted, mi.id)
			}
		}
		ids.sortBySum(r.deleted)
		dead := 0
		for _, l := range r.layers {
			marked := r.markedBlob.has(l.id)
			anyYoungLeft = anyYoungLeft || young(l.mod)
			switch {
			case marked:
			case young(l.mod):
				p.live.add(l.id) // a push in flight: its blob stays too
			default:
				dead++
			}
		}
		if dead > 0 {
			// Made at its length as the repository's layers go.
			links := repoLinks{ri, make([]uint32, 0, dead)}
			for _, l := range r.layers {
				if !r.markedBlob.has(l.id) && !young(l.mod) {
					links.ids = append(links.ids, l.id)
				}
			}
			ids.sortBySum(links.ids)
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
		// This repository is done: what the grace count (grace.go) and
		// the manifests' history tags (below) do not need goes now.
		r.layers, r.uploads, r.markedBlob = nil, nil, nil
	}

	// Sweep the blob store.
	p.blobs = newDeadBlobs(blobs)
	i := -1
	blobs.each(func(b *blobInfo) {
		i++
		if young(b.mod) {
			anyYoungLeft = true
			return
		}
		if ids.isLive(p.live, i, b.s) {
			return
		}
		p.blobs.state[i] = noOwner
		p.blobs.n++
	})
	// Attribute each deleted blob's bytes to the first repository by name
	// whose deleted manifests or layer links name it.
	for _, r := range repos {
		ri := repoIndex[r.name]
		for _, id := range r.deleted {
			p.blobs.claimID(ids, id, ri, names)
			if n := cache.node(id); n != nil {
				for _, b := range n.refs() {
					p.blobs.claimID(ids, b, ri, names)
				}
			}
		}
	}
	for _, l := range p.links {
		for _, id := range l.ids {
			p.blobs.claimID(ids, id, l.repo, names)
		}
	}
	if anyYoungLeft {
		p.spared = p.graceSpared(ctx, cache, repos, blobs)
	}
	p.storage = storageTotals(repos, blobs)
	// The manifest cache goes, then each repository as its manifests to
	// delete are spelled out.
	cache = nil
	dead := 0
	for _, r := range repos {
		dead += len(r.deleted)
	}
	p.Manifests = make([]ManifestDeletion, 0, dead)
	for k, r := range repos {
		tags := sortedKeys(r.history)
		for _, id := range r.deleted {
			md := ManifestDeletion{Repository: r.name, Digest: ids.digest(id)}
			for _, tag := range tags {
				if _, ok := findID(r.history[tag], id); ok && !pruned[r.name][tag] {
					md.HistoryTags = append(md.HistoryTags, tag)
				}
			}
			p.Manifests = append(p.Manifests, md)
		}
		repos[k] = nil
	}
	sort.Slice(p.Tags, func(i, j int) bool {
		return p.Tags[i].Repository+":"+p.Tags[i].Tag < p.Tags[j].Repository+":"+p.Tags[j].Tag
	})
	for _, k := range p.Kept {
		log.Warn("gc: kept a manifest it does not understand", "repository", k.Repository, "digest", k.Digest, "mediaType", k.MediaType, "reason", k.Reason)
	}
	log.Info("gc: plan", "manifests", len(p.Manifests), "layerLinks", p.linkCount(), "blobs", p.blobCount(), "uploads", len(p.Uploads), "tags", len(p.Tags))
	return p, nil
}

func anyYoung(links []idTime, young func(int64) bool) bool {
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

// mark computes r.marked and r.markedBlob (sorted slices of ids: 4 bytes
// a marked digest, markedBlob held until the repository's part of the
// plan is made). Roots: current tags (except pruned ones), KeepPrevious
// history entries, manifests within grace, manifests gc does not
// understand, and everything with KeepUntagged.
func mark(ctx context.Context, cache *manifestCache, r *repoState, pruned map[string]bool, opts Options, young func(int64) bool) {
	ids := cache.ids
	marked := map[uint32]struct{}{}
	isMarked := func(id uint32) bool { _, ok := marked[id]; return ok }
	markedBlob := map[uint32]struct{}{}
	r.kept = nil
	var queue []uint32
	push := func(id uint32) {
		if !isMarked(id) {
			marked[id] = struct{}{}
			queue = append(queue, id)
		}
	}
	for tag, id := range r.tags {
		if pruned[tag] {
			continue
		}
		push(id)
		if opts.KeepPrevious > 0 {
			var prev []idTime
			for _, h := range r.history[tag] {
				if h.id != id {
					prev = append(prev, h)
				}
			}
			sort.Slice(prev, func(i, j int) bool {
				if prev[i].mod != prev[j].mod {
					return prev[i].mod > prev[j].mod
				}
				return ids.compare(prev[i].id, prev[j].id) < 0
			})
			for i := 0; i < len(prev) && i < opts.KeepPrevious; i++ {
				push(prev[i].id)
			}
		}
	}
	for id := range r.baseRoots {
		push(id)
	}
	for i := range r.revisions {
		mi := &r.revisions[i]
		unknown := cache.reason(mi.id)
		switch {
		case opts.KeepUntagged, young(mi.mod):
			push(mi.id)
		case unknown != "":
			push(mi.id)
		}
		if unknown != "" {
			mt := ""
			if mi.node != nil {
				mt = mi.node.mediaTypeName()
			}
			r.kept = append(r.kept, KeptManifest{Repository: r.name, Digest: ids.digest(mi.id), MediaType: mt, Reason: unknown})
		}
	}
	for {
		for len(queue) > 0 {
			id := queue[0]
			queue = queue[1:]
			markedBlob[id] = struct{}{}
			mi := r.revisions.get(id)
			var n *manifestNode
			if mi != nil {
				n = mi.node
			} else {
				// A child absent from this repository (an index-only copy):
				// keep it, and what it references if the blob store has it.
				n, _, _ = cache.get(ctx, id)
			}
			if n == nil {
				continue
			}
			for _, b := range n.refs() {
				markedBlob[b] = struct{}{}
			}
			for _, c := range n.children() {
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
			if isMarked(mi.id) || mi.node == nil {
				continue
			}
			if subj, ok := mi.node.subject(); ok && isMarked(subj) {
				push(mi.id)
			}
		}
		if len(queue) == 0 {
			break
		}
	}
	// Drop marks of manifests absent from the repository: they are kept as
	// blobs (markedBlob) but there is no revision to keep.
	for id := range marked {
		if r.revisions.get(id) == nil {
			delete(marked, id)
		}
	}
	sort.Slice(r.kept, func(i, j int) bool { return r.kept[i].Digest < r.kept[j].Digest })
	r.marked, r.markedBlob = idSetOf(marked), idSetOf(markedBlob)
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
