// Package backup copies the images of a registry into one OCI image layout
// (a shared, content-addressed blob store with an index.json naming every
// image by repository and tag), restores such a layout (or one written by
// crane, skopeo, regctl or oras) to a registry digest for digest, and
// verifies it.
//
// Backups are incremental (an unchanged tag costs one HEAD request and no
// transfer), resumable (blobs are written to temporary files, checked and
// renamed; index.json is written last and atomically, so a killed run is
// finished by running it again) and complete: the children of multi-arch
// indexes, cosign signature tags, referrers fallback tags, and referrers
// found through the referrers API where the registry has one, and their
// referrers in turn (referrers.go). Restore maintains the referrers
// fallback tags on a registry without the API (referrers_tag.go) and
// places the entries of any layout by the names it gives (place.go).
package backup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/regkeeper/regkeeper/internal/client"
	"github.com/regkeeper/regkeeper/internal/progress"
	"github.com/regkeeper/regkeeper/internal/walk"
)

// Options for Run. Start from DefaultOptions.
type Options struct {
	Client client.Options
	// Repo and Tag select repositories and tags by regular expression; nil
	// selects all. With Referrers, the signature (sha256-<hex>.sig, .att,
	// .sbom) and referrers fallback (sha256-<hex>) tags of the selected
	// images are selected too.
	Repo, Tag *regexp.Regexp
	// Referrers (default true) backs up referrers found through the
	// referrers API, when the registry has one. Without the API, referrers
	// are reachable only through their fallback tags, which are ordinary
	// tags and backed up as such.
	Referrers bool
	// ReferrersDepth limits how deep referrers of referrers are followed
	// (through the API, and through the signature and fallback tags a tag
	// filter brings along): 1 is the referrers of the images themselves
	// only. Zero or less means DefaultReferrersDepth.
	ReferrersDepth int
	// KeepHistory keeps the previous entry of a tag that moved, under the
	// name repo:tag@<time it was first backed up>.
	KeepHistory bool
	// Checkpoint is how often index.json is saved during a run (entries
	// complete so far), so that a killed run loses little bookkeeping.
	// Default 30s.
	Checkpoint time.Duration
	// Progress draws a bar of the bytes this run writes (blobs the backup
	// already has are not counted), its total growing as manifests are
	// read, with the images done so far in its label; nil draws nothing.
	Progress *progress.Reporter
	// Logger receives warnings (absent children) and notices; nil discards.
	Logger *slog.Logger
	// Now stamps new entries and the run's snapshot; zero means time.Now.
	Now time.Time
	// TagDone, when set, is called after each selected tag is backed up
	// or found unchanged (from several goroutines at once).
	TagDone func(repo, tag string)
	// Source is the registry's own storage (gc.Open of its config). When
	// it and the backup are S3 buckets of one endpoint (CopyObject,
	// UploadPartCopy above 5 GiB) or Azure containers of one storage
	// account (Copy Blob), blobs are copied inside the store instead of
	// pulled through this machine; manifests are still fetched and
	// checked.
	Source storagedriver.StorageDriver
}

// DefaultOptions returns the defaults: referrers on, followed
// DefaultReferrersDepth deep; 30s checkpoints.
func DefaultOptions() Options {
	return Options{Referrers: true, ReferrersDepth: DefaultReferrersDepth, Checkpoint: 30 * time.Second}
}

