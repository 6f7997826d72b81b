// The plan: what a run deletes, in order, and its report.

package gc

import (
	"sort"
	"time"

	"github.com/opencontainers/go-digest"
)

// Plan is what a run deletes, in order. A dry run prints its Report; a real
// run Executes it.
type Plan struct {
	// Tags are orphan signature tags to delete first.
	Tags []TagRef
	// Manifests are untagged, unreachable manifests.
	Manifests []ManifestDeletion
	// Blobs are blob-store entries to delete besides those PlanGC found
	// (a plan built by hand); PlanGC holds its own compactly (blobs).
	Blobs []BlobDeletion
	// Uploads are abandoned upload directories.
	Uploads []UploadRef
	// EmptyRepos are repositories left with nothing (PruneEmptyRepos).
	EmptyRepos []string
	// Kept manifests gc did not understand.
	Kept []KeptManifest

	opts  Options
	start time.Time
	repos []string
	// links are the _layers links nothing kept in their repository needs,
	// per repository.
	links []repoLinks
	// blobs are the blob-store entries nothing kept anywhere needs, with
	// the repository their bytes are attributed to.
	blobs deadBlobs
	// live are the blobs (and manifests) the mark keeps, by id (ids); a
	// blob a crashed run left in the quarantine is restored if it is here.
	live idBits
	// ids name the digests of links and live (nil for a plan built by
	// hand).
	ids *idTable
	// keptAsBase are manifests kept only as the base of live images.
	keptAsBase []BlobRef
	// spared is what the grace kept (grace.go).
	spared spared
	// storage is what the storage holds, for the guards (guard.go).
	storage storageSize
}

// TagRef is a tag in a repository.
type TagRef struct {
	Repository string `json:"repository"`
	Tag        string `json:"tag"`
}

// BlobRef is a digest in a repository.
type BlobRef struct {
	Repository string
	Digest     digest.Digest
}

// ManifestDeletion is a manifest revision and the tag-history entries that
// name it.
type ManifestDeletion struct {
	Repository string
	Digest     digest.Digest
	// HistoryTags are the tags whose index holds this digest.
	HistoryTags []string
}

// BlobDeletion is a blob and the size of its data.
type BlobDeletion struct {
	Digest digest.Digest
	Size   int64
}

// repoLinks are the layer links to delete in one repository (an index in
// Plan.repos): 4 bytes a link (its id, in the order of the digests), each
// slice made at its length as the repository's part of the plan is made;
// paths are made when deleted.
type repoLinks struct {
	repo int32
	ids  []uint32
}

// linkCount is the number of layer links the plan deletes.
func (p *Plan) linkCount() int {
	n := 0
	for _, l := range p.links {
		n += len(l.ids)
	}
	return n
}

// linkChunks gives the layer links the plan deletes to fn, at most n at a
// time, in order.
func (p *Plan) linkChunks(n int, fn func([]BlobRef) error) error {
	chunk := make([]BlobRef, 0, n)
	for _, l := range p.links {
		for _, id := range l.ids {
			chunk = append(chunk, BlobRef{p.repos[l.repo], p.ids.digest(id)})
			if len(chunk) == n {
				if err := fn(chunk); err != nil {
					return err
				}
				chunk = chunk[:0]
			}
		}
	}
	if len(chunk) == 0 {
		return nil
	}
	return fn(chunk)
}

// deadBlobs are the blobs a plan deletes, as marks on the blob store's
// listing (which the plan keeps): 4 bytes a listed blob.
type deadBlobs struct {
	list blobList
	// state has one entry per listed blob, in the order of list.each:
	// keptBlob, noOwner, or the index in Plan.repos of the repository its
	// bytes are attributed to (the first by name of those whose deleted
	// manifests or layer links name it).
	state []int32
	// n are the blobs to delete.
	n     int
	index func(sum256) int
}

const (
	keptBlob = -2
	noOwner  = -1
)

// newDeadBlobs starts with every listed blob kept.
func newDeadBlobs(list blobList) deadBlobs {
	b := deadBlobs{list: list, state: make([]int32, list.len()), index: list.index()}
	for i := range b.state {
		b.state[i] = keptBlob
	}
	return b
}

// each calls fn for every blob to delete, in the listing's order.
func (b *deadBlobs) each(fn func(bi *blobInfo, owner int32)) {
	i := 0
	b.list.each(func(bi *blobInfo) {
		if st := b.state[i]; st != keptBlob {
			fn(bi, st)
		}
		i++
	})
}

// claim attributes s's bytes, if the plan deletes s, to repos[repo] when
// no repository earlier by name claimed them.
func (b *deadBlobs) claim(s sum256, repo int32, repos []string) {
	i := -1
	if b.index != nil {
		i = b.index(s)
	}
	b.claimAt(i, repo, repos)
}

// claimAt is claim for the blob at place i of the listing (none for -1).
func (b *deadBlobs) claimAt(i int, repo int32, repos []string) {
	if i < 0 || b.state[i] == keptBlob {
		return
	}
	if o := b.state[i]; o == noOwner || repos[repo] < repos[o] {
		b.state[i] = repo
	}
}

// claimID is claim for an id: only a listed one can be deleted.
func (b *deadBlobs) claimID(ids *idTable, id uint32, repo int32, repos []string) {
	if id < ids.n {
		b.claimAt(int(id), repo, repos)
	}
}

