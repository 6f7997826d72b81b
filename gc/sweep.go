// The sweep: carrying a plan out on a live registry without losing a push.
//
// # The protocol
//
//	0. Open the quarantine (quarantine.go) and write its "since" file; its
//	   modification time T0 is on the storage's clock, the clock that also
//	   stamps the registry's own writes. Then mark (mark.go).
//	1. Links: delete the tag-history entries and revision links of dead
//	   manifests, repository by repository, then the layer links nothing
//	   kept needs. Files only; a directory goes only when it is empty.
//	2. Quarantine: move the data of every dead blob out of blobs/ into the
//	   quarantine (StorageDriver.Move). Clear what was deleted from a redis
//	   blob-descriptor cache.
//	3. Settle: wait Options.Settle. With a redis cache: clear it again and
//	   wait once more.
//	4. Re-scan (rescan.go): read every tag link, revision link and layer
//	   link whose modification time is T0 or later, in every repository.
//	   For each manifest they name and its children in that repository:
//	   restore its data and its configs' and layers' data from the
//	   quarantine (unless blobs/ holds the blob again: a new upload's copy
//	   is never overwritten), write again the revision link a young tag
//	   needs and the layer links a young manifest needs. A young layer
//	   link's blob is restored too.
//	5. Purge the quarantine, then its since file.
//
// Offline (Options.Offline, or the registry configured read-only), steps 2
// to 4 are replaced by deleting the blobs' data directly.
//
// # Why no accepted push is lost
//
// What the registry does (distribution v3.1.2, registry/storage): a manifest
// PUT checks each config and layer in its repository (the layer link, then
// the blob's data: linkedBlobStatter.Stat) and, for an index, each child's
// revision link and data; then writes the manifest's data unless it exists
// (blobStore.Put), then the revision link, then, for a tag, the tag's
// history link and current link. It writes no layer link. A blob upload
// commit checks whether the data exists, writes it only if not
// (blobWriter.moveBlob), then writes the layer link; a mount checks the
// source repository's link and data, then writes the layer link. So every
// accepted push ends with link writes made after its last check, and each
// check reads a link or a blob's data at a fixed path.
//
// What gc does to the registry's paths: it deletes link files (step 1),
// moves blob data out of blobs/ (step 2), writes links and moves data back
// (step 4). It deletes nothing from blobs/ after step 2 (the purge deletes
// quarantine copies only), and never deletes a directory that holds a file.
//
// Take an accepted push P. Either:
//
//   - Every check of P came after step 2. Then what P found was not swept:
//     a deleted link or a quarantined blob is absent, so P found it absent
//     and either failed visibly (BLOB_UNKNOWN, MANIFEST_UNKNOWN: the client
//     uploads again or reports the error) or wrote a new copy (an upload
//     commit moves its data into blobs/, which the purge never touches).
//     Nothing P found or wrote is deleted later. P pulls.
//   - Some check of P came before step 2 ended. By the settle assumption
//     (below) P's writes are done before step 4 starts. Writes made before
//     T0 existed when the mark began, so the mark judged them as it judges
//     everything: a tag keeps its manifest, --grace keeps what is young.
//     Writes made at T0 or later carry a modification time ≥ T0, so the
//     re-scan reads them, and for what they name it restores the data and
//     the links P found at its checks and gc deleted since. P pulls.
//
// The window that remains is a check made before step 2 ended whose write
// lands after step 4 has read that repository: a request that stalls for
// longer than Settle between a check and its write. Settle is that
// assumption, stated as a duration (DefaultSettle says why 10s).
//
// Two more conditions, met by what step 1 deletes:
//
//   - A write of P at T0 or later must still be there for the re-scan to
//     read. gc deletes tag-history entries, revision links and layer links
//     of what the mark found dead; a push that writes one of those again
//     also writes a link gc never deletes (a tag's current link) or is
//     caught by a check (a layer link it needs, rewritten by an upload and
//     deleted, makes the manifest PUT fail visibly; a manifest PUT checked
//     before the deletion writes a young revision link). The exception is an
//     untagged push, by digest, of a manifest gc is deleting: its only
//     record is the revision link. Before each repository's deletions gc
//     re-reads its tags and skips manifests tagged since; the push that
//     writes in the moment between that re-read and the delete is not
//     protected (nothing names it; it would be collected after its grace).
//   - The registry's blob-descriptor cache must not answer "present" for a
//     swept blob or link after the check it replaces would have failed: an
//     in-memory cache cannot be reached, so gc refuses to run online beside
//     one (cache.go); a redis cache is cleared after step 2, then again
//     after the settle (a request that read storage before step 2 may have
//     put a stale entry back meanwhile), and the second settle lets a
//     request that used such an entry write before the re-scan.
//
// A run that stops on an error or an interrupt between the quarantine and
// the purge re-scans once before it returns, so the pushes it broke pull
// again at once. A crash at any step leaves deleted links of dead things,
// blob data in the quarantine, and the since file. The next run marks (reading a manifest
// from the quarantine when its data is there), restores every quarantined
// blob its mark keeps, settles (even when it swept nothing itself: it can
// start seconds after the crash, while a push that raced it still writes),
// re-scans from the crashed run's T0 (so the pushes the crashed run never
// re-scanned are made whole), and purges the rest.

