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
//
// On a live registry (the default), blobs are not deleted but moved to a
// quarantine, and only purged after a settle and a re-scan of everything
// written since the run began have put back what pushes during the run
// need: sweep.go states the protocol and why no accepted push is lost. The
// files follow its steps: open.go (storage, lock), mark.go and plan.go,
// sweep.go (links, then blobs), quarantine.go, rescan.go, cache.go (the
// registry's blob-descriptor cache), remove.go (every bulk deletion).
package gc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"runtime"
	"sync"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/opencontainers/go-digest"

	"github.com/regkeeper/regkeeper/internal/progress"
)

// Defaults of the CLI and of DefaultOptions.
const (
	DefaultGrace            = time.Hour
	DefaultUploadsOlderThan = 7 * 24 * time.Hour
	// DefaultStaleLock is the age after which another run's lock is ignored.
	DefaultStaleLock = 6 * time.Hour
	// DefaultSettle is how long an online run waits, after setting dead
	// blobs aside, for requests that checked them before to have written
	// what they were going to write. The gap it covers is the one inside a
	// single registry request, between a check and the link written after
	// it: milliseconds on a filesystem, a few storage round trips on an
	// object store. Ten seconds is a hundred times that on a slow object
	// store; raise it for a registry whose requests stall for longer.
	DefaultSettle = 10 * time.Second
	// DefaultMaxDeleteRatio is the share of the stored bytes a plan of the
	// gc and cycle commands may delete before gc refuses it. A registry
	// collected every week loses what the week's tag replacements left
	// behind: on the demo estate, a first collection of 10 replaced
	// manifests, 30% of the bytes; on the
	// bench generator's shape (every tag pushed 4 times, never collected)
	// 75%, which is a neglected registry's first run, not a weekly one.
	// Half the bytes at once is what repositories missing from the storage
	// (a partial mount, a half-done restore) look like: refused, with the
	// flag to pass when it is meant.
	DefaultMaxDeleteRatio = 0.5
)

// Sentinel errors.
var (
	// ErrLocked: another gc run holds the storage lock.
	ErrLocked = errors.New("another regkeeper gc holds the storage lock")
	// ErrNotRegistry: the storage has no /docker/registry/v2.
	ErrNotRegistry = errors.New("not a registry storage")
	// ErrNoDriver: the registry configuration names no storage driver.
	ErrNoDriver = errors.New("no storage driver configured")
	// ErrDeleteAll: the plan deletes every blob of the storage (a wrong
	// --root?) and Options.AllowDeleteAll is not set (guard.go).
	ErrDeleteAll = errors.New("refusing to delete every blob")
	// ErrNoTags: the storage holds blobs but no tag at all, and the plan
	// deletes some, without Options.AllowDeleteAll (guard.go).
	ErrNoTags = errors.New("refusing to collect a storage that has blobs but no tag")
	// ErrDeleteRatio: the plan deletes a larger share of the bytes than
	// Options.MaxDeleteRatio (guard.go).
	ErrDeleteRatio = errors.New("refusing a plan over the maximum delete ratio")
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
	// NoKeepBases applies the stock rule to bases: by default an untagged
	// manifest that a live image names as its base (the
	// org.opencontainers.image.base.digest annotation, in the repository
	// of org.opencontainers.image.base.name) is kept with its config, so
	// that audit can still read it (provenance.go).
	NoKeepBases bool
	// NoMarkCache reads every manifest, and neither reads nor writes the
	// mark cache (markcache.go). By default a run reads only the manifests
	// the cache does not hold, and a real run (not a dry run) writes the
	// cache again.
	NoMarkCache bool
	// AllowDeleteAll lets a plan delete every blob of the storage, or
	// collect a storage with blobs but no tag; without it such a plan is
	// refused (ErrDeleteAll, ErrNoTags), as it is what gc does on a wrong
	// root.
	AllowDeleteAll bool
	// MaxDeleteRatio, when above zero and below one, refuses a plan
	// deleting more than this share (0 to 1) of the bytes of the blob store
	// (ErrDeleteRatio); zero or one sets no limit. The commands (gc,
	// cycle) default to DefaultMaxDeleteRatio; DefaultOptions, for callers
	// that plan their own storages (tests, benchmarks), sets none.
	MaxDeleteRatio float64
	// driverDelete makes the filesystem sweep go through the driver's
	// Delete, as on other storage (tests and benchmarks compare the two).
	driverDelete bool
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

	// Offline says the registry is stopped or read-only: blobs are deleted
	// at once, without quarantine, settle or re-scan (sweep.go).
	Offline bool
	// Settle is how long an online run waits between quarantining blobs and
	// re-reading what pushes wrote (default DefaultSettle in
	// DefaultOptions; zero waits not at all).
	Settle time.Duration
	// Registry holds the registry configuration's settings that decide the
	// mode (ReadSettings): its blob-descriptor cache and read-only mode.
	// The zero value is a registry without a cache (gc --root).
	Registry RegistrySettings
	// CacheDropped and RestartAfter accept an in-memory blob-descriptor
	// cache (cache.go): the running registry was restarted without it, or
	// will be restarted right after gc.
	CacheDropped, RestartAfter bool

	// beforeDelete, when set, is called before every storage deletion; an
	// error stops the execution there (tests simulate crashes with it).
	beforeDelete func(path string) error
	hookSerial   bool
	// pause, when set, is called between the steps of an execution (and
	// once during the re-scan) with the step's name; tests push there.
	pause func(step string)
}

