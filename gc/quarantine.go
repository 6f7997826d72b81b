// The quarantine: where an online run sets dead blobs aside until the
// re-scan has said which of them a push made live again.

package gc

import (
	"context"
	"fmt"
	"path"
	"slices"
	"sync"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/opencontainers/go-digest"
)

// quarantine is the area regkeeper-quarantine/ of the registry's storage
// (paths.go). A blob is quarantined by moving its data out of blobs/ (a
// rename on the filesystem; on S3 a store-side copy, its source deleted
// 1,000 keys a request: s3move.go; the driver's Move elsewhere): the
// registry no longer finds it, exactly as if it were deleted, but gc can
// still put it back.
//
// The area outlives a crashed run: its "since" file says from when the
// re-scan of the next run must read (the crashed run's start, on the
// storage's clock), and the blobs left in it are resolved by the next run,
// restored if its mark or its re-scan finds them referenced, purged if not.
type quarantine struct {
	d     storagedriver.StorageDriver
	opts  Options
	rm    remover
	dirs  *dirRemover
	mover storeMover // an object store's own copies and batches (store.go); nil: the driver's Move

	// since is the storage-clock time of the oldest run whose quarantine
	// this is; zero when there is none (offline, nothing left over).
	since time.Time
	// leftover: the area existed when the run started (a crashed run's).
	leftover bool

	mu        sync.Mutex
	held      heldBlobs       // in the quarantine, with sizes
	restored  map[sum256]bool // moved back to blobs/
	redundant map[sum256]bool // a new upload put the blob back: the copy here goes
}

// heldBlobs are the blobs in the quarantine with their sizes: 40 bytes a
// blob in one slice (a map of digest strings took about 150), appended to
// as blobs are set aside, sorted and made unique when first looked up. An
// online run holds every dead blob here until its purge.
type heldBlobs struct {
	s      []heldBlob
	sorted bool
}

type heldBlob struct {
	s    sum256
	size int64
}

// add holds the blob s of the given size; a blob held twice (a crashed
// run's leftover that this run set aside again: the same bytes) is one.
func (h *heldBlobs) add(dg digest.Digest, size int64) {
	if s, ok := sumOf(dg); ok {
		h.s, h.sorted = append(h.s, heldBlob{s, size}), false
	}
}

// sort sorts the blobs by sum and keeps the last size of each.
func (h *heldBlobs) sort() {
	if h.sorted {
		return
	}
	slices.SortStableFunc(h.s, func(a, b heldBlob) int { return compareSums(a.s, b.s) })
	out := h.s[:0]
	for _, b := range h.s {
		if len(out) > 0 && out[len(out)-1].s == b.s {
			out[len(out)-1] = b
			continue
		}
		out = append(out, b)
	}
	clear(h.s[len(out):])
	h.s, h.sorted = out, true
}

// get returns the size of the blob s and whether it is held.
func (h *heldBlobs) get(s sum256) (int64, bool) {
	h.sort()
	i, ok := slices.BinarySearchFunc(h.s, s, func(b heldBlob, s sum256) int { return compareSums(b.s, s) })
	if !ok {
		return 0, false
	}
	return h.s[i].size, true
}

// len is how many distinct blobs are held.
func (h *heldBlobs) len() int {
	h.sort()
	return len(h.s)
}

// openQuarantine reads what a crashed run left in the quarantine and, for an
// online run, opens it: the "since" file is written unless one is there
// already, and its modification time is read back, so the re-scan compares
// the registry's writes against a time from the same clock as theirs.
func openQuarantine(ctx context.Context, d storagedriver.StorageDriver, opts Options, rm remover, online bool) (*quarantine, error) {
	q := &quarantine{d: d, opts: opts, rm: rm, dirs: newDirRemover(d), mover: newStoreMover(d, opts),
		restored: map[sum256]bool{}, redundant: map[sum256]bool{}}
	since := pathFor(quarantineSinceSpec{})
	t, err := modTime(ctx, d, since)
	switch {
	case err == nil:
		q.since, q.leftover = t, true
	case !isNotFound(err):
		return nil, fmt.Errorf("reading %s: %w", since, err)
	}
	if err := q.list(ctx); err != nil {
		return nil, err
	}
	if q.held.len() > 0 {
		q.leftover = true
	}
	if q.leftover {
		opts.Logger.Warn("gc: resolving the quarantine a previous run left", "blobs", q.held.len(), "since", q.since)
	}
	if online && q.since.IsZero() {
		if err := d.PutContent(ctx, since, []byte(opts.Now().UTC().Format(time.RFC3339Nano))); err != nil {
			return nil, fmt.Errorf("writing %s: %w", since, err)
		}
		t, err := modTime(ctx, d, since)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", since, err)
		}
		q.since = t
	}
	if q.leftover && q.since.IsZero() {
		// Blobs without a since file (it was lost): re-scan everything.
		q.since = time.Unix(0, 0)
	}
	return q, nil
}