package gc

import (
	"context"
	"errors"
	"path"
	"sort"
	"strings"
	"sync"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/opencontainers/go-digest"

	"github.com/regkeeper/regkeeper/internal/progress"
)

// sweep is one execution of a plan.
type sweep struct {
	p    *Plan
	d    storagedriver.StorageDriver
	opts Options
	mode runMode
	q    *quarantine
	rm   remover
	dirs *dirRemover

	// since: pushes since then are re-read before each deletion phase to
	// narrow what the re-scan must repair (not needed for safety).
	since time.Time
	// freshRefs are the digests referenced since then, re-read before the
	// layer links go.
	freshRefs map[digest.Digest]bool

	mu  sync.Mutex // guards what follows
	r   *Report
	acc *account
	// deleted are the revision links deleted, per repository.
	deleted map[string]map[digest.Digest]bool
	// scoped are the links deleted and global the blobs swept, kept for
	// the registry's cache only when it has one; swept counts them.
	scoped []BlobRef
	global []digest.Digest
	swept  int
	bar    *progress.Bar
}

// Execute carries the plan out with the protocol above, deciding the mode
// from the plan's options as Run does. Run is the entry point on a live
// registry: it opens the quarantine before the mark, so that the re-scan
// reads from before the plan was made; Execute opens it now, and a push
// between PlanGC and Execute is covered only by the re-reads and --grace.
// The caller holds the lock (Lock).
func (p *Plan) Execute(ctx context.Context, d storagedriver.StorageDriver) (*Report, error) {
	mode, err := cacheRules(p.opts)
	if err != nil {
		return nil, err
	}
	defer mode.cache.close()
	rm := newRemover(d, p.opts)
	q, err := openQuarantine(ctx, d, p.opts, rm, !mode.offline)
	if err != nil {
		return nil, err
	}
	return p.execute(ctx, d, mode, q, rm)
}

