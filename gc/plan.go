// The plan: what a run deletes, in order, and its report.

package gc

import (
	"fmt"
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
	// spared is what the grace kept; keptAsBase the manifests kept as
	// bases of live images.
	spared     Spared
	keptAsBase int
	// The storage as read: blobs and their bytes, tags.
	storeBlobs int
	storeBytes int64
	storeTags  int
	repos      []string
	// owner attributes a blob's bytes to a repository.
	owner map[digest.Digest]string
	// live are the blobs (and manifests) the mark keeps; a blob a crashed
	// run left in the quarantine is restored if it is here.
	live map[digest.Digest]bool
}

// TagRef is a tag in a repository.
type TagRef struct{ Repository, Tag string }

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
	r.SparedByGrace, r.KeptAsBase = p.spared, p.keptAsBase
	r.DurationSeconds = p.opts.Now().Sub(p.start).Seconds()
	return r
}

// guard refuses a plan that looks like a wrong root, unless AllowDeleteAll
// says it is on purpose: every blob deleted, or blobs but no tag at all.
// It also refuses more than MaxDeleteRatio of the blob bytes.
func (p *Plan) guard() error {
	var bytes int64
	for _, b := range p.Blobs {
		bytes += b.Size
	}
	how := "--allow-delete-all if that is on purpose"
	switch {
	case p.opts.AllowDeleteAll || p.storeBlobs == 0:
	case p.storeTags == 0:
		return fmt.Errorf("%w: the storage holds %d blobs (%d bytes) but no tag in its %d repositories; is this the registry's root? (%s)",
			ErrRefused, p.storeBlobs, p.storeBytes, len(p.repos), how)
	case len(p.Blobs) == p.storeBlobs:
		return fmt.Errorf("%w: the plan deletes every blob (%d, %d bytes) while %d tags remain (%s)", ErrRefused, p.storeBlobs, p.storeBytes, p.storeTags, how)
	}
	if r := p.opts.MaxDeleteRatio; r > 0 && p.storeBytes > 0 && float64(bytes) > r*float64(p.storeBytes) {
		return fmt.Errorf("%w: the plan deletes %d of %d blob bytes (%.1f%%), more than --max-delete-ratio %g", ErrRefused, bytes, p.storeBytes,
			100*float64(bytes)/float64(p.storeBytes), r)
	}
	return nil
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
