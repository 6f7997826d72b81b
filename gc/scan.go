package gc

import (
	"context"
	"fmt"
	"path"
	"sort"
	"strings"
	"sync"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"
)

// Reading storage is built for object stores, where every call is a round
// trip: a repository is read with one Walk (on S3 one listing request per
// thousand objects, with modification times, instead of a List and a Stat
// per link), and the contents that must be read (manifests, tags' current
// links, uploads' start times) are fetched opts.Jobs at a time.

// forEach calls fn(i) for i in [0, n), jobs at a time. After the first
// error it starts no more calls, waits for those running, and returns that
// error; a cancelled ctx stops it the same way.
func forEach(ctx context.Context, jobs, n int, fn func(i int) error) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(jobs, 1))
	for i := range n {
		if gctx.Err() != nil {
			break
		}
		g.Go(func() error { return fn(i) })
	}
	if err := g.Wait(); err != nil {
		return err
	}
	return ctx.Err()
}

// listRepositories finds every repository: a directory under repositories/
// holding _manifests, _layers or _uploads (repositories may nest: a and
// a/b). It lists one directory level at a time, every directory of a level
// concurrently.
func listRepositories(ctx context.Context, d storagedriver.StorageDriver, jobs int) ([]string, error) {
	root := pathFor(repositoriesSpec{})
	var (
		mu   sync.Mutex
		seen = map[string]bool{}
	)
	level := []string{root}
	for len(level) > 0 {
		next := make([][]string, len(level))
		err := forEach(ctx, jobs, len(level), func(i int) error {
			dir := level[i]
			entries, err := d.List(ctx, dir)
			if err != nil {
				if isNotFound(err) {
					return nil
				}
				if fi, serr := d.Stat(ctx, dir); serr == nil && !fi.IsDir() {
					return nil // a stray file, not a namespace
				}
				return fmt.Errorf("listing repositories: %w", err)
			}
			for _, e := range entries {
				if repo := repoFromPath(e); repo != "" {
					mu.Lock()
					seen[repo] = true
					mu.Unlock()
				}
				if !strings.HasPrefix(path.Base(e), "_") {
					next[i] = append(next[i], e)
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		level = level[:0]
		for _, n := range next {
			level = append(level, n...)
		}
	}
	return sortedKeys(seen), nil
}

// repoScan is a repository's tree as one walk finds it, before any content
// is read.
type repoScan struct {
	revisions map[digest.Digest]time.Time
	// current holds the modification time of each tag's current link.
	current map[string]time.Time
	history map[string]map[digest.Digest]time.Time
	layers  map[digest.Digest]time.Time
	uploads []string
}

// scanRepository walks a repository (or, tagsOnly, its _manifests/tags)
// and records what it holds, skipping nested repositories.
// Digests are interned by in (nil: not interned).
func scanRepository(ctx context.Context, d storagedriver.StorageDriver, in *interner, repo string, tagsOnly bool) (*repoScan, error) {
	if f := fsReaderFor(d); f != nil {
		return f.scanRepository(ctx, in, repo, tagsOnly)
	}
	return walkRepository(ctx, d, in, repo, tagsOnly)
}

// walkRepository is scanRepository through the driver's Walk.
func walkRepository(ctx context.Context, d storagedriver.StorageDriver, in *interner, repo string, tagsOnly bool) (*repoScan, error) {
	s := &repoScan{revisions: map[digest.Digest]time.Time{}, current: map[string]time.Time{},
		history: map[string]map[digest.Digest]time.Time{}, layers: map[digest.Digest]time.Time{}}
	from := pathFor(repositorySpec{repo})
	if tagsOnly {
		from = pathFor(tagsSpec{repo})
	}
	hist := func(tag string) map[digest.Digest]time.Time {
		h := s.history[tag]
		if h == nil {
			h = map[digest.Digest]time.Time{}
			s.history[tag] = h
		}
		return h
	}
	err := d.Walk(ctx, from, func(fi storagedriver.FileInfo) error {
		e := parseRepoPath(repo, fi.Path(), fi.IsDir())
		e.digest = in.of(e.digest)
		switch e.kind {
		case entryNested:
			return storagedriver.ErrSkipDir
		case entryRevision:
			s.revisions[e.digest] = fi.ModTime()
		case entryTag:
			hist(e.tag)
		case entryTagCurrent:
			hist(e.tag)
			s.current[e.tag] = fi.ModTime()
		case entryTagIndex:
			hist(e.tag)[e.digest] = fi.ModTime()
		case entryLayer:
			s.layers[e.digest] = fi.ModTime()
		case entryUpload:
			s.uploads = append(s.uploads, e.id)
			return storagedriver.ErrSkipDir // data and hash states: nothing to read
		}
		return ctx.Err()
	})
	if err != nil && !isNotFound(err) {
		return nil, err
	}
	sort.Strings(s.uploads)
	return s, nil
}

// getContent reads a file: on the filesystem directly (open, read,
// close), elsewhere through the driver.
func getContent(ctx context.Context, d storagedriver.StorageDriver, p string) ([]byte, error) {
	if f := fsReaderFor(d); f != nil {
		return f.readFile(p)
	}
	return d.GetContent(ctx, p)
}

// manifestRead is a manifest read from the blob store.
type manifestRead struct {
	parsed *parsedManifest
	reason string
}

// manifestCache reads each manifest once, safely from many goroutines.
type manifestCache struct {
	d  storagedriver.StorageDriver
	in *interner
	mu sync.Mutex
	m  map[digest.Digest]manifestRead
}

func newManifestCache(d storagedriver.StorageDriver, in *interner) *manifestCache {
	return &manifestCache{d: d, in: in, m: map[digest.Digest]manifestRead{}}
}

// get returns the manifest dg, reading it if it was not read yet. Errors
// other than a missing blob are not cached.
func (c *manifestCache) get(ctx context.Context, dg digest.Digest) (*parsedManifest, string, error) {
	c.mu.Lock()
	r, ok := c.m[dg]
	c.mu.Unlock()
	if ok {
		return r.parsed, r.reason, nil
	}
	pm, reason, err := readManifest(ctx, c.d, c.in, dg)
	if err != nil && !isNotFound(err) {
		return nil, reason, err
	}
	c.mu.Lock()
	c.m[dg] = manifestRead{pm, reason}
	c.mu.Unlock()
	return pm, reason, err
}

// readRepositories reads every repository: one walk each, opts.Jobs
// repositories at a time, then every manifest, tag and upload start time,
// opts.Jobs reads at a time.
func readRepositories(ctx context.Context, d storagedriver.StorageDriver, names []string, cache *manifestCache, opts Options) ([]*repoState, error) {
	scans := make([]*repoScan, len(names))
	bar := opts.Progress.Count(int64(len(names)), "reading repositories")
	err := forEach(ctx, opts.Jobs, len(names), func(i int) error {
		s, err := scanRepository(ctx, d, cache.in, names[i], false)
		if err != nil {
			return fmt.Errorf("reading %s: %w", names[i], err)
		}
		scans[i] = s
		bar.Add(1)
		return nil
	})
	bar.Done()
	if err != nil {
		return nil, err
	}

	repos := make([]*repoState, len(names))
	var reads []func() error
	var mu sync.Mutex // guards the maps of repos while reads run
	for i, name := range names {
		s := scans[i]
		scans[i] = nil // what is kept of it is in r
		r := &repoState{name: name, revisions: map[digest.Digest]*manifestInfo{}, tags: map[string]digest.Digest{},
			history: s.history, layers: s.layers, uploads: map[string]time.Time{}}
		repos[i] = r
		wrap := func(what string, err error) error { return fmt.Errorf("reading %s of %s: %w", what, name, err) }
		for dg, t := range s.revisions {
			mi := &manifestInfo{digest: dg, modTime: t}
			r.revisions[dg] = mi
			reads = append(reads, func() error {
				pm, reason, err := cache.get(ctx, dg)
				if err != nil && !isNotFound(err) {
					return wrap("manifest "+dg.String(), err)
				}
				mi.parsed, mi.unknown = pm, reason
				return nil
			})
		}
		for tag := range s.current {
			reads = append(reads, func() error {
				b, err := getContent(ctx, d, pathFor(tagCurrentSpec{name, tag}))
				switch {
				case isNotFound(err):
					// Deleted since the walk: only history.
					return nil
				case err != nil:
					return wrap("tag "+tag, err)
				}
				dg, err := digest.Parse(strings.TrimSpace(string(b)))
				if err != nil {
					return wrap("tag "+tag, err)
				}
				dg = cache.in.of(dg)
				mu.Lock()
				r.tags[tag] = dg
				mu.Unlock()
				return nil
			})
		}
		for _, id := range s.uploads {
			reads = append(reads, func() error {
				var started time.Time
				if b, err := d.GetContent(ctx, pathFor(startedAtSpec{name, id})); err == nil {
					started, _ = time.Parse(time.RFC3339, strings.TrimSpace(string(b)))
				}
				mu.Lock()
				r.uploads[id] = started
				mu.Unlock()
				return nil
			})
		}
	}
	bar = opts.Progress.Count(int64(len(reads)), "reading manifests and tags")
	defer bar.Done()
	err = forEach(ctx, opts.Jobs, len(reads), func(i int) error {
		defer bar.Add(1)
		return reads[i]()
	})
	if err != nil {
		return nil, err
	}
	return repos, nil
}

type blobInfo struct {
	digest  digest.Digest
	size    int64
	modTime time.Time
}

// listBlobs lists every sha256 blob of the blob store with its data size:
// one walk per two-character prefix directory, opts.Jobs at a time (on S3
// each walk lists a thousand objects per request).
func listBlobs(ctx context.Context, d storagedriver.StorageDriver, in *interner, opts Options) ([]blobInfo, error) {
	if f := fsReaderFor(d); f != nil {
		return f.listBlobs(ctx, in, opts)
	}
	return walkBlobs(ctx, d, in, opts)
}

// interner gives every digest a run reads one string, however many links,
// listings and manifests name it: a storage of N blobs names each several
// times. A nil interner returns its input (or a new string).
type interner struct {
	mu sync.Mutex
	m  map[string]digest.Digest
}

func newInterner() *interner { return &interner{m: map[string]digest.Digest{}} }

// digest returns the digest spelled by b ("sha256:<hex>", not validated).
func (in *interner) digest(b []byte) digest.Digest {
	if in == nil {
		return digest.Digest(b)
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	d, ok := in.m[string(b)]
	if !ok {
		d = digest.Digest(b)
		in.m[string(d)] = d
	}
	return d
}

// of returns d's interned string.
func (in *interner) of(d digest.Digest) digest.Digest {
	if in == nil || d == "" {
		return d
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if s, ok := in.m[string(d)]; ok {
		return s
	}
	in.m[string(d)] = d
	return d
}

// walkBlobs is listBlobs through the driver's Walk.
func walkBlobs(ctx context.Context, d storagedriver.StorageDriver, in *interner, opts Options) ([]blobInfo, error) {
	bar := opts.Progress.Count(-1, "reading blobs")
	defer bar.Done()
	root := pathFor(blobsSpec{digest.SHA256})
	prefixes, err := d.List(ctx, root)
	if err != nil {
		if isNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("listing blobs: %w", err)
	}
	sort.Strings(prefixes)
	found := make([][]blobInfo, len(prefixes))
	err = forEach(ctx, opts.Jobs, len(prefixes), func(i int) error {
		err := d.Walk(ctx, prefixes[i], func(fi storagedriver.FileInfo) error {
			if fi.IsDir() || path.Base(fi.Path()) != "data" {
				return nil
			}
			dg := digest.NewDigestFromEncoded(digest.SHA256, path.Base(path.Dir(fi.Path())))
			if dg.Validate() != nil {
				return nil
			}
			found[i] = append(found[i], blobInfo{digest: in.of(dg), size: fi.Size(), modTime: fi.ModTime()})
			bar.Add(1)
			return ctx.Err()
		})
		if err != nil && !isNotFound(err) {
			return fmt.Errorf("listing blobs under %s: %w", prefixes[i], err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var out []blobInfo
	for _, f := range found {
		out = append(out, f...)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].digest < out[j].digest })
	return out, nil
}

// recentlyReferenced returns the digests a repository has referenced since
// t: tags' current targets whose link changed since t (and, unless
// tagsOnly, revisions and layer links written since t, with the blobs and
// children those revisions name).
func recentlyReferenced(ctx context.Context, d storagedriver.StorageDriver, repo string, t time.Time, tagsOnly bool) (map[digest.Digest]bool, error) {
	out := map[digest.Digest]bool{}
	s, err := scanRepository(ctx, d, nil, repo, tagsOnly)
	if err != nil {
		return nil, fmt.Errorf("re-reading %s: %w", repo, err)
	}
	for tag, mt := range s.current {
		if mt.Before(t) {
			continue
		}
		if b, err := getContent(ctx, d, pathFor(tagCurrentSpec{repo, tag})); err == nil {
			if dg, err := digest.Parse(strings.TrimSpace(string(b))); err == nil {
				out[dg] = true
			}
		}
	}
	if tagsOnly {
		return out, nil
	}
	for dg, mt := range s.revisions {
		if mt.Before(t) {
			continue
		}
		out[dg] = true
		// Not from the cache: a revision written since the plan may be a
		// manifest the plan never read.
		if pm, _, _ := readManifest(ctx, d, nil, dg); pm != nil {
			for _, b := range pm.blobs() {
				out[b] = true
			}
			for _, c := range pm.Manifests {
				out[c.Digest] = true
			}
		}
	}
	for dg, mt := range s.layers {
		if !mt.Before(t) {
			out[dg] = true
		}
	}
	return out, nil
}
