package gc

import (
	"context"
	"fmt"
	"path"
	"slices"
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

// manifestCache reads each manifest once, safely from many goroutines.
// With a mark cache (markcache.go) loaded, a manifest it holds is not read
// at all.
type manifestCache struct {
	d   storagedriver.StorageDriver
	ids *idTable
	mu  sync.Mutex
	// m are the listed manifests, by id: those asked for (unreadable
	// when one could not be read) and, until the mark is done, those the
	// mark cache file held (markcache.go), which count as asked once they
	// are (isAsked); extra are the manifests asked for with ids past the
	// listing (the blob missing, in the quarantine). asked counts both.
	m       []*manifestNode
	extra   map[uint32]*manifestNode
	askedID idBits
	asked   int
	// reasons say why gc keeps a manifest without judging it, for the few
	// it does not understand.
	reasons map[uint32]string
	// read counts the manifests read from storage.
	read int
	// reading are the reads in flight, closed when done.
	reading map[uint32]chan struct{}
}

// unreadable stands in the manifest cache for a manifest read and found
// missing or not a manifest.
var unreadable = &manifestNode{}

// reason says why gc keeps the manifest id without judging it (unknown
// media type, unreadable), "" when it understood it or did not read it.
func (c *manifestCache) reason(id uint32) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reasons[id]
}

func newManifestCache(d storagedriver.StorageDriver, ids *idTable) *manifestCache {
	return &manifestCache{d: d, ids: ids, m: make([]*manifestNode, ids.n), askedID: newIDBits(int(ids.n)), reasons: map[uint32]string{}}
}

// isAsked says whether the manifest id was asked for; c.mu is held.
func (c *manifestCache) isAsked(id uint32) bool {
	if int(id) < len(c.m) {
		return c.askedID.has(id)
	}
	return c.extra[id] != nil
}

// dropUnasked drops what the mark cache file held that the mark did not
// ask for.
func (c *manifestCache) dropUnasked() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id := range c.m {
		if !c.askedID.has(uint32(id)) {
			c.m[id] = nil
		}
	}
}

// at returns the manifest id's entry; c.mu is held.
func (c *manifestCache) at(id uint32) *manifestNode {
	if int(id) < len(c.m) {
		return c.m[id]
	}
	return c.extra[id]
}

// set makes the manifest id's entry n (unreadable for nil); c.mu is held.
func (c *manifestCache) set(id uint32, n *manifestNode) {
	if n == nil {
		n = unreadable
	}
	if !c.isAsked(id) {
		c.asked++
	}
	if int(id) < len(c.m) {
		c.askedID.add(id)
		c.m[id] = n
		return
	}
	if c.extra == nil {
		c.extra = map[uint32]*manifestNode{}
	}
	c.extra[id] = n
}

// node returns the manifest id if it was asked for and could be read.
func (c *manifestCache) node(id uint32) *manifestNode {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n := c.at(id); n != unreadable && c.isAsked(id) {
		return n
	}
	return nil
}

// get returns the manifest id, reading it if it was not read yet (once:
// a caller asking while another reads it waits for that read). Errors
// other than a missing blob are not cached.
func (c *manifestCache) get(ctx context.Context, id uint32) (*manifestNode, string, error) {
	for {
		c.mu.Lock()
		n := c.at(id)
		if n != nil && !c.isAsked(id) {
			c.set(id, n) // from the mark cache file
		}
		if n != nil {
			reason := c.reasons[id]
			c.mu.Unlock()
			if n == unreadable {
				n = nil
			}
			return n, reason, nil
		}
		wait, reading := c.reading[id]
		if !reading {
			break // c.mu is held
		}
		c.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, "", ctx.Err()
		}
	}
	done := make(chan struct{})
	if c.reading == nil {
		c.reading = map[uint32]chan struct{}{}
	}
	c.reading[id] = done
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.reading, id)
		c.mu.Unlock()
		close(done)
	}()
	pm, reason, err := readManifest(ctx, c.d, nil, c.ids.digest(id))
	if err != nil && !isNotFound(err) {
		return nil, reason, err
	}
	n := nodeOf(pm, c.ids)
	c.mu.Lock()
	c.set(id, n)
	if reason != "" {
		c.reasons[id] = reason
	}
	c.read++
	c.mu.Unlock()
	return n, reason, err
}