// execute carries the plan out (see the top of this file).
func (p *Plan) execute(ctx context.Context, d storagedriver.StorageDriver, mode runMode, q *quarantine, rm remover) (*Report, error) {
	opts := p.opts
	s := &sweep{p: p, d: d, opts: opts, mode: mode, q: q, rm: rm, dirs: newDirRemover(d),
		r: &Report{Kept: p.Kept, Repositories: []RepoReport{}}, acc: newAccount(p.owner),
		deleted: map[string]map[digest.Digest]bool{}}
	s.since = p.start.Add(-opts.Grace)
	if mode.why != "" {
		opts.Logger.Info("gc: mode", "offline", mode.offline, "because", mode.why)
	}
	s.bar = opts.Progress.Count(int64(len(p.Tags)+len(p.Manifests)+p.linkCount()+p.blobCount()+len(p.Uploads)+len(p.EmptyRepos)), "sweeping")
	defer s.bar.Done()
	s.pause("marked")

	steps := []struct {
		name string
		run  func(context.Context) error
	}{
		{"restore-leftovers", s.restoreLeftovers},
		{"tags", s.deleteTags},
		{"manifests", s.deleteManifests},
		{"layer-links", s.deleteLayerLinks},
		{"", func(context.Context) error { s.pause("links-deleted"); return nil }},
		{"blobs", s.sweepBlobs},
		{"", func(context.Context) error { s.pause("quarantined"); return nil }},
		{"settle", s.settle},
		{"rescan", s.rescan},
		{"purge", s.purge},
		{"uploads", s.deleteUploads},
		{"empty-repositories", s.deleteEmptyRepos},
	}
	const quarantineStep, rescanStep = 5, 8
	for i, step := range steps {
		err := ctx.Err()
		if err == nil {
			t := time.Now()
			err = step.run(ctx)
			if step.name != "" {
				opts.Logger.Debug("gc: step done", "step", step.name, "seconds", time.Since(t).Seconds())
			}
		}
		if err != nil {
			var crash simulatedCrash
			if i >= quarantineStep && i <= rescanStep && !s.mode.offline && !errors.As(err, &crash) {
				s.repairAfterFailure(ctx, err)
			}
			return s.done(), err
		}
	}
	return s.done(), nil
}

// repairAfterFailure re-scans once more, briefly and regardless of ctx,
// when a run stops (interrupted, or a storage error) between its
// quarantine and its purge: pushes it may have broken meanwhile are
// repaired now rather than at the next run. The quarantine and its since
// file stay, so the next run re-scans from the same start whatever
// happens here.
func (s *sweep) repairAfterFailure(ctx context.Context, cause error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	s.opts.Logger.Warn("gc: stopped after the quarantine; re-scanning once before leaving", "cause", cause)
	if err := s.rescan(ctx); err != nil {
		s.opts.Logger.Warn("gc: the re-scan after the failure failed too; the next run repairs", "error", err)
	}
}

func (s *sweep) pause(step string) {
	if s.opts.pause != nil {
		s.opts.pause(step)
	}
}

func (s *sweep) count(f func()) {
	s.mu.Lock()
	f()
	s.mu.Unlock()
}

func (s *sweep) done() *Report {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.acc.fill(s.r)
	sort.Strings(s.r.RepositoriesDeleted)
	s.r.DurationSeconds = s.opts.Now().Sub(s.p.start).Seconds()
	return s.r
}

// restoreLeftovers puts back the blobs a crashed run left in the
// quarantine that this run's mark keeps.
func (s *sweep) restoreLeftovers(ctx context.Context) error {
	if !s.q.leftover || removed.restoreLeftovers {
		return nil
	}
	var live []digest.Digest
	for _, dg := range s.q.leftovers() {
		if s.p.isLive(dg) {
			live = append(live, dg)
		}
	}
	return forEach(ctx, s.opts.Jobs, len(live), func(i int) error {
		ok, err := s.q.restore(ctx, live[i])
		if ok {
			s.count(func() { s.r.BlobsRestored++ })
		}
		return err
	})
}

// deleteTags deletes orphan signature tags; a tag a push moved since the
// run began keeps its current link.
func (s *sweep) deleteTags(ctx context.Context) error {
	return forEach(ctx, s.opts.Jobs, len(s.p.Tags), func(i int) error {
		t := s.p.Tags[i]
		gone, err := removeTree(ctx, s.d, s.rm, s.dirs, pathFor(tagSpec{t.Repository, t.Tag}), s.young)
		if err != nil {
			return err
		}
		if gone {
			s.opts.Logger.Info("deleted orphan signature tag", "repository", t.Repository, "tag", t.Tag)
			s.count(func() { s.r.TagsDeleted++ })
		}
		s.bar.Add(1)
		return nil
	})
}

// young tells whether a file was written since the run's window began, by
// gc's clock less the grace or by the storage's (the quarantine's since),
// whichever is earlier.
func (s *sweep) young(fi storagedriver.FileInfo) bool {
	from := s.since
	if !s.q.since.IsZero() && s.q.since.Before(from) {
		from = s.q.since
	}
	return !fi.ModTime().Before(from)
}

