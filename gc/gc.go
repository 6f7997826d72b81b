// Package gc is a mark-and-sweep garbage collector that works directly on a
// distribution v3 registry's storage, through distribution's own storage
// drivers. It plans first and executes the plan second (as restic's prune
// does): a dry run prints the plan's report, a real run carries it out.
//
// Mark: every manifest a tag points at, the children of every marked index
// (even children absent from the repository), every manifest whose subject
// is marked (OCI referrers), and the configs and layers of marked manifests.
// Sweep, in this order so that a crash leaves every live tag servable and a
// re-run finishes the job: untagged manifests (revision links and tag-history
// entries), then layer links nothing live in the repository needs, then
// blobs nothing live anywhere needs.
package gc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/factory"
	"github.com/opencontainers/go-digest"

	"github.com/regkeeper/regkeeper/internal/progress"

	// The storage drivers regkeeper gc can open from a registry config.
	_ "github.com/distribution/distribution/v3/registry/storage/driver/azure"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/gcs"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/s3-aws"
)

// Defaults of the CLI and of DefaultOptions.
const (
	DefaultGrace            = time.Hour
	DefaultUploadsOlderThan = 7 * 24 * time.Hour
	// DefaultStaleLock is the age after which another run's lock is ignored.
	DefaultStaleLock = 6 * time.Hour
)

// Sentinel errors.
var (
	// ErrLocked: another gc run holds the storage lock.
	ErrLocked = errors.New("another regkeeper gc holds the storage lock")
	// ErrNotRegistry: the storage has no /docker/registry/v2.
	ErrNotRegistry = errors.New("not a registry storage")
	// ErrNoDriver: the registry configuration names no storage driver.
	ErrNoDriver = errors.New("no storage driver configured")
)

// Options of a gc run. The zero value means: no grace, no upload purging,
// one job; DefaultOptions returns the CLI's defaults.
type Options struct {
	// Grace spares manifests, layer links and blobs written within it, so
	// that pushes in flight survive. Zero spares nothing (default 1h in
	// DefaultOptions).
	Grace time.Duration
	// DryRun plans without deleting.
	DryRun bool
	// KeepUntagged keeps every manifest; only blobs and links nothing
	// references are swept.
	KeepUntagged bool
	// KeepPrevious keeps the N most recent earlier digests of each tag (by
	// the modification time of the tag's history entry).
	KeepPrevious int
	// UploadsOlderThan deletes upload directories started longer ago than
	// this; zero keeps every upload (default 168h in DefaultOptions).
	UploadsOlderThan time.Duration
	// PruneOrphanSignatures deletes cosign-style tags (sha256-<hex>.sig,
	// .att, .sbom) and referrers fallback tags (sha256-<hex>) whose subject
	// manifest does not survive the sweep in that repository.
	PruneOrphanSignatures bool
	// PruneEmptyRepos deletes repositories left with no tag and no manifest.
	PruneEmptyRepos bool
	// StaleLock: a lock older than this is taken over (default 6h).
	StaleLock time.Duration
	// Jobs is the number of concurrent storage reads (default 1).
	Jobs int
	// Logger receives progress and decisions; nil discards.
	Logger *slog.Logger
	// Progress shows a bar per phase; nil shows none.
	Progress *progress.Reporter
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	// beforeDelete, when set, is called before every storage deletion; an
	// error stops the execution there (tests simulate crashes with it).
	beforeDelete func(path string) error
}

// DefaultOptions returns the options of a plain `regkeeper gc`.
func DefaultOptions() Options {
	return Options{Grace: DefaultGrace, UploadsOlderThan: DefaultUploadsOlderThan, StaleLock: DefaultStaleLock, Jobs: 1}
}