// readRepositories reads every repository: one walk each, opts.Jobs
// repositories at a time, each walk turned at once into the repository's
// compact state (repoState), then every manifest, tag and upload start
// time, opts.Jobs reads at a time.
func readRepositories(ctx context.Context, d storagedriver.StorageDriver, names []string, cache *manifestCache, opts Options) ([]*repoState, error) {
	repos := make([]*repoState, len(names))
	current := make([][]string, len(names)) // tags with a current link
	uploads := make([][]string, len(names))
	bar := opts.Progress.Count(int64(len(names)), "reading repositories")
	err := forEach(ctx, opts.Jobs, len(names), func(i int) error {
		s, err := scanRepository(ctx, d, nil, names[i], false)
		if err != nil {
			return fmt.Errorf("reading %s: %w", names[i], err)
		}
		repos[i], current[i], uploads[i] = compactScan(names[i], s, cache.ids), sortedKeys(s.current), s.uploads
		bar.Add(1)
		return nil
	})
	bar.Done()
	if err != nil {
		return nil, err
	}

	// The reads, repository by repository (its revisions, then its tags,
	// then its uploads), are numbered: starts[i] is repository i's first.
	// None is held as a closure (a closure and its func value for each of
	// 80,000 reads held 5 MB at 256,000 blobs).
	starts := make([]int, len(repos)+1)
	for i, r := range repos {
		starts[i+1] = starts[i] + len(r.revisions) + len(current[i]) + len(uploads[i])
	}
	var mu sync.Mutex // guards the maps of repos while reads run
	read := func(k int) error {
		i := sort.Search(len(repos), func(i int) bool { return starts[i+1] > k })
		r, j := repos[i], k-starts[i]
		wrap := func(what string, err error) error { return fmt.Errorf("reading %s of %s: %w", what, r.name, err) }
		if j < len(r.revisions) {
			mi := &r.revisions[j]
			n, _, err := cache.get(ctx, mi.id)
			if err != nil && !isNotFound(err) {
				return wrap("manifest "+cache.ids.digest(mi.id).String(), err)
			}
			mi.node = n
			return nil
		}
		j -= len(r.revisions)
		if j < len(current[i]) {
			tag := current[i][j]
			b, err := getContent(ctx, d, pathFor(tagCurrentSpec{r.name, tag}))
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
			s, ok := sumOf(dg)
			if !ok {
				return wrap("tag "+tag, fmt.Errorf("%s is not a sha256 digest", dg))
			}
			id := cache.ids.id(s)
			mu.Lock()
			r.tags[tag] = id
			mu.Unlock()
			return nil
		}
		id := uploads[i][j-len(current[i])]
		var started time.Time
		if b, err := d.GetContent(ctx, pathFor(startedAtSpec{r.name, id})); err == nil {
			started, _ = time.Parse(time.RFC3339, strings.TrimSpace(string(b)))
		}
		mu.Lock()
		r.uploads[id] = started
		mu.Unlock()
		return nil
	}
	total := starts[len(repos)]
	bar = opts.Progress.Count(int64(total), "reading manifests and tags")
	defer bar.Done()
	err = forEach(ctx, opts.Jobs, total, func(k int) error {
		defer bar.Add(1)
		return read(k)
	})
	if err != nil {
		return nil, err
	}
	return repos, nil
}

// compactScan turns a repository's walk into the mark's state: every
// digest an id (ids.go), every time Unix nanoseconds, links in sorted
// slices. Links that are not sha256 are not gc's (the blob store it lists
// is sha256) and are left out.
func compactScan(name string, s *repoScan, ids *idTable) *repoState {
	r := &repoState{name: name, revisions: make(revisionList, 0, len(s.revisions)), tags: map[string]uint32{},
		history: make(map[string][]idTime, len(s.history)), layers: idTimes(s.layers, ids), uploads: map[string]time.Time{}}
	for dg, t := range s.revisions {
		if k, ok := sumOf(dg); ok {
			r.revisions = append(r.revisions, manifestInfo{id: ids.id(k), mod: nanos(t)})
		}
	}
	slices.SortFunc(r.revisions, func(a, b manifestInfo) int { return cmpUint32(a.id, b.id) })
	for tag, h := range s.history {
		r.history[tag] = idTimes(h, ids)
	}
	return r
}