// isLive says whether the mark keeps dg.
func (p *Plan) isLive(dg digest.Digest) bool {
	if p.ids == nil {
		return false
	}
	id, ok := p.ids.lookupDigest(dg)
	return ok && p.live.has(id)
}

// owner is the repository dg's bytes are attributed to.
func (p *Plan) owner(dg digest.Digest) (string, bool) {
	s, ok := sumOf(dg)
	if !ok || p.blobs.index == nil {
		return "", false
	}
	i := p.blobs.index(s)
	if i < 0 || p.blobs.state[i] < 0 {
		return "", false
	}
	return p.repos[p.blobs.state[i]], true
}

// blobCount is the number of blobs the plan deletes.
func (p *Plan) blobCount() int { return len(p.Blobs) + p.blobs.n }

// eachBlobSize calls fn with the size and the owner ("" for none) of every
// blob the plan deletes.
func (p *Plan) eachBlobSize(fn func(size int64, owner string)) {
	for _, b := range p.Blobs {
		fn(b.Size, "")
	}
	p.blobs.each(func(bi *blobInfo, owner int32) {
		o := ""
		if owner >= 0 {
			o = p.repos[owner]
		}
		fn(bi.size, o)
	})
}

// blobChunks gives the blobs the plan deletes to fn, at most n at a time:
// their digests are spelled out a chunk at a time, not all at once.
func (p *Plan) blobChunks(n int, fn func([]BlobDeletion) error) error {
	chunk := make([]BlobDeletion, 0, n)
	flush := func() error {
		if len(chunk) == 0 {
			return nil
		}
		err := fn(chunk)
		chunk = chunk[:0]
		return err
	}
	for _, b := range p.Blobs {
		if chunk = append(chunk, b); len(chunk) == n {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	var err error
	p.blobs.each(func(bi *blobInfo, _ int32) {
		if err != nil {
			return
		}
		if chunk = append(chunk, BlobDeletion{Digest: bi.s.digest(), Size: bi.size}); len(chunk) == n {
			err = flush()
		}
	})
	if err != nil {
		return err
	}
	return flush()
}

// UploadRef is an upload directory.
type UploadRef struct{ Repository, ID string }

// Report is what the plan would do, as a dry run's report.
func (p *Plan) Report() *Report {
	r := &Report{DryRun: true, Kept: p.Kept, UploadsDeleted: len(p.Uploads), LayerLinksDeleted: p.linkCount(),
		TagsDeleted: len(p.Tags), RepositoriesDeleted: p.EmptyRepos}
	acc := newAccount(p.owner)
	for _, m := range p.Manifests {
		acc.manifest(m.Repository)
	}
	p.eachBlobSize(acc.add)
	acc.fill(r)
	r.DurationSeconds = p.opts.Now().Sub(p.start).Seconds()
	p.annotate(r)
	p.share(r)
	return r
}

// share puts into r what the storage held and the share of its bytes the
// plan deletes, with the run's limit.
func (p *Plan) share(r *Report) {
	if r == nil {
		return
	}
	r.BytesStored, r.DeleteRatio, r.MaxDeleteRatio = p.storage.bytes, p.deleteRatio(), p.opts.maxDeleteRatio()
	r.OrphanSignatureTags = append([]TagRef{}, p.Tags...)
	if r.RepositoriesDeleted == nil {
		r.RepositoriesDeleted = []string{}
	}
}

// deleteRatio is the share of the stored bytes the plan deletes.
func (p *Plan) deleteRatio() float64 {
	if p.storage.bytes == 0 {
		return 0
	}
	return float64(p.blobBytes()) / float64(p.storage.bytes)
}

// blobBytes is the size of the blobs the plan deletes.
func (p *Plan) blobBytes() int64 {
	var bytes int64
	p.eachBlobSize(func(size int64, _ string) { bytes += size })
	return bytes
}

// account sums deletions per repository.
type account struct {
	owner     func(digest.Digest) (string, bool)
	repos     map[string]*RepoReport
	manifests int
	blobs     int
	bytes     int64
}

func newAccount(owner func(digest.Digest) (string, bool)) *account {
	return &account{owner: owner, repos: map[string]*RepoReport{}}
}

func (a *account) repo(name string) *RepoReport {
	r := a.repos[name]
	if r == nil {
		r = &RepoReport{Name: name}
		a.repos[name] = r
	}
	return r
}

func (a *account) manifest(repo string) { a.manifests++; a.repo(repo).ManifestsDeleted++ }

func (a *account) blob(b BlobDeletion) {
	o, _ := a.owner(b.Digest)
	a.add(b.Size, o)
}

// add counts a deleted blob of size bytes attributed to owner ("": none).
func (a *account) add(size int64, owner string) {
	a.blobs++
	a.bytes += size
	if owner != "" {
		a.repo(owner).BytesReclaimed += size
	}
}

func (a *account) fill(r *Report) {
	r.ManifestsDeleted, r.BlobsDeleted, r.BytesReclaimed = a.manifests, a.blobs, a.bytes
	r.Repositories = []RepoReport{}
	for _, rr := range a.repos {
		r.Repositories = append(r.Repositories, *rr)
	}
	sort.Slice(r.Repositories, func(i, j int) bool { return r.Repositories[i].Name < r.Repositories[j].Name })
}