func (o *Options) fill() {
	if o.Jobs < 1 {
		o.Jobs = 1
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.StaleLock <= 0 {
		o.StaleLock = DefaultStaleLock
	}
}

// Report is the result of a run, as DESIGN.md's `gc -o json`.
type Report struct {
	DryRun            bool         `json:"dryRun"`
	ManifestsDeleted  int          `json:"manifestsDeleted"`
	BlobsDeleted      int          `json:"blobsDeleted"`
	BytesReclaimed    int64        `json:"bytesReclaimed"`
	LayerLinksDeleted int          `json:"layerLinksDeleted"`
	UploadsDeleted    int          `json:"uploadsDeleted"`
	DurationSeconds   float64      `json:"durationSeconds"`
	Repositories      []RepoReport `json:"repositories"`

	// Kept lists manifests kept because gc could not tell what they
	// reference (unknown media type, unreadable); not part of the JSON
	// contract.
	Kept []KeptManifest `json:"-"`
	// TagsDeleted counts orphan signature tags pruned; RepositoriesDeleted
	// lists empty repositories pruned.
	TagsDeleted         int      `json:"-"`
	RepositoriesDeleted []string `json:"-"`
}

// RepoReport is one repository's share. A deleted blob's bytes count
// towards the first repository (by name) whose deleted manifests or layer
// links referenced it; blobs nothing referenced count only in the total.
type RepoReport struct {
	Name             string `json:"name"`
	ManifestsDeleted int    `json:"manifestsDeleted"`
	BytesReclaimed   int64  `json:"bytesReclaimed"`
}

// KeptManifest is a manifest gc kept without understanding it.
type KeptManifest struct {
	Repository string
	Digest     digest.Digest
	MediaType  string
	Reason     string
}

// Open opens the storage driver a registry configuration file names.
func Open(ctx context.Context, configFile string) (storagedriver.StorageDriver, error) {
	f, err := os.Open(configFile)
	if err != nil {
		return nil, fmt.Errorf("reading registry config: %w", err)
	}
	defer f.Close()
	cfg, err := parseConfig(f)
	if err != nil {
		return nil, fmt.Errorf("parsing registry config %s: %w", configFile, err)
	}
	typ, err := storageType(cfg)
	if err != nil {
		return nil, fmt.Errorf("registry config %s: %w", configFile, err)
	}
	d, err := factory.Create(ctx, typ, cfg.Storage.Parameters())
	if err != nil {
		return nil, fmt.Errorf("opening %s storage of %s: %w", typ, configFile, err)
	}
	return d, nil
}

func parseConfig(f *os.File) (cfg *configuration.Configuration, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	return configuration.Parse(f)
}

func storageType(cfg *configuration.Configuration) (typ string, err error) {
	defer func() {
		if r := recover(); r != nil { // distribution panics on two drivers
			err = fmt.Errorf("%v", r)
		}
	}()
	if typ = cfg.Storage.Type(); typ == "" {
		return "", ErrNoDriver
	}
	return typ, nil
}

// OpenRoot opens a filesystem storage root (the filesystem driver's
// rootdirectory).
func OpenRoot(ctx context.Context, root string) (storagedriver.StorageDriver, error) {
	if fi, err := os.Stat(root); err != nil {
		return nil, fmt.Errorf("opening storage root: %w", err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("opening storage root %s: not a directory", root)
	}
	return factory.Create(ctx, "filesystem", map[string]any{"rootdirectory": root})
}

// Run locks the storage, plans, executes (unless DryRun) and unlocks.
func Run(ctx context.Context, d storagedriver.StorageDriver, opts Options) (*Report, error) {
	opts.fill()
	if err := checkRegistry(ctx, d); err != nil {
		return nil, err
	}
	if !opts.DryRun {
		unlock, err := Lock(ctx, d, opts)
		if err != nil {
			return nil, err
		}
		defer unlock()
	}
	p, err := PlanGC(ctx, d, opts)
	if err != nil {
		return nil, err
	}
	if opts.DryRun {
		return p.Report(), nil
	}
	return p.Execute(ctx, d)
}

func checkRegistry(ctx context.Context, d storagedriver.StorageDriver) error {
	fi, err := d.Stat(ctx, pathFor(registryRootSpec{}))
	if err != nil {
		var nf storagedriver.PathNotFoundError
		if errors.As(err, &nf) {
			return fmt.Errorf("%w: no %s in %s storage", ErrNotRegistry, pathFor(registryRootSpec{}), d.Name())
		}
		return fmt.Errorf("reading %s: %w", pathFor(registryRootSpec{}), err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%w: %s is not a directory", ErrNotRegistry, pathFor(registryRootSpec{}))
	}
	return nil
}

// lockFile is the content of the lock.
type lockFile struct {
	Holder string    `json:"holder"`
	Time   time.Time `json:"time"`
}

// Lock takes the gc lock in storage, refusing with ErrLocked when another
// run holds a lock younger than opts.StaleLock. The returned func releases
// it. Object stores have no atomic create, so the lock is written, read
// back and compared: two runs starting in the same instant are caught by
// the read-back in all but the most adversarial timing.
func Lock(ctx context.Context, d storagedriver.StorageDriver, opts Options) (func(), error) {
	opts.fill()
	p := pathFor(lockSpec{})
	now := opts.Now()
	if b, err := d.GetContent(ctx, p); err == nil {
		var lf lockFile
		if json.Unmarshal(b, &lf) == nil && now.Sub(lf.Time) < opts.StaleLock {
			return nil, fmt.Errorf("%w: %s since %s (lock %s; remove it if that run is dead)", ErrLocked, lf.Holder, lf.Time.Format(time.RFC3339), p)
		}
		opts.Logger.Warn("taking over a stale gc lock", "path", p, "content", string(b))
	} else if !isNotFound(err) {
		return nil, fmt.Errorf("reading gc lock %s: %w", p, err)
	}
	host, _ := os.Hostname()
	me := lockFile{Holder: fmt.Sprintf("regkeeper gc pid %d on %s (%d)", os.Getpid(), host, now.UnixNano()), Time: now}
	b, _ := json.Marshal(me)
	if err := d.PutContent(ctx, p, b); err != nil {
		return nil, fmt.Errorf("writing gc lock %s: %w", p, err)
	}
	if back, err := d.GetContent(ctx, p); err != nil || string(back) != string(b) {
		return nil, fmt.Errorf("%w: lost the race for %s", ErrLocked, p)
	}
	return func() {
		if back, err := d.GetContent(context.WithoutCancel(ctx), p); err == nil && string(back) == string(b) {
			_ = d.Delete(context.WithoutCancel(ctx), p)
		}
	}, nil
}

func isNotFound(err error) bool {
	var nf storagedriver.PathNotFoundError
	return errors.As(err, &nf)
}

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
	r.DurationSeconds = p.opts.Now().Sub(p.start).Seconds()
	return r
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

// Execute carries the plan out in crash-safe order: orphan signature tags,
// manifests (tag-history entries, then the revision), layer links, blobs,
// uploads, empty repositories. Within a phase, deletions run opts.Jobs at a
// time (on an object store each is a round trip or two); a phase starts
// when the one before it has finished. It stops at the first failure and
// returns what it did so far with the error; running gc again finishes the
// job.
func (p *Plan) Execute(ctx context.Context, d storagedriver.StorageDriver) (*Report, error) {
	opts := p.opts
	r := &Report{Kept: p.Kept, Repositories: []RepoReport{}}
	acc := newAccount(p.owner)
	var mu sync.Mutex // guards r and acc, and serialises beforeDelete
	done := func() *Report {
		mu.Lock()
		defer mu.Unlock()
		acc.fill(r)
		sort.Strings(r.RepositoriesDeleted)
		r.DurationSeconds = opts.Now().Sub(p.start).Seconds()
		return r
	}
	del := func(path string) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if opts.beforeDelete != nil {
			mu.Lock()
			err := opts.beforeDelete(path)
			mu.Unlock()
			if err != nil {
				return err
			}
		}
		if err := d.Delete(ctx, path); err != nil && !isNotFound(err) {
			return fmt.Errorf("deleting %s: %w", path, err)
		}
		return nil
	}
	// count runs f under the lock, for the report.
	count := func(f func()) {
		mu.Lock()
		f()
		mu.Unlock()
	}
	each := func(n int, fn func(i int) error) error { return forEach(ctx, opts.Jobs, n, fn) }
	// On S3, links and blobs go 1,000 keys a request (not with the test
	// hook, which must see every path).
	var s3b *s3Batch
	if opts.beforeDelete == nil {
		s3b = newS3Batch(d)
	}
	bar := opts.Progress.Count(int64(len(p.Tags)+len(p.Manifests)+len(p.LayerLinks)+len(p.Blobs)+len(p.Uploads)+len(p.EmptyRepos)), "sweeping")
	defer bar.Done()

	err := each(len(p.Tags), func(i int) error {
		t := p.Tags[i]
		if err := del(pathFor(tagSpec{t.Repository, t.Tag})); err != nil {
			return err
		}
		opts.Logger.Info("deleted orphan signature tag", "repository", t.Repository, "tag", t.Tag)
		count(func() { r.TagsDeleted++ })
		bar.Add(1)
		return nil
	})
	if err != nil {
		return done(), err
	}
	// Pushes since the plan was made are re-read before each phase that
	// could hurt them: a tag moved back onto a planned manifest, a layer
	// link or revision rewritten by a push that found its blobs present.
	// Anything written within Grace before the plan was spared by the plan
	// already; re-reading from there keeps the two views consistent.
	// Manifests go one repository at a time: its tags are re-read, then its
	// manifests deleted concurrently.
	since := p.start.Add(-opts.Grace)
	for start := 0; start < len(p.Manifests); {
		repo := p.Manifests[start].Repository
		end := start
		for end < len(p.Manifests) && p.Manifests[end].Repository == repo {
			end++
		}
		retagged, err := recentlyReferenced(ctx, d, repo, since, true)
		if err != nil {
			return done(), err
		}
		batch := p.Manifests[start:end]
		if s3b != nil {
			var files []string
			var gone []ManifestDeletion
			for _, m := range batch {
				if retagged[m.Digest] {
					opts.Logger.Warn("gc: manifest tagged again during the run, kept", "repository", m.Repository, "digest", m.Digest)
					continue
				}
				for _, tag := range m.HistoryTags {
					files = append(files, pathFor(tagIndexLinkSpec{m.Repository, tag, m.Digest}))
				}
				files = append(files, pathFor(revisionLinkSpec{m.Repository, m.Digest}))
				gone = append(gone, m)
			}
			if err := s3b.deleteFiles(ctx, files, opts.Jobs); err != nil {
				return done(), err
			}
			count(func() {
				for _, m := range gone {
					acc.manifest(m.Repository)
				}
			})
			bar.Add(int64(len(batch)))
			start = end
			continue
		}
		err = each(len(batch), func(i int) error {
			m := batch[i]
			if retagged[m.Digest] {
				opts.Logger.Warn("gc: manifest tagged again during the run, kept", "repository", m.Repository, "digest", m.Digest)
				return nil
			}
			for _, tag := range m.HistoryTags {
				if err := del(pathFor(tagIndexEntrySpec{m.Repository, tag, m.Digest})); err != nil {
					return err
				}
			}
			if err := del(pathFor(revisionSpec{m.Repository, m.Digest})); err != nil {
				return err
			}
			opts.Logger.Info("deleted manifest", "repository", m.Repository, "digest", m.Digest)
			count(func() { acc.manifest(m.Repository) })
			bar.Add(1)
			return nil
		})
		if err != nil {
			return done(), err
		}
		start = end
	}
	fresh := map[digest.Digest]bool{}
	repos := p.allRepos()
	err = each(len(repos), func(i int) error {
		refs, err := recentlyReferenced(ctx, d, repos[i], since, false)
		if err != nil {
			return err
		}
		count(func() {
			for dg := range refs {
				fresh[dg] = true
			}
		})
		return nil
	})
	if err != nil {
		return done(), err
	}
	if s3b != nil {
		var files []string
		for _, l := range p.LayerLinks {
			if !fresh[l.Digest] {
				files = append(files, pathFor(layerLinkSpec{l.Repository, l.Digest}))
			}
		}
		if err := s3b.deleteFiles(ctx, files, opts.Jobs); err != nil {
			return done(), err
		}
		count(func() { r.LayerLinksDeleted += len(files) })
		bar.Add(int64(len(p.LayerLinks)))
		files = files[:0]
		var gone []BlobDeletion
		for _, b := range p.Blobs {
			if fresh[b.Digest] {
				opts.Logger.Warn("gc: blob referenced by a push during the run, kept", "digest", b.Digest)
				continue
			}
			files = append(files, pathFor(blobDataSpec{b.Digest}))
			gone = append(gone, b)
		}
		if err := s3b.deleteFiles(ctx, files, opts.Jobs); err != nil {
			return done(), err
		}
		count(func() {
			for _, b := range gone {
				acc.blob(b)
			}
		})
		bar.Add(int64(len(p.Blobs)))
		return p.executeRest(ctx, del, each, r, count, bar, done)
	}
	err = each(len(p.LayerLinks), func(i int) error {
		l := p.LayerLinks[i]
		if fresh[l.Digest] {
			return nil
		}
		if err := del(pathFor(layerSpec{l.Repository, l.Digest})); err != nil {
			return err
		}
		count(func() { r.LayerLinksDeleted++ })
		bar.Add(1)
		return nil
	})
	if err != nil {
		return done(), err
	}
	err = each(len(p.Blobs), func(i int) error {
		b := p.Blobs[i]
		if fresh[b.Digest] {
			opts.Logger.Warn("gc: blob referenced by a push during the run, kept", "digest", b.Digest)
			return nil
		}
		if err := del(pathFor(blobSpec{b.Digest})); err != nil {
			return err
		}
		opts.Logger.Debug("deleted blob", "digest", b.Digest, "size", b.Size)
		count(func() { acc.blob(b) })
		bar.Add(1)
		return nil
	})
	if err != nil {
		return done(), err
	}
	return p.executeRest(ctx, del, each, r, count, bar, done)
}

// executeRest deletes abandoned uploads and empty repositories, the last
// phases of Execute.
func (p *Plan) executeRest(ctx context.Context, del func(string) error, each func(int, func(int) error) error,
	r *Report, count func(func()), bar *progress.Bar, done func() *Report) (*Report, error) {
	opts := p.opts
	err := each(len(p.Uploads), func(i int) error {
		u := p.Uploads[i]
		if err := del(pathFor(uploadSpec{u.Repository, u.ID})); err != nil {
			return err
		}
		count(func() { r.UploadsDeleted++ })
		bar.Add(1)
		return nil
	})
	if err != nil {
		return done(), err
	}
	err = each(len(p.EmptyRepos), func(i int) error {
		repo := p.EmptyRepos[i]
		// A repository can hold others (a and a/b): then only its own
		// directories go.
		paths := []string{pathFor(repositorySpec{repo})}
		if p.hasNested(repo) {
			paths = []string{pathFor(tagsSpec{repo}), path.Dir(pathFor(revisionsSpec{repo, digest.SHA256})),
				path.Dir(pathFor(layersSpec{repo, digest.SHA256})), pathFor(uploadsSpec{repo})}
		}
		for _, dp := range paths {
			if err := del(dp); err != nil {
				return err
			}
		}
		opts.Logger.Info("deleted empty repository", "repository", repo)
		count(func() { r.RepositoriesDeleted = append(r.RepositoriesDeleted, repo) })
		bar.Add(1)
		return nil
	})
	return done(), err
}

// hasNested tells whether the plan read a repository inside repo.
func (p *Plan) hasNested(repo string) bool {
	for _, r := range p.repos {
		if strings.HasPrefix(r, repo+"/") {
			return true
		}
	}
	return false
}

// allRepos are the repositories read by the plan.
func (p *Plan) allRepos() []string { return p.repos }

// ---- planning ----

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

	cache := newManifestCache(d)
	repos, err := readRepositories(ctx, d, names, cache, opts)
	if err != nil {
		return nil, err
	}

	now := opts.Now()
	young := func(t time.Time) bool { return opts.Grace > 0 && now.Sub(t) < opts.Grace }

	// Mark each repository. Pruning orphan signature tags can unroot
	// manifests, which can orphan more tags: repeat until nothing changes.
	pruned := map[string]map[string]bool{}
	for _, r := range repos {
		pruned[r.name] = map[string]bool{}
		for {
			mark(ctx, cache, r, pruned[r.name], opts, young)
			if !opts.PruneOrphanSignatures {
				break
			}
			more := false
			for tag := range r.tags {
				if pruned[r.name][tag] {
					continue
				}
				if subj, ok := signatureSubject(tag); ok && !r.marked[subj] {
					pruned[r.name][tag] = true
					more = true
				}
			}
			if !more {
				break
			}
		}
	}

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

	// Sweep the blob store.
	blobs, err := listBlobs(ctx, d, opts)
	if err != nil {
		return nil, err
	}
	for _, b := range blobs {
		if live[b.digest] || young(b.modTime) {
			continue
		}
		p.Blobs = append(p.Blobs, BlobDeletion{Digest: b.digest, Size: b.size})
	}
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
func readManifest(ctx context.Context, d storagedriver.StorageDriver, dg digest.Digest) (*parsedManifest, string, error) {
	if dg.Validate() != nil {
		return nil, "invalid digest", nil
	}
	b, err := d.GetContent(ctx, pathFor(blobDataSpec{dg}))
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
	if !knownTypes[mt] {
		return &pm, fmt.Sprintf("unknown media type %q", pm.MediaType), nil
	}
	pm.MediaType = mt
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