// Result is the summary of a backup; the JSON field names are a contract
// (the README).
type Result struct {
	// Images is the number of tags in the backup after the run, of those
	// selected.
	Images int `json:"images"`
	// BlobsWritten and BytesWritten count the blobs (manifests, configs,
	// layers) this run added to DIR.
	BlobsWritten int   `json:"blobsWritten"`
	BytesWritten int64 `json:"bytesWritten"`
	// BlobsSkipped and BytesSkipped count the distinct blobs of the selected
	// images that DIR already had.
	BlobsSkipped int   `json:"blobsSkipped"`
	BytesSkipped int64 `json:"bytesSkipped"`
	// BlobsCopiedInStore and BytesCopiedInStore count the blobs of
	// BlobsWritten copied inside the object store (Options.Source), not
	// through this machine.
	BlobsCopiedInStore int   `json:"blobsCopiedInStore"`
	BytesCopiedInStore int64 `json:"bytesCopiedInStore"`
	// Unchanged tags cost one HEAD request; Added tags were not in the
	// backup; Updated tags moved to another digest.
	Unchanged int `json:"unchanged"`
	Added     int `json:"added"`
	Updated   int `json:"updated"`
	// Referrers recorded by this run through the referrers API.
	Referrers int `json:"referrers"`
	// ReferrersAPI: whether the registry answered the referrers API.
	ReferrersAPI bool `json:"referrersAPI"`
	// Absent are the children of the selected indexes that the registry
	// did not have in the index's repository when the index was backed up;
	// they are recorded in index.json, not backed up.
	Absent []Absent `json:"absent"`
	// Problems are what is broken in the registry (internal/walk): the
	// indexes with absent children, tags whose manifest or blobs the
	// registry does not have, manifests that do not parse. They are not
	// backed up and do not fail the run.
	Problems []walk.Problem `json:"problems"`
	// Errors are what could not be read or written: the run failed there.
	Errors          []Error `json:"errors"`
	DurationSeconds float64 `json:"durationSeconds"`
	// Snapshot is the ID of this run's record in the backup; Complete
	// whether the run finished with every selected tag backed up.
	Snapshot string `json:"snapshot"`
	Complete bool   `json:"complete"`

	// Selection counts what --repo and --tag selected.
	Selection walk.Selection `json:"selection"`
}

// Absent is an index child missing from the index's repository.
type Absent struct {
	Repository string `json:"repository"`
	Index      string `json:"index"`
	Child      string `json:"child"`
}

// Run backs up the registry at host into the layout at dir, creating it if
// dir does not exist or is empty. Failures of single repositories or tags
// are in Result.Errors and do not stop the run; an error is returned only
// when nothing could be done (bad directory, registry unreachable) or ctx
// ends, and then index.json still records every image completed.
func Run(ctx context.Context, host, dir string, opts Options) (*Result, error) {
	return RunLayout(ctx, host, Layout{Root: dir}, opts)
}

// RunLayout is Run into a layout anywhere (OpenTarget).
func RunLayout(ctx context.Context, host string, l Layout, opts Options) (*Result, error) {
	start := time.Now()
	reg, err := opts.Client.Registry(host)
	if err != nil {
		return nil, err
	}
	if err := l.Init(); err != nil {
		return nil, err
	}
	unlock, err := l.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := l.removeTemp(); err != nil {
		return nil, fmt.Errorf("removing temporary files of an earlier run: %w", err)
	}
	idx, err := l.readIndex()
	if err != nil {
		return nil, err
	}
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	opts.Now = now
	// The run's record, written first as "running": a run killed outright
	// leaves it so, and verify says the last run did not finish.
	snap, err := l.newSnapshot(now, reg.RegistryStr())
	if err != nil {
		return nil, err
	}
	if opts.Repo != nil {
		snap.RepoFilter = opts.Repo.String()
	}
	if opts.Tag != nil {
		snap.TagFilter = opts.Tag.String()
	}
	if err := l.writeSnapshot(snap); err != nil {
		return nil, err
	}
	r, err := newRunner(ctx, reg, l, idx, opts)
	if err == nil {
		defer r.bar.Done()
		err = r.run(ctx)
		// Whatever happened, record what was completed.
		if werr := idx.write(l); werr != nil && err == nil {
			err = werr
		}
	}
	var res *Result
	if r != nil {
		res = r.result()
	} else {
		res = &Result{Absent: []Absent{}, Problems: []walk.Problem{}, Errors: []Error{}}
	}
	res.DurationSeconds = time.Since(start).Seconds()
	if err != nil && ctx.Err() == nil {
		// A run that could not do its job says so in its JSON too, not
		// only on stderr: no "errors": [] beside 0 images.
		res.Errors = append(res.Errors, Error{Error: describe(err)})
	}
	// The record of the run, last.
	switch {
	case ctx.Err() != nil:
		snap.Status, snap.Reason = SnapshotIncomplete, "interrupted"
	case err != nil:
		snap.Status, snap.Reason = SnapshotIncomplete, "failed: "+describe(err)
	case len(res.Errors) > 0:
		snap.Status, snap.Reason = SnapshotIncomplete, fmt.Sprintf("%d of the selected repositories or tags could not be backed up (first: %s)", len(res.Errors), res.Errors[0].Error)
	default:
		snap.Status = SnapshotComplete
	}
	if r != nil {
		snap.Manifests = r.snapshotManifests()
	}
	if werr := l.writeSnapshot(snap); werr != nil {
		res.Errors = append(res.Errors, Error{Error: describe(werr)})
		if err == nil {
			err = werr
		}
		snap.Status = SnapshotIncomplete
	}
	res.Snapshot, res.Complete = snap.ID, snap.Complete()
	return res, err
}