// modTime is a file's modification time as a listing gives it, which is
// what the re-scan compares it with: on S3, a listing's times have
// milliseconds where a HEAD (the driver's Stat) has seconds.
func modTime(ctx context.Context, d storagedriver.StorageDriver, p string) (time.Time, error) {
	fi, err := d.Stat(ctx, p)
	if err != nil {
		return time.Time{}, err
	}
	t := fi.ModTime()
	_ = d.Walk(ctx, path.Dir(p), func(w storagedriver.FileInfo) error {
		if w.IsDir() {
			return storagedriver.ErrSkipDir
		}
		if w.Path() == p {
			t = w.ModTime()
		}
		return nil
	})
	return t, nil
}

// list reads the blobs in the quarantine. Data a build before the current
// layout left as sha256/<hex>/data is moved to sha256/<xx>/<hex> first.
func (q *quarantine) list(ctx context.Context) error {
	root := pathFor(quarantineBlobsSpec{digest.SHA256})
	var legacy []digest.Digest
	err := q.d.Walk(ctx, root, func(fi storagedriver.FileInfo) error {
		if fi.IsDir() {
			return nil
		}
		dir, name := path.Split(fi.Path())
		if name == "data" {
			if dg := digest.NewDigestFromEncoded(digest.SHA256, path.Base(dir)); dg.Validate() == nil {
				legacy = append(legacy, dg)
				q.held.add(dg, fi.Size())
			}
			return ctx.Err()
		}
		if dg := digest.NewDigestFromEncoded(digest.SHA256, name); dg.Validate() == nil && fi.Path() == pathFor(quarantineDataSpec{dg}) {
			q.held.add(dg, fi.Size())
		}
		return ctx.Err()
	})
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("listing the quarantine: %w", err)
	}
	for _, dg := range legacy {
		old := path.Join(root, dg.Encoded(), "data")
		if err := q.d.Move(ctx, old, pathFor(quarantineDataSpec{dg})); err != nil {
			return fmt.Errorf("moving %s to the quarantine's layout: %w", old, err)
		}
		if err := q.dirs.removeEmpty(path.Dir(old)); err != nil {
			return err
		}
	}
	return nil
}

// abandon removes the since file a run wrote when it stops before deleting
// anything (a guard refused the plan), so that the next run does not take
// it for a crashed run's.
func (q *quarantine) abandon(ctx context.Context) {
	if q.leftover || q.since.IsZero() {
		return
	}
	_ = q.rm.remove(ctx, []string{pathFor(quarantineSinceSpec{})})
	_ = q.dirs.removeEmpty(pathFor(quarantineSpec{}))
}

// active tells whether the run must settle and re-scan before purging.
func (q *quarantine) active() bool { return !q.since.IsZero() }

// put moves the blobs into the quarantine, jobs at a time. A blob already
// gone from blobs/ is skipped.
//
// On the filesystem the data is renamed and its directory removed relative
// to the two prefix directories, one worker per prefix (fs_linux.go),
// without the driver's stat and mkdir -p per blob; what is not of the
// expected shape goes through the driver, as everything does elsewhere.
func (q *quarantine) put(ctx context.Context, blobs []BlobDeletion, done func(BlobDeletion)) error {
	workers := max(q.opts.Jobs, fsWorkersMin)
	held := func(b BlobDeletion) {
		q.mu.Lock()
		q.held.add(b.Digest, b.Size)
		q.mu.Unlock()
		done(b)
	}
	hook := q.opts.beforeDelete
	if fast := newFSQuarantine(q.d); fast != nil && len(blobs) > 0 {
		var err error
		if blobs, err = fast.put(ctx, blobs, workers, hook, held); err != nil {
			return err
		}
		hook = nil // called once per blob already
	}
	if q.mover != nil {
		return q.mover.put(ctx, blobs, workers, hook, held)
	}
	return forEach(ctx, workers, len(blobs), func(i int) error {
		b := blobs[i]
		from := pathFor(blobDataSpec{b.Digest})
		if hook != nil {
			if err := hook(from); err != nil {
				return err
			}
		}
		err := q.d.Move(ctx, from, pathFor(quarantineDataSpec{b.Digest}))
		if isNotFound(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("quarantining %s: %w", b.Digest, err)
		}
		if err := q.dirs.removeEmpty(path.Dir(from)); err != nil {
			return err
		}
		held(b)
		return nil
	})
}