// deleteManifests deletes dead manifests' tag-history entries and revision
// links, opts.Jobs repositories at a time: each re-reads its own tags just
// before its deletions, and a manifest tagged again since the run began is
// kept. There is no barrier between repositories.
func (s *sweep) deleteManifests(ctx context.Context) error {
	ms := s.p.Manifests
	var ranges [][2]int
	for start := 0; start < len(ms); {
		end := start
		for end < len(ms) && ms[end].Repository == ms[start].Repository {
			end++
		}
		ranges = append(ranges, [2]int{start, end})
		start = end
	}
	return forEach(ctx, s.opts.Jobs, len(ranges), func(i int) error {
		return s.deleteRepoManifests(ctx, ms[ranges[i][0]:ranges[i][1]])
	})
}

// deleteRepoManifests deletes the dead manifests of one repository.
func (s *sweep) deleteRepoManifests(ctx context.Context, ms []ManifestDeletion) error {
	repo := ms[0].Repository
	// Offline (the registry stopped or read-only) nothing is pushed during
	// the run: there is nothing to re-read.
	retagged := map[digest.Digest]bool{}
	if !s.mode.offline && !removed.rereads {
		var err error
		if retagged, err = recentlyReferenced(ctx, s.d, repo, s.since, true); err != nil {
			return err
		}
	}
	var history, revisions []string
	var gone []ManifestDeletion
	for _, m := range ms {
		if retagged[m.Digest] {
			s.opts.Logger.Warn("gc: manifest tagged again during the run, kept", "repository", m.Repository, "digest", m.Digest)
			continue
		}
		for _, tag := range m.HistoryTags {
			history = append(history, pathFor(tagIndexLinkSpec{m.Repository, tag, m.Digest}))
		}
		revisions = append(revisions, pathFor(revisionLinkSpec{m.Repository, m.Digest}))
		gone = append(gone, m)
	}
	// History entries first: a crash between leaves revisions that the
	// next run finds and finishes, never history naming nothing.
	err := s.rm.remove(ctx, history)
	if err == nil {
		err = s.rm.remove(ctx, revisions)
	}
	if err != nil {
		// Count what did go, for the report of the run that stops here.
		var done []ManifestDeletion
		for _, m := range gone {
			if _, serr := s.d.Stat(ctx, pathFor(revisionLinkSpec{m.Repository, m.Digest})); isNotFound(serr) {
				done = append(done, m)
			}
		}
		gone = done
	}
	s.count(func() {
		for _, m := range gone {
			s.acc.manifest(m.Repository)
			if s.deleted[m.Repository] == nil {
				s.deleted[m.Repository] = map[digest.Digest]bool{}
			}
			s.deleted[m.Repository][m.Digest] = true
			s.sweptLinks(BlobRef{m.Repository, m.Digest})
		}
	})
	for _, m := range gone {
		s.opts.Logger.Info("deleted manifest", "repository", m.Repository, "digest", m.Digest)
	}
	if err != nil {
		return err
	}
	s.bar.Add(int64(len(ms)))
	return nil
}

// fresh re-reads what every repository referenced since the window began,
// so that the blobs and layer links a push already named are not swept.
func (s *sweep) fresh(ctx context.Context) (map[digest.Digest]bool, error) {
	out := map[digest.Digest]bool{}
	repos := s.p.repos
	err := forEach(ctx, s.opts.Jobs, len(repos), func(i int) error {
		refs, err := recentlyReferenced(ctx, s.d, repos[i], s.since, false)
		if err != nil {
			return err
		}
		s.count(func() {
			for dg := range refs {
				out[dg] = true
			}
		})
		return nil
	})
	return out, err
}