type runner struct {
	copier storeCopier // nil: blobs are pulled
	opts   Options
	reg    name.Registry
	layout Layout
	idx    *index
	walker *walk.Walker
	puller *remote.Puller
	// refOpts list referrers through the API only: fallback tags are
	// ordinary tags, backed up as such.
	refOpts []remote.Option
	log     *slog.Logger
	now     time.Time
	bar     *progress.Bar
	jobs    int

	blobSem   chan struct{}
	blobs     flight[struct{}]
	manifests flight[[]v1.Hash]

	refOnce sync.Once
	// checkOnce: the warning that store-side copies fall back to pulls.
	checkOnce sync.Once
	refAPI    bool
	listed    map[string]bool // repo@subject whose referrers were listed; under mu

	mu        sync.Mutex
	res       Result
	counted   map[v1.Hash]bool // blobs counted as written or skipped
	complete  map[v1.Hash]bool // manifests found complete in the layout
	good      map[v1.Hash]bool // blobs found present and whole in the layout
	damaged   map[v1.Hash]bool // blobs found present but damaged, until written again
	lastSaved time.Time
	planned   map[v1.Hash]bool // blobs added to the bar's total
	tagsTotal int              // tags to back up, for the bar's label
	tagsDone  int
	// snap holds the entries this run backed up, for its snapshot: by
	// repo:tag, and repo@digest for referrers.
	snap map[string]v1.Descriptor
}

func newRunner(ctx context.Context, reg name.Registry, l Layout, idx *index, opts Options) (*runner, error) {
	ropts := opts.Client.Remote(ctx)
	w, err := walk.New(ctx, reg.RegistryStr(), walk.Options{Client: opts.Client, Repo: opts.Repo, Tag: opts.Tag, Logger: opts.Logger})
	if err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	if opts.Checkpoint <= 0 {
		opts.Checkpoint = 30 * time.Second
	}
	rp, err := remote.NewPuller(append(ropts, remote.WithReferrersTagFallback(false))...)
	if err != nil {
		return nil, err
	}
	jobs := opts.Client.JobCount()
	copier, why := newStoreCopier(opts.Source, l)
	if why != "" {
		log.Warn("blobs are pulled through this machine: "+why, "backup", l.String())
	}
	return &runner{copier: copier, opts: opts, reg: reg, layout: l.withContext(ctx), idx: idx, walker: w, puller: w.Puller(), refOpts: append(ropts, remote.Reuse(rp)),
		log: log, now: now, bar: opts.Progress.Growing("backup"), jobs: jobs, planned: map[v1.Hash]bool{},
		blobSem: make(chan struct{}, jobs), counted: map[v1.Hash]bool{}, complete: map[v1.Hash]bool{},
		good: map[v1.Hash]bool{}, damaged: map[v1.Hash]bool{}, snap: map[string]v1.Descriptor{}, lastSaved: time.Now()}, nil
}

// target is one tag to back up.
type target struct {
	repo, tag string
}

func (r *runner) run(ctx context.Context) error {
	// Listing only: an unchanged tag then costs one HEAD, no config read.
	l, err := r.walker.List(ctx)
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.res.Selection = l.Selection
	r.mu.Unlock()
	for _, e := range l.Errors {
		r.addError(Error{Repository: e.Repository, Error: e.Error})
	}
	var selected []target
	for _, ref := range l.Refs() {
		selected = append(selected, target{ref.Repository, ref.Tag})
	}
	digests := r.backupAll(ctx, selected)
	if err := ctx.Err(); err != nil {
		return err
	}
	// With a tag filter, the signature and fallback tags of what was
	// selected are not selected by name: add them.
	if r.opts.Tag != nil && r.opts.Referrers {
		r.backupAttached(ctx, l, digests)
	}
	return ctx.Err()
}