// idTimes is a digest -> time map as a slice sorted by id.
func idTimes(m map[digest.Digest]time.Time, ids *idTable) []idTime {
	out := make([]idTime, 0, len(m))
	for dg, t := range m {
		if k, ok := sumOf(dg); ok {
			out = append(out, idTime{ids.id(k), nanos(t)})
		}
	}
	slices.SortFunc(out, func(a, b idTime) int { return cmpUint32(a.id, b.id) })
	return out
}

// blobInfo is a blob of the blob store: 48 bytes.
type blobInfo struct {
	s    sum256
	size int64
	mod  int64 // Unix nanoseconds
}

// blobList is the blob store's listing, one slice per two-character
// prefix directory in order, each sorted: listed once, never merged into
// a copy.
type blobList [][]blobInfo

func (l blobList) each(fn func(b *blobInfo)) {
	for _, c := range l {
		for i := range c {
			fn(&c[i])
		}
	}
}

// index returns a function that gives a digest's place in the listing,
// counted in the order of each, or -1 when it is not listed. The blob
// store's prefix directories are a digest's first byte, so each slice is
// looked up by it; a blob stored under another prefix (not where the
// registry puts it) is not found there, and the caller reads it.
func (l blobList) index() func(sum256) int {
	var byFirst [256][]blobInfo
	var offset [256]int
	n := 0
	for _, c := range l {
		if len(c) > 0 && c[0].s[0] == c[len(c)-1].s[0] {
			byFirst[c[0].s[0]], offset[c[0].s[0]] = c, n
		}
		n += len(c)
	}
	return func(s sum256) int {
		c := byFirst[s[0]]
		j := sort.Search(len(c), func(j int) bool { return !c[j].s.less(s) })
		if j < len(c) && c[j].s == s {
			return offset[s[0]] + j
		}
		return -1
	}
}

func (l blobList) len() int {
	n := 0
	for _, c := range l {
		n += len(c)
	}
	return n
}

// sortBlobs sorts one prefix directory's listing and returns it in a
// slice of exactly its length: the listing is held the whole run, and
// appending left up to half of it unused.
func sortBlobs(c []blobInfo) []blobInfo {
	sort.Slice(c, func(i, j int) bool { return c[i].s.less(c[j].s) })
	return append(make([]blobInfo, 0, len(c)), c...)
}

// listBlobs lists every sha256 blob of the blob store with its data size:
// one walk per two-character prefix directory, opts.Jobs at a time (on S3
// each walk lists a thousand objects per request). in is not used: blobs
// are listed as sums.
func listBlobs(ctx context.Context, d storagedriver.StorageDriver, in *interner, opts Options) (blobList, error) {
	if f := fsReaderFor(d); f != nil {
		return f.listBlobs(ctx, in, opts)
	}
	if flat := flatListerOf(d); flat != nil {
		return listBlobsFlat(ctx, d, flat, opts)
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

// blobPrefixes lists the blob store's prefix directories, sorted (none
// when it has no blob store).
func blobPrefixes(ctx context.Context, d storagedriver.StorageDriver) ([]string, error) {
	prefixes, err := d.List(ctx, pathFor(blobsSpec{digest.SHA256}))
	if err != nil {
		if isNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("listing blobs: %w", err)
	}
	sort.Strings(prefixes)
	return prefixes, nil
}

// walkBlobs is listBlobs through the driver's Walk.
func walkBlobs(ctx context.Context, d storagedriver.StorageDriver, _ *interner, opts Options) (blobList, error) {
	bar := opts.Progress.Count(-1, "reading blobs")
	defer bar.Done()
	prefixes, err := blobPrefixes(ctx, d)
	if err != nil {
		return nil, err
	}
	found := make(blobList, len(prefixes))
	err = forEach(ctx, opts.Jobs, len(prefixes), func(i int) error {
		err := d.Walk(ctx, prefixes[i], func(fi storagedriver.FileInfo) error {
			if fi.IsDir() || path.Base(fi.Path()) != "data" {
				return nil
			}
			s, ok := sumOfHex(path.Base(path.Dir(fi.Path())))
			if !ok {
				return nil
			}
			found[i] = append(found[i], blobInfo{s: s, size: fi.Size(), mod: nanos(fi.ModTime())})
			bar.Add(1)
			return ctx.Err()
		})
		if err != nil && !isNotFound(err) {
			return fmt.Errorf("listing blobs under %s: %w", prefixes[i], err)
		}
		found[i] = sortBlobs(found[i])
		return nil
	})
	if err != nil {
		return nil, err
	}
	return found, nil
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