// deleteLayerLinks deletes the layer links nothing kept needs, except
// those of blobs a push has referenced since the window began.
func (s *sweep) deleteLayerLinks(ctx context.Context) error {
	// Offline nothing is pushed during the run: no second walk.
	fresh := map[digest.Digest]bool{}
	if !s.mode.offline && !removed.rereads {
		var err error
		if fresh, err = s.fresh(ctx); err != nil {
			return err
		}
	}
	s.freshRefs = fresh
	// Paths are made a chunk at a time, as they are deleted.
	return s.p.linkChunks(sweepChunk, func(links []BlobRef) error {
		var files []string
		var gone []BlobRef
		for _, l := range links {
			if !fresh[l.Digest] {
				files = append(files, pathFor(layerLinkSpec{l.Repository, l.Digest}))
				gone = append(gone, l)
			}
		}
		if err := s.rm.remove(ctx, files); err != nil {
			var done []BlobRef
			for _, l := range gone {
				if _, serr := s.d.Stat(ctx, pathFor(layerLinkSpec{l.Repository, l.Digest})); isNotFound(serr) {
					done = append(done, l)
				}
			}
			s.count(func() {
				s.r.LayerLinksDeleted += len(done)
				s.sweptLinks(done...)
			})
			return err
		}
		s.count(func() {
			s.r.LayerLinksDeleted += len(gone)
			s.sweptLinks(gone...)
		})
		s.bar.Add(int64(len(links)))
		return nil
	})
}

// sweepChunk is how many layer links or blobs the sweep spells out as
// paths and deletes at a time: the plan holds them as sums.
const sweepChunk = 10000

// sweepBlobs quarantines dead blobs (online) or deletes them (offline),
// except those a push has referenced since the window began, then clears
// the registry's cache of what was swept so far.
func (s *sweep) sweepBlobs(ctx context.Context) error {
	err := s.p.blobChunks(sweepChunk, func(chunk []BlobDeletion) error {
		var blobs []BlobDeletion
		for _, b := range chunk {
			if s.freshRefs[b.Digest] {
				s.opts.Logger.Warn("gc: blob referenced by a push during the run, kept", "digest", b.Digest)
				continue
			}
			blobs = append(blobs, b)
		}
		defer s.bar.Add(int64(len(chunk)))
		if !s.mode.offline {
			return s.q.put(ctx, blobs, func(b BlobDeletion) {
				s.count(func() { s.sweptBlob(b.Digest) })
				s.opts.Logger.Debug("quarantined blob", "digest", b.Digest, "size", b.Size)
			})
		}
		files := make([]string, len(blobs))
		for i, b := range blobs {
			files[i] = pathFor(blobDataSpec{b.Digest})
		}
		err := s.rm.remove(ctx, files)
		if err != nil {
			// Count what did go, for the report of the run that stops here.
			var done []BlobDeletion
			for _, b := range blobs {
				if _, serr := s.d.Stat(ctx, pathFor(blobDataSpec{b.Digest})); isNotFound(serr) {
					done = append(done, b)
				}
			}
			blobs = done
		}
		s.count(func() {
			for _, b := range blobs {
				s.acc.blob(b)
				s.sweptBlob(b.Digest)
			}
		})
		return err
	})
	if err != nil {
		return err
	}
	return s.clearCache(ctx)
}

// sweptLinks counts links deleted, and keeps them for the registry's
// cache if it has one (s.mu held).
func (s *sweep) sweptLinks(refs ...BlobRef) {
	s.swept += len(refs)
	if s.mode.cache != nil {
		s.scoped = append(s.scoped, refs...)
	}
}

// sweptBlob counts a blob swept, and keeps it for the registry's cache if
// it has one (s.mu held).
func (s *sweep) sweptBlob(dg digest.Digest) {
	s.swept++
	if s.mode.cache != nil {
		s.global = append(s.global, dg)
	}
}

// clearCache clears every link deleted and blob swept so far from the
// registry's redis cache, if it has one.
func (s *sweep) clearCache(ctx context.Context) error {
	s.mu.Lock()
	global, scoped := append([]digest.Digest(nil), s.global...), append([]BlobRef(nil), s.scoped...)
	s.mu.Unlock()
	return s.mode.cache.clear(ctx, s.opts.Jobs, global, scoped)
}