// attachedTo returns the digest hex a sha256-<hex>[.suffix] tag is attached
// to (cosign signatures, attestations and SBOMs; referrers fallback tags).
func attachedTo(tag string) (string, bool) {
	rest, ok := strings.CutPrefix(tag, "sha256-")
	if !ok {
		return "", false
	}
	hex, _, _ := strings.Cut(rest, ".")
	if len(hex) != 64 {
		return "", false
	}
	return hex, true
}

// backupAll backs up targets, jobs at a time, and returns the manifest
// digests (hex) backed up per repository.
func (r *runner) backupAll(ctx context.Context, targets []target) map[string]map[string]bool {
	digests := map[string]map[string]bool{}
	var mu sync.Mutex
	r.tagsMore(len(targets), 0)
	forEach(ctx, r.jobs, targets, func(t target) {
		defer r.tagsMore(0, 1)
		ds, err := r.backupTag(ctx, t)
		var pe *problemError
		switch {
		case err != nil && errors.As(err, &pe):
			r.addProblem(walk.Problem{Repository: t.repo, Tag: t.tag, Digest: pe.digest, Kind: pe.kind, Message: client.Describe(err) + "; not backed up"})
			return
		case err != nil:
			if ctx.Err() == nil {
				r.addError(Error{Repository: t.repo, Tag: t.tag, Error: describe(err)})
			}
			return
		}
		if desc, ok := r.idx.tag(t.repo, t.tag); ok {
			r.record(t.repo+":"+t.tag, desc)
		}
		if r.opts.TagDone != nil {
			r.opts.TagDone(t.repo, t.tag)
		}
		mu.Lock()
		if digests[t.repo] == nil {
			digests[t.repo] = map[string]bool{}
		}
		for _, d := range ds {
			digests[t.repo][d.Hex] = true
		}
		mu.Unlock()
		r.checkpoint()
	})
	return digests
}

// tagsMore counts tags to do and done, and shows them on the bar.
func (r *runner) tagsMore(todo, done int) {
	if r.bar == nil {
		return
	}
	r.mu.Lock()
	r.tagsTotal += todo
	r.tagsDone += done
	label := fmt.Sprintf("backup %d/%d images", r.tagsDone, r.tagsTotal)
	r.mu.Unlock()
	r.bar.Describe(label)
}

// plan adds a blob this run is about to write to the bar's total, once.
func (r *runner) plan(d v1.Hash, size int64) {
	if r.bar == nil {
		return
	}
	r.mu.Lock()
	first := !r.planned[d]
	r.planned[d] = true
	r.mu.Unlock()
	if first {
		r.bar.Grow(size)
	}
}

// checkpoint saves index.json when the last save is older than the
// checkpoint interval.
func (r *runner) checkpoint() {
	r.mu.Lock()
	due := time.Since(r.lastSaved) >= r.opts.Checkpoint
	if due {
		r.lastSaved = time.Now()
	}
	r.mu.Unlock()
	if due {
		if err := r.idx.write(r.layout); err != nil {
			r.log.Warn("saving index.json checkpoint", "error", err)
		}
	}
}

// backupTag backs up one tag and returns the digests it covers (the
// manifest and, for an index, its children).
func (r *runner) backupTag(ctx context.Context, t target) ([]v1.Hash, error) {
	repo := r.reg.Repo(t.repo)
	ref := repo.Tag(t.tag)
	var getRef name.Reference = ref
	prev, existed := r.idx.tag(t.repo, t.tag)
	if existed {
		head, err := r.puller.Head(ctx, ref)
		if err != nil {
			return nil, tagError(ref, err)
		}
		if head.Digest == prev.Digest && r.isComplete(prev.Digest, Entry{prev}.Absent()) {
			r.mu.Lock()
			r.res.Unchanged++
			r.mu.Unlock()
			ds := r.coveredDigests(prev.Digest)
			if err := r.backupReferrers(ctx, repo, ds); err != nil {
				return nil, err
			}
			return ds, nil
		}
		getRef = repo.Digest(head.Digest.String())
	}
	got, err := r.puller.Get(ctx, getRef)
	if err != nil {
		return nil, tagError(ref, err)
	}
	desc := got.Descriptor
	absent, err := r.copyManifest(ctx, repo, desc, got.Manifest)
	if err != nil {
		return nil, err
	}
	ds := r.coveredDigests(desc.Digest)
	if err := r.backupReferrers(ctx, repo, ds); err != nil {
		return nil, err
	}
	r.idx.setTag(t.repo, t.tag, desc, absent, r.now, r.opts.KeepHistory)
	r.mu.Lock()
	if existed && prev.Digest != desc.Digest {
		r.res.Updated++
	} else if existed {
		r.res.Unchanged++ // same digest, made whole again
	} else {
		r.res.Added++
	}
	r.mu.Unlock()
	return ds, nil
}

