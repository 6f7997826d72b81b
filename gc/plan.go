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
	// LayerLinks are _layers links nothing kept in the repository needs.
	LayerLinks []BlobRef
	// Blobs are blob-store entries nothing kept anywhere needs.
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
	// owner attributes a blob's bytes to a repository.
	owner map[digest.Digest]string
	// live are the blobs (and manifests) the mark keeps; a blob a crashed
	// run left in the quarantine is restored if it is here.
	live map[digest.Digest]bool
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

// UploadRef is an upload directory.
type UploadRef struct{ Repository, ID string }

// Report is what the plan would do, as a dry run's report.
func (p *Plan) Report() *Report {
	r := &Report{DryRun: true, Kept: p.Kept, UploadsDeleted: len(p.Uploads), LayerLinksDeleted: len(p.LayerLinks),
		TagsDeleted: len(p.Tags), RepositoriesDeleted: p.EmptyRepos}
	acc := newAccount(p.owner)
	for _, m := range p.Manifests {
		acc.manifest(m.Repository)
	}
	for _, b := range p.Blobs {
		acc.blob(b)
	}
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
	var bytes int64
	for _, b := range p.Blobs {
		bytes += b.Size
	}
	return float64(bytes) / float64(p.storage.bytes)
}

// account sums deletions per repository.
type account struct {
	owner     map[digest.Digest]string
	repos     map[string]*RepoReport
	manifests int
	blobs     int
	bytes     int64
}

func newAccount(owner map[digest.Digest]string) *account {
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
	a.blobs++
	a.bytes += b.Size
	if o, ok := a.owner[b.Digest]; ok {
		a.repo(o).BytesReclaimed += b.Size
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