// settle waits for requests that checked what step 1 and 2 swept to write
// what they were going to write; with a redis cache, it clears the cache
// again and waits once more (see the top of this file). It does so
// whenever the quarantine is to be purged: when this run swept anything,
// and when a crashed run left blobs there, even if this run sweeps
// nothing new, since a push that raced the crashed run in its last
// moments may still be writing (the next run can start seconds after a
// crash).
func (s *sweep) settle(ctx context.Context) error {
	if s.mode.offline || removed.settle || (!s.sweptAnything() && !s.pendingLeftovers()) {
		return nil
	}
	wait := func() error {
		if s.opts.Settle <= 0 {
			return nil
		}
		s.opts.Logger.Info("gc: settling", "for", s.opts.Settle)
		t := time.NewTimer(s.opts.Settle)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			return nil
		}
	}
	if err := wait(); err != nil {
		return err
	}
	if s.mode.cache == nil {
		return nil
	}
	if !removed.secondClear {
		if err := s.clearCache(ctx); err != nil {
			return err
		}
	}
	return wait()
}

// pendingLeftovers tells whether a crashed run left blobs in the
// quarantine that this run has not restored (the purge deletes them).
func (s *sweep) pendingLeftovers() bool {
	return s.q.leftover && !removed.settleLeftovers && s.q.pending() > 0
}

func (s *sweep) sweptAnything() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.swept > 0 || s.r.TagsDeleted > 0
}

// purge deletes what is left in the quarantine. The registry's cache needs
// no clearing for it: a blob in the quarantine was absent from blobs/ since
// the first clear, so no request can have cached it since; only blobs a
// crashed run quarantined are cleared here (that run may have stopped
// before clearing them; the links it deleted are not known any more).
func (s *sweep) purge(ctx context.Context) error {
	if !s.q.active() && s.q.pending() == 0 {
		return nil
	}
	mine := map[digest.Digest]bool{}
	s.mu.Lock()
	for _, dg := range s.global {
		mine[dg] = true
	}
	s.mu.Unlock()
	var theirs []digest.Digest
	err := s.q.purge(ctx, func(gone []BlobDeletion) {
		s.count(func() {
			for _, b := range gone {
				s.acc.blob(b)
				if !mine[b.Digest] {
					theirs = append(theirs, b.Digest)
				}
			}
		})
	})
	if err != nil {
		return err
	}
	return s.mode.cache.clear(ctx, s.opts.Jobs, theirs, nil)
}

// deleteUploads deletes abandoned upload directories.
func (s *sweep) deleteUploads(ctx context.Context) error {
	return forEach(ctx, s.opts.Jobs, len(s.p.Uploads), func(i int) error {
		u := s.p.Uploads[i]
		if _, err := removeTree(ctx, s.d, s.rm, s.dirs, pathFor(uploadSpec{u.Repository, u.ID}), nil); err != nil {
			return err
		}
		s.count(func() { s.r.UploadsDeleted++ })
		s.bar.Add(1)
		return nil
	})
}

// deleteEmptyRepos deletes repositories left with nothing; a file a push
// wrote into one since the window began keeps it.
func (s *sweep) deleteEmptyRepos(ctx context.Context) error {
	return forEach(ctx, s.opts.Jobs, len(s.p.EmptyRepos), func(i int) error {
		repo := s.p.EmptyRepos[i]
		// A repository can hold others (a and a/b): then only its own
		// directories go.
		paths := []string{pathFor(repositorySpec{repo})}
		if s.p.hasNested(repo) {
			paths = []string{pathFor(tagsSpec{repo}), path.Dir(pathFor(revisionsSpec{repo, digest.SHA256})),
				path.Dir(pathFor(layersSpec{repo, digest.SHA256})), pathFor(uploadsSpec{repo})}
		}
		all := true
		for _, dp := range paths {
			gone, err := removeTree(ctx, s.d, s.rm, s.dirs, dp, s.young)
			if err != nil {
				return err
			}
			all = all && gone
		}
		if all {
			s.opts.Logger.Info("deleted empty repository", "repository", repo)
			s.count(func() { s.r.RepositoriesDeleted = append(s.r.RepositoriesDeleted, repo) })
		}
		s.bar.Add(1)
		return nil
	})
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