// coveredDigests is d and, when d is an index in the layout, its children.
func (r *runner) coveredDigests(d v1.Hash) []v1.Hash {
	out := []v1.Hash{d}
	raw, err := r.layout.ReadBlob(d)
	if err != nil {
		return out
	}
	rf, err := parseRefs("", raw)
	if err != nil {
		return out
	}
	for _, c := range rf.Children {
		out = append(out, c.Digest)
	}
	return out
}

// copyManifest copies a manifest of repo and everything it references into
// the layout: children and blobs first, the manifest itself last. raw may
// be nil (fetched, or read from the layout). It returns the children the
// registry does not have in repo.
func (r *runner) copyManifest(ctx context.Context, repo name.Repository, desc v1.Descriptor, raw []byte) ([]v1.Hash, error) {
	key := repo.RepositoryStr() + "@" + desc.Digest.String()
	return r.manifests.do(key, func() ([]v1.Hash, error) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if raw == nil {
			var err error
			if raw, err = r.fetchManifest(ctx, repo, desc); err != nil {
				if isNotFound(err) {
					return nil, &notFoundError{digest: desc.Digest, err: err}
				}
				return nil, err
			}
		}
		rf, err := parseRefs(desc.MediaType, raw)
		if err != nil {
			return nil, &problemError{kind: walk.KindManifestCorrupt, digest: desc.Digest.String(),
				err: fmt.Errorf("manifest %s in %s does not parse: %w", desc.Digest, repo.RepositoryStr(), err)}
		}
		var absent []v1.Hash
		for _, child := range rf.Children {
			ca, err := r.copyManifest(ctx, repo, child, nil)
			var nf *notFoundError
			if errors.As(err, &nf) && nf.digest == child.Digest {
				// Reported once, among the problems of the result; logged only with -v.
				r.log.Info("index child absent from its repository; recorded, not backed up",
					"repository", repo.RepositoryStr(), "index", desc.Digest.String(), "child", child.Digest.String())
				absent = append(absent, child.Digest)
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("child %s of %s: %w", child.Digest, desc.Digest, err)
			}
			absent = append(absent, ca...)
		}
		if err := r.copyBlobs(ctx, repo, rf.Blobs); err != nil {
			return nil, err
		}
		if err := r.writeManifest(desc, raw); err != nil {
			return nil, err
		}
		return absent, nil
	})
}

// fetchManifest returns a manifest's bytes: from the layout when it is
// there (after a HEAD confirms the repository has it), else from the
// registry.
func (r *runner) fetchManifest(ctx context.Context, repo name.Repository, desc v1.Descriptor) ([]byte, error) {
	ref := repo.Digest(desc.Digest.String())
	if r.hasBlob(desc.Digest, desc.Size) {
		if _, err := r.puller.Head(ctx, ref); err != nil {
			return nil, err
		}
		if raw, err := r.layout.ReadBlob(desc.Digest); err == nil {
			return raw, nil
		}
	}
	got, err := r.puller.Get(ctx, ref)
	if err != nil {
		return nil, err
	}
	return got.Manifest, nil
}

func (r *runner) writeManifest(desc v1.Descriptor, raw []byte) error {
	if r.hasBlob(desc.Digest, int64(len(raw))) {
		r.countSkipped(desc.Digest, int64(len(raw)))
		return nil
	}
	r.plan(desc.Digest, int64(len(raw)))
	return r.blobs.doErr(desc.Digest.String(), func() error {
		if r.hasBlob(desc.Digest, int64(len(raw))) {
			return nil
		}
		if err := r.layout.WriteBlob(desc.Digest, int64(len(raw)), bytes.NewReader(raw), r.bar.Add); err != nil {
			return err
		}
		r.countWritten(desc.Digest, int64(len(raw)))
		r.markGood(desc.Digest)
		return nil
	})
}