// simulatedCrash is an error of the test hook beforeDelete: the run stops
// there as if killed, doing nothing more.
type simulatedCrash struct{ error }

func (c simulatedCrash) Unwrap() error { return c.error }

// DefaultOptions returns the options of a plain `regkeeper gc`.
func DefaultOptions() Options {
	return Options{Grace: DefaultGrace, UploadsOlderThan: DefaultUploadsOlderThan, StaleLock: DefaultStaleLock, Jobs: 1, Settle: DefaultSettle}
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
	if h := o.beforeDelete; h != nil && !o.hookSerial {
		// Deletions run opts.Jobs at a time; the hook sees one at a time.
		var mu sync.Mutex
		o.beforeDelete = func(p string) error {
			mu.Lock()
			defer mu.Unlock()
			if err := h(p); err != nil {
				return simulatedCrash{err}
			}
			return nil
		}
		o.hookSerial = true
	}
}

// Report is the result of a run, as the README's `gc -o json`.
type Report struct {
	DryRun            bool  `json:"dryRun"`
	ManifestsDeleted  int   `json:"manifestsDeleted"`
	BlobsDeleted      int   `json:"blobsDeleted"`
	BytesReclaimed    int64 `json:"bytesReclaimed"`
	LayerLinksDeleted int   `json:"layerLinksDeleted"`
	UploadsDeleted    int   `json:"uploadsDeleted"`
	// BlobsRestored counts blobs an online run put back from its
	// quarantine because a push during the run needed them; LinksRestored
	// the revision and layer links it wrote again for such pushes.
	BlobsRestored   int          `json:"blobsRestored"`
	LinksRestored   int          `json:"linksRestored"`
	DurationSeconds float64      `json:"durationSeconds"`
	Repositories    []RepoReport `json:"repositories"`

	// ManifestsKeptAsBase counts untagged manifests kept only because a
	// live image names them (or what holds them) as its base.
	ManifestsKeptAsBase int `json:"manifestsKeptAsBase"`
	// ManifestsSparedByGrace, BlobsSparedByGrace and BytesSparedByGrace are
	// what a run with no grace would have deleted beyond this one (grace.go).
	ManifestsSparedByGrace int   `json:"manifestsSparedByGrace"`
	BlobsSparedByGrace     int   `json:"blobsSparedByGrace"`
	BytesSparedByGrace     int64 `json:"bytesSparedByGrace"`
	// BytesStored is what the blob store held when the plan was made;
	// DeleteRatio the share of it the plan deletes (0 to 1), which
	// MaxDeleteRatio (the run's limit, 0 for none) bounds (guard.go).
	// QuarantineBlobs and QuarantineBytes are what the quarantine holds
	// when the run ends (a dry run: now): blobs a run set aside and did not
	// purge, because it crashed or was interrupted; the next run restores
	// what is referenced and purges the rest.
	QuarantineBlobs int   `json:"quarantineBlobs"`
	QuarantineBytes int64 `json:"quarantineBytes"`
	// LockHeldBy names the run holding the storage's gc lock when a dry
	// run looked (another gc is running); empty when none.
	LockHeldBy     string  `json:"lockHeldBy,omitempty"`
	BytesStored    int64   `json:"bytesStored"`
	DeleteRatio    float64 `json:"deleteRatio"`
	MaxDeleteRatio float64 `json:"maxDeleteRatio"`
	// Grace is the grace of the run (Options.Grace).
	Grace time.Duration `json:"-"`

	// Kept lists manifests kept because gc could not tell what they
	// reference (unknown media type, unreadable); not part of the JSON
	// contract.
	Kept []KeptManifest `json:"-"`
	// KeptAsBase lists the manifests ManifestsKeptAsBase counts.
	KeptAsBase []BlobRef `json:"-"`
	// TagsDeleted counts orphan signature tags pruned
	// (PruneOrphanSignatures), OrphanSignatureTags names the tags the plan
	// prunes; RepositoriesDeleted lists empty repositories pruned.
	TagsDeleted         int      `json:"tagsDeleted"`
	OrphanSignatureTags []TagRef `json:"orphanSignatureTags"`
	RepositoriesDeleted []string `json:"repositoriesDeleted"`
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

// Run locks the storage, opens the quarantine (online), plans, executes
// (unless DryRun) and unlocks. With an in-memory blob-descriptor cache and
// no way out in opts it refuses before touching anything
// (ErrInMemoryCache). A plan the guards refuse (guard.go) is not executed:
// the error says why; a dry run returns its report with that error.
func Run(ctx context.Context, d storagedriver.StorageDriver, opts Options) (*Report, error) {
	opts.fill()
	if err := checkRegistry(ctx, d); err != nil {
		return nil, err
	}
	mode, err := cacheRules(opts)
	if err != nil {
		return nil, err
	}
	defer mode.cache.close()
	if opts.DryRun {
		p, err := PlanGC(ctx, d, opts)
		if err != nil {
			return nil, err
		}
		rep := p.Report()
		reportQuarantine(ctx, d, rep)
		rep.LockHeldBy = lockHeld(ctx, d, opts)
		return rep, p.guard()
	}
	unlock, err := Lock(ctx, d, opts)
	if err != nil {
		return nil, err
	}
	defer unlock()
	rm := newRemover(d, opts)
	// The quarantine is opened before the mark: its since file is the
	// start of the window the re-scan reads (sweep.go).
	q, err := openQuarantine(ctx, d, opts, rm, !mode.offline)
	if err != nil {
		return nil, err
	}
	t := time.Now()
	p, err := PlanGC(ctx, d, opts)
	if err != nil {
		return nil, err
	}
	opts.Logger.Debug("gc: step done", "step", "mark", "seconds", time.Since(t).Seconds())
	// The mark's working set (every repository's links and manifests) is
	// garbage now; collecting it here, rather than when the heap reaches
	// twice what the mark held, keeps the sweep's peak near the plan's size.
	runtime.GC()
	if err := p.guard(); err != nil {
		q.abandon(ctx)
		return nil, err
	}
	rep, err := p.execute(ctx, d, mode, q, rm)
	p.annotate(rep)
	p.share(rep)
	reportQuarantine(ctx, d, rep)
	return rep, err
}

// CheckMode says whether a run with opts can go ahead given the registry's
// settings (its blob-descriptor cache, read-only mode), before any work:
// the error Run would return at its start (ErrInMemoryCache), and nil for a
// dry run, which deletes nothing. It connects to nothing.
func CheckMode(opts Options) error {
	if opts.DryRun {
		return nil
	}
	m, err := cacheRules(opts)
	m.cache.close()
	return err
}

// CheckStorage says whether d is a registry's storage that a run with opts
// can read and, unless opts.DryRun, write: it reads the registry root and
// writes and deletes a probe file beside the lock (a run writes its lock
// and, online, its quarantine there, and deletes).
func CheckStorage(ctx context.Context, d storagedriver.StorageDriver, opts Options) error {
	if err := checkRegistry(ctx, d); err != nil {
		return err
	}
	if opts.DryRun {
		return nil
	}
	probe := path.Join(pathFor(registryRootSpec{}), "regkeeper-check")
	if err := d.PutContent(ctx, probe, []byte("regkeeper cycle --check\n")); err != nil {
		return fmt.Errorf("writing %s in %s storage: %w", probe, d.Name(), describe(err))
	}
	if err := d.Delete(ctx, probe); err != nil {
		return fmt.Errorf("deleting %s in %s storage: %w", probe, d.Name(), describe(err))
	}
	return nil
}

// lockHeld says who holds the storage's gc lock, read only, or "" when
// nobody does (or the lock is stale, or its run dead): what a dry run
// reports of a run going on.
func lockHeld(ctx context.Context, d storagedriver.StorageDriver, opts Options) string {
	b, err := d.GetContent(ctx, pathFor(lockSpec{}))
	if err != nil {
		return ""
	}
	var lf lockFile
	if json.Unmarshal(b, &lf) != nil || opts.Now().Sub(lf.Time) >= opts.StaleLock {
		return ""
	}
	if _, dead := lf.deadHere(); dead {
		return ""
	}
	return fmt.Sprintf("%s since %s", lf.Holder, lf.Time.Format(time.RFC3339))
}