// holds tells whether dg is in the quarantine (and not restored).
func (q *quarantine) holds(dg digest.Digest) bool {
	s, ok := sumOf(dg)
	if !ok {
		return false
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	_, ok = q.held.get(s)
	return ok && !q.restored[s]
}

// restore makes dg present in blobs/ again if it is in the quarantine. It
// never overwrites: when a new upload has put the blob back meanwhile, that
// copy stays and the quarantined one is purged. It returns whether the
// blob is now present in blobs/ (false: gc never held it).
func (q *quarantine) restore(ctx context.Context, dg digest.Digest) (restored bool, err error) {
	s, ok := sumOf(dg)
	if !ok {
		return false, nil
	}
	q.mu.Lock()
	size, held := q.held.get(s)
	done := q.restored[s] || q.redundant[s]
	q.mu.Unlock()
	if !held || done {
		return false, nil
	}
	to := pathFor(blobDataSpec{dg})
	if _, err := q.d.Stat(ctx, to); err == nil {
		q.mu.Lock()
		q.redundant[s] = true
		q.mu.Unlock()
		return false, nil
	} else if !isNotFound(err) {
		return false, fmt.Errorf("restoring %s: %w", dg, err)
	}
	move := func(ctx context.Context, from, to string, _ int64) error { return q.d.Move(ctx, from, to) }
	if q.mover != nil {
		move = q.mover.move
	}
	if err := move(ctx, pathFor(quarantineDataSpec{dg}), to, size); err != nil {
		if isNotFound(err) {
			return false, nil
		}
		return false, fmt.Errorf("restoring %s from the quarantine: %w", dg, err)
	}
	q.mu.Lock()
	q.restored[s] = true
	q.mu.Unlock()
	q.opts.Logger.Info("gc: blob restored from the quarantine", "digest", dg)
	return true, nil
}

// leftovers are the blobs a previous run left in the quarantine and that are
// still there.
func (q *quarantine) leftovers() []digest.Digest {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.held.sort()
	var out []digest.Digest
	for _, b := range q.held.s {
		if !q.restored[b.s] {
			out = append(out, b.s.digest())
		}
	}
	return out // sorted: sums sort as their hex does
}

// purge deletes every blob still in the quarantine, sweepChunk at a time
// (each chunk's paths are made as it is deleted), calling freed with what
// each chunk freed, then the area itself (its since file last). Copies
// made redundant by a new upload are deleted without counting: the blob
// was not freed.
func (q *quarantine) purge(ctx context.Context, freed func([]BlobDeletion)) error {
	q.mu.Lock()
	q.held.sort()
	held := q.held.s
	q.mu.Unlock()
	for start := 0; start < len(held); start += sweepChunk {
		var files []string
		var gone []BlobDeletion
		q.mu.Lock()
		for _, b := range held[start:min(start+sweepChunk, len(held))] {
			if q.restored[b.s] {
				continue
			}
			dg := b.s.digest()
			files = append(files, pathFor(quarantineDataSpec{dg}))
			if !q.redundant[b.s] {
				gone = append(gone, BlobDeletion{Digest: dg, Size: b.size})
			}
		}
		q.mu.Unlock()
		if err := q.rm.remove(ctx, files); err != nil {
			return err
		}
		freed(gone)
	}
	if _, err := removeTree(ctx, q.d, q.rm, q.dirs, pathFor(quarantineBlobsSpec{digest.SHA256}), nil); err != nil {
		return err
	}
	if err := q.rm.remove(ctx, []string{pathFor(quarantineSinceSpec{})}); err != nil {
		return err
	}
	return q.dirs.removeEmpty(pathFor(quarantineSpec{}))
}

// pending is how many blobs are in the quarantine and not restored.
func (q *quarantine) pending() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.held.sort()
	n := 0
	for _, b := range q.held.s {
		if !q.restored[b.s] {
			n++
		}
	}
	return n
}

// quarantineHolds counts what the quarantine holds, reading only (a dry
// run writes nothing, and a run that stopped reports what it leaves).
func quarantineHolds(ctx context.Context, d storagedriver.StorageDriver) (blobs int, bytes int64, err error) {
	err = d.Walk(ctx, pathFor(quarantineBlobsSpec{digest.SHA256}), func(fi storagedriver.FileInfo) error {
		if !fi.IsDir() {
			blobs++
			bytes += fi.Size()
		}
		return ctx.Err()
	})
	if isNotFound(err) {
		err = nil
	}
	return blobs, bytes, err
}

// reportQuarantine puts into r what the quarantine holds now: blobs a run
// set aside and did not purge (a crashed or interrupted run), which the
// next run restores or purges.
func reportQuarantine(ctx context.Context, d storagedriver.StorageDriver, r *Report) {
	if r == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	if n, b, err := quarantineHolds(ctx, d); err == nil {
		r.QuarantineBlobs, r.QuarantineBytes = n, b
	}
}