// copyBlobs fetches the blobs the layout lacks, concurrently.
func (r *runner) copyBlobs(ctx context.Context, repo name.Repository, blobs []v1.Descriptor) error {
	var wg sync.WaitGroup
	errs := make([]error, len(blobs))
	for i, b := range blobs {
		if !distributable(b) {
			r.log.Info("non-distributable layer not backed up", "repository", repo.RepositoryStr(), "digest", b.Digest.String())
			continue
		}
		if r.hasBlob(b.Digest, b.Size) {
			r.countSkipped(b.Digest, b.Size)
			continue
		}
		r.plan(b.Digest, b.Size)
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case r.blobSem <- struct{}{}:
			case <-ctx.Done():
				errs[i] = ctx.Err()
				return
			}
			defer func() { <-r.blobSem }()
			errs[i] = r.blobs.doErr(b.Digest.String(), func() error { return r.copyBlob(ctx, repo, b) })
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (r *runner) copyBlob(ctx context.Context, repo name.Repository, b v1.Descriptor) error {
	if r.hasBlob(b.Digest, b.Size) {
		r.countSkipped(b.Digest, b.Size)
		return nil
	}
	if r.copier != nil {
		ok, err := r.copier.copy(ctx, b.Digest, b.Size, r.layout.Blob(b.Digest))
		if errors.Is(err, errSourceChanged) {
			r.log.Info("blob replaced or deleted in the registry's storage since it was checked: pulled instead of copied in the store",
				"repository", repo.RepositoryStr(), "digest", b.Digest.String(), "error", err)
			err = nil
		}
		if errors.Is(err, errCheckFailed) {
			// Said once a run (a refused credential refuses every blob),
			// then per blob at debug.
			r.checkOnce.Do(func() {
				r.log.Warn("store-side copy: the registry's blobs cannot be read in its storage with the backup's credentials; blobs are pulled through this machine", "error", err)
			})
			r.log.Debug("blob pulled: its check in the registry's storage failed", "digest", b.Digest.String(), "error", err)
			err = nil
		}
		if err != nil {
			return fmt.Errorf("blob %s in %s: %w", b.Digest, repo.RepositoryStr(), err)
		}
		if ok {
			r.countWritten(b.Digest, b.Size)
			r.mu.Lock()
			r.res.BlobsCopiedInStore++
			r.res.BytesCopiedInStore += b.Size
			r.mu.Unlock()
			r.bar.Add(b.Size)
			r.markGood(b.Digest)
			return nil
		}
	}
	layer, err := r.puller.Layer(ctx, repo.Digest(b.Digest.String()))
	if isNotFound(err) {
		return &problemError{kind: KindBlobMissing, digest: b.Digest.String(),
			err: fmt.Errorf("blob %s is not in %s: %w", b.Digest, repo.RepositoryStr(), err)}
	}
	if err != nil {
		return fmt.Errorf("blob %s in %s: %w", b.Digest, repo.RepositoryStr(), err)
	}
	rc, err := layer.Compressed()
	if err != nil {
		return fmt.Errorf("blob %s in %s: %w", b.Digest, repo.RepositoryStr(), err)
	}
	defer rc.Close()
	if err := r.layout.WriteBlob(b.Digest, b.Size, rc, r.bar.Add); err != nil {
		return fmt.Errorf("blob %s in %s: %w", b.Digest, repo.RepositoryStr(), err)
	}
	r.countWritten(b.Digest, b.Size)
	r.markGood(b.Digest)
	return nil
}

// markGood notes a blob just written, checked.
func (r *runner) markGood(d v1.Hash) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.good[d] = true
	delete(r.damaged, d)
}

// hasBlob reports whether the layout has blob d whole (layout.HasGoodBlob),
// once per run: a blob changed in place since it was verified is re-hashed,
// and fetched again when it is damaged.
func (r *runner) hasBlob(d v1.Hash, size int64) bool {
	r.mu.Lock()
	ok := r.good[d]
	r.mu.Unlock()
	if ok {
		return true
	}
	r.mu.Lock()
	damaged := r.damaged[d]
	r.mu.Unlock()
	if damaged {
		return false // until it is written again
	}
	if !r.layout.HasGoodBlob(d, size) {
		if r.layout.HasBlob(d, size) {
			r.mu.Lock()
			first := !r.damaged[d]
			r.damaged[d] = true
			r.mu.Unlock()
			if first {
				r.log.Warn("blob in the backup is damaged (its content does not hash to its name): fetching it again", "digest", d.String())
			}
		}
		return false
	}
	r.mu.Lock()
	r.good[d] = true
	r.mu.Unlock()
	return true
}

// record notes an entry of this run's snapshot.
func (r *runner) record(key string, desc v1.Descriptor) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.snap[key] = desc
}

// snapshotManifests are the entries this run backed up, in index.json
// order.
func (r *runner) snapshotManifests() []v1.Descriptor {
	r.mu.Lock()
	out := make([]v1.Descriptor, 0, len(r.snap))
	for _, d := range r.snap {
		out = append(out, d)
	}
	r.mu.Unlock()
	sortEntries(out)
	return out
}

// isComplete reports whether manifest d and everything it references
// (except the children in absent) are in the layout. Local only.
func (r *runner) isComplete(d v1.Hash, absent map[v1.Hash]bool) bool {
	r.mu.Lock()
	done := r.complete[d]
	r.mu.Unlock()
	if done && len(absent) == 0 {
		return true
	}
	raw, err := r.layout.ReadBlob(d)
	if err != nil {
		return false
	}
	rf, err := parseRefs("", raw)
	if err != nil {
		return false
	}
	for _, c := range rf.Children {
		if !absent[c.Digest] && !r.isComplete(c.Digest, nil) {
			return false
		}
	}
	for _, b := range rf.Blobs {
		if !distributable(b) {
			continue
		}
		if !r.hasBlob(b.Digest, b.Size) {
			return false
		}
		r.countSkipped(b.Digest, b.Size)
	}
	r.countSkipped(d, int64(len(raw)))
	if len(absent) == 0 {
		r.mu.Lock()
		r.complete[d] = true
		r.mu.Unlock()
	}
	return true
}

// referrersAPI probes once whether the registry has the referrers API.
func (r *runner) referrersAPI(repo name.Repository) bool {
	r.refOnce.Do(func() {
		probe := repo.Digest("sha256:" + strings.Repeat("0", 64))
		_, err := remote.Referrers(probe, r.refOpts...)
		r.refAPI = err == nil
		if err != nil {
			r.log.Info("registry has no referrers API: referrers are backed up through their fallback tags (sha256-<hex>), and referrers pushed without one cannot be found", "registry", r.reg.RegistryStr())
		}
		r.mu.Lock()
		r.res.ReferrersAPI = r.refAPI
		r.mu.Unlock()
	})
	return r.refAPI
}

func (r *runner) countWritten(d v1.Hash, n int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.counted[d] {
		return
	}
	r.counted[d] = true
	r.res.BlobsWritten++
	r.res.BytesWritten += n
}

func (r *runner) countSkipped(d v1.Hash, n int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.counted[d] {
		return
	}
	r.counted[d] = true
	r.res.BlobsSkipped++
	r.res.BytesSkipped += n
}

func (r *runner) addProblem(p walk.Problem) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.res.Problems = append(r.res.Problems, p)
}

func (r *runner) addError(e Error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.res.Errors = append(r.res.Errors, e)
}

// result returns the summary, with Images counted from the index.
func (r *runner) result() *Result {
	r.mu.Lock()
	res := r.res
	r.mu.Unlock()
	// Images and Absent come from the index, so that an unchanged run
	// reports them as the run that fetched them did.
	res.Absent = []Absent{}
	seen := map[Absent]bool{}
	for _, e := range r.idx.snapshot() {
		if e.Kind() != KindTag {
			continue
		}
		if r.opts.Repo != nil && !r.opts.Repo.MatchString(e.Repository()) {
			continue
		}
		if r.opts.Tag != nil && !r.opts.Tag.MatchString(e.Tag()) {
			continue
		}
		res.Images++
		if absent := e.Absent(); len(absent) > 0 {
			var cs []string
			for c := range absent {
				cs = append(cs, c.String())
			}
			sort.Strings(cs)
			res.Problems = append(res.Problems, walk.Problem{Repository: e.Repository(), Tag: e.Tag(), Digest: e.Digest.String(),
				Kind: walk.KindChildrenAbsent, Message: fmt.Sprintf("index names %d platform manifests that are not in %s (an index copied without its children?); recorded in the backup, not backed up: %s",
					len(cs), e.Repository(), strings.Join(cs, ", "))})
		}
		for c := range e.Absent() {
			a := Absent{Repository: e.Repository(), Index: e.Digest.String(), Child: c.String()}
			if !seen[a] {
				seen[a] = true
				res.Absent = append(res.Absent, a)
			}
		}
	}
	sort.Slice(res.Absent, func(i, j int) bool {
		a, b := res.Absent[i], res.Absent[j]
		if a.Repository != b.Repository {
			return a.Repository < b.Repository
		}
		return a.Child < b.Child
	})
	if res.Problems == nil {
		res.Problems = []walk.Problem{}
	}
	walk.SortProblems(res.Problems)
	if res.Errors == nil {
		res.Errors = []Error{}
	}
	sort.Slice(res.Errors, func(i, j int) bool {
		a, b := res.Errors[i], res.Errors[j]
		if a.Repository != b.Repository {
			return a.Repository < b.Repository
		}
		return a.Tag < b.Tag
	})
	return &res
}

// KindBlobMissing: a blob a manifest references that its repository does
// not have.
const KindBlobMissing = "blob-missing"

// problemError is something broken in the registry that stops the backup
// of one tag: reported among the problems, not the errors.
type problemError struct {
	kind, digest string
	err          error
}

func (e *problemError) Error() string { return e.err.Error() }
func (e *problemError) Unwrap() error { return e.err }

// tagError wraps a failure to read a tag's manifest: a problem when the
// registry does not have it.
func tagError(ref name.Tag, err error) error {
	err = fmt.Errorf("reading %s: %w", ref, err)
	switch {
	case isNotFound(err):
		return &problemError{kind: walk.KindManifestMissing, err: err}
	case walk.StoredCorrupt(err):
		return &problemError{kind: walk.KindManifestCorrupt, err: err}
	}
	return err
}

// notFoundError is a manifest the registry does not have in a repository.
type notFoundError struct {
	digest v1.Hash
	err    error
}

func (e *notFoundError) Error() string { return fmt.Sprintf("manifest %s: %v", e.digest, e.err) }
func (e *notFoundError) Unwrap() error { return e.err }

// isNotFound reports a 404 from the registry.
func isNotFound(err error) bool {
	var terr *transport.Error
	return errors.As(err, &terr) && terr.StatusCode == http.StatusNotFound
}

// flight runs one function per key at a time and remembers successes, so
// that a blob or manifest shared by many images is fetched once per run.
// A failure is not remembered: the next caller tries again.
type flight[T any] struct {
	mu sync.Mutex
	m  map[string]*call[T]
}

type call[T any] struct {
	done chan struct{}
	val  T
	err  error
}

func (f *flight[T]) do(key string, fn func() (T, error)) (T, error) {
	for {
		f.mu.Lock()
		if f.m == nil {
			f.m = map[string]*call[T]{}
		}
		c, ok := f.m[key]
		if !ok {
			c = &call[T]{done: make(chan struct{})}
			f.m[key] = c
			f.mu.Unlock()
			c.val, c.err = fn()
			if c.err != nil {
				f.mu.Lock()
				delete(f.m, key)
				f.mu.Unlock()
			}
			close(c.done)
			return c.val, c.err
		}
		f.mu.Unlock()
		<-c.done
		if c.err == nil {
			return c.val, nil
		}
		// The other caller failed; try ourselves.
	}
}

func (f *flight[T]) doErr(key string, fn func() error) error {
	_, err := f.do(key, func() (T, error) {
		var zero T
		return zero, fn()
	})
	return err
}

// forEach calls fn for every item, jobs at a time, until ctx ends.
func forEach[T any](ctx context.Context, jobs int, items []T, fn func(T)) {
	ch := make(chan T)
	var wg sync.WaitGroup
	for range min(jobs, max(len(items), 1)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for it := range ch {
				fn(it)
			}
		}()
	}
	for _, it := range items {
		select {
		case ch <- it:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(ch)
	wg.Wait()
}
