// The mark cache: what the mark learned of each manifest, kept in the
// storage so that the next run reads only the manifests it has not seen.
//
// A manifest is immutable by digest: its content, and so what it
// references, is the same for every read. The cache maps a manifest's
// digest to what the mark keeps of it (manifestNode: media type, the
// blobs and children it names, its subject, its base annotations), with
// every digest spelled as its sum: ids (ids.go) are the run's own, so
// nodes are turned into sums when written and back when read. It holds only manifests gc
// understood (a known media type, read in full); an unreadable or unknown
// one is read again, and reported again, every run.
//
// It is one file, regkeeper-markcache beside the gc lock, written by a
// real run (not a dry run) after its mark, with the manifests that run
// used (what the storage no longer holds drops out). Its last 32 bytes
// are the SHA-256 of everything before them: a file that is missing, of
// another version, truncated or altered in any byte is ignored as a
// whole, with a warning, and the run reads every manifest. Nothing in it
// is trusted beyond content addressing: an entry says what the manifest
// with that digest references, which no later push can change.
//
// Format (integers are unsigned varints):
//
//	"regkeeper-markcache v1\n"
//	count
//	count times, sorted by digest:
//	    digest (32 bytes)  mediaType (1 byte: its place in markCacheTypes)
//	    refs (count, 32 bytes each)  children (count, 32 bytes each)
//	    flags (1: subject, 2: base)  [subject (32 bytes)]
//	    [base name (length, bytes)  base digest (32 bytes)]
//	sha256 of all the above (32 bytes)

package gc

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
)

const markCacheMagic = "regkeeper-markcache v1\n"

// markCacheTypes are the media types a cached manifest can have (gc
// caches only those it understands), by their code in the file; codes are
// never reused.
var markCacheTypes = []string{
	"",
	"application/vnd.docker.distribution.manifest.v2+json",
	"application/vnd.docker.distribution.manifest.list.v2+json",
	"application/vnd.oci.image.manifest.v1+json",
	"application/vnd.oci.image.index.v1+json",
}

func markCacheType(mt string) byte {
	for i, t := range markCacheTypes {
		if i > 0 && t == mt {
			return byte(i)
		}
	}
	return 0
}

// cachedNode is a manifestNode as the file holds it: digests as sums.
type cachedNode struct {
	mediaType string
	refs      []sum256
	children  []sum256
	subject   *sum256
	base      *cachedBase
}

type cachedBase struct {
	name   string
	digest sum256
}

// cached is n with its digests spelled as sums.
func (t *idTable) cached(n *manifestNode) *cachedNode {
	sums := func(list []uint32) []sum256 {
		if len(list) == 0 {
			return nil
		}
		out := make([]sum256, len(list))
		for i, id := range list {
			out[i] = t.sum(id)
		}
		return out
	}
	c := &cachedNode{mediaType: n.mediaTypeName(), refs: sums(n.refs()), children: sums(n.children())}
	if id, ok := n.subject(); ok {
		s := t.sum(id)
		c.subject = &s
	}
	if b := n.base(); b != nil {
		c.base = &cachedBase{name: b.name, digest: t.sum(b.digest)}
	}
	return c
}

// node is c with its digests named by ids.
func (t *idTable) node(c *cachedNode) *manifestNode {
	n := &manifestNode{mediaType: markCacheType(c.mediaType)}
	if k := len(c.refs) + len(c.children); k > 0 {
		n.ids = make([]uint32, 0, k)
	}
	for _, s := range c.refs {
		n.ids = append(n.ids, t.id(s))
	}
	n.nrefs = uint32(len(n.ids))
	for _, s := range c.children {
		n.ids = append(n.ids, t.id(s))
	}
	var subject *uint32
	if c.subject != nil {
		id := t.id(*c.subject)
		subject = &id
	}
	var base *baseRef
	if c.base != nil {
		base = &baseRef{name: c.base.name, digest: t.id(c.base.digest)}
	}
	n.setRare(c.mediaType, subject, base)
	return n
}

// loadMarkCache puts into c, before anything is asked of it, the
// manifests the mark cache holds whose blob is listed (those whose blob
// is not are read, and found missing, as without a cache). With no cache,
// or one that cannot be used, c stays empty and the run reads every
// manifest.
func loadMarkCache(ctx context.Context, d storagedriver.StorageDriver, log *slog.Logger, c *manifestCache) {
	p := pathFor(markCacheSpec{})
	rc, err := d.Reader(ctx, p, 0)
	if err != nil {
		if !isNotFound(err) {
			log.Warn("gc: mark cache unreadable, reading every manifest", "path", p, "error", err)
		} else {
			log.Info("gc: no mark cache, reading every manifest", "path", p)
		}
		return
	}
	defer rc.Close()
	ids := c.ids
	count, err := decodeMarkCacheEach(rc, func(k sum256, n *cachedNode) {
		if i := ids.index(k); i >= 0 {
			c.m[i] = ids.node(n)
		}
	})
	if err != nil {
		clear(c.m)
		log.Warn("gc: mark cache not used, reading every manifest", "path", p, "error", err)
		return
	}
	log.Info("gc: mark cache read", "manifests", count)
}

// saveMarkCache writes the manifests this run understood. A failure is
// logged: the next run reads every manifest, as it would without a cache.
func saveMarkCache(ctx context.Context, d storagedriver.StorageDriver, c *manifestCache, log *slog.Logger) {
	c.mu.Lock()
	var keys []uint32
	add := func(id uint32, n *manifestNode) {
		if n != nil && n != unreadable && c.reasons[id] == "" && n.mediaType != 0 {
			keys = append(keys, id)
		}
	}
	for id, n := range c.m {
		if c.askedID.has(uint32(id)) {
			add(uint32(id), n)
		}
	}
	for id, n := range c.extra {
		add(id, n)
	}
	c.mu.Unlock()
	c.ids.sortBySum(keys)
	p := pathFor(markCacheSpec{})
	err := func() error {
		w, err := d.Writer(ctx, p, false)
		if err != nil {
			return err
		}
		bw := bufio.NewWriterSize(w, 1<<20)
		err = encodeMarkCache(bw, len(keys), func(i int) (sum256, *cachedNode) {
			c.mu.Lock()
			n := c.at(keys[i])
			c.mu.Unlock()
			return c.ids.sum(keys[i]), c.ids.cached(n)
		})
		if err != nil {
			w.Cancel(ctx)
			return err
		}
		if err := bw.Flush(); err != nil {
			w.Cancel(ctx)
			return err
		}
		if err := w.Commit(ctx); err != nil {
			w.Close()
			return err
		}
		return w.Close()
	}()
	if err != nil {
		log.Warn("gc: writing the mark cache failed; the next run reads every manifest", "path", p, "error", err)
		return
	}
	log.Info("gc: mark cache written", "manifests", len(keys))
}

// encodeMarkCache writes the cache of count manifests, given by entry in
// the order of their digests, to w.
func encodeMarkCache(w io.Writer, count int, entry func(i int) (sum256, *cachedNode)) error {
	h := sha256.New()
	mw := io.MultiWriter(w, h)
	var buf []byte
	uv := func(n int) { buf = binary.AppendUvarint(buf, uint64(n)) }
	sums := func(list []sum256) {
		uv(len(list))
		for _, s := range list {
			buf = append(buf, s[:]...)
		}
	}
	buf = append(buf, markCacheMagic...)
	uv(count)
	for i := range count {
		k, n := entry(i)
		buf = append(buf, k[:]...)
		buf = append(buf, markCacheType(n.mediaType))
		sums(n.refs)
		sums(n.children)
		var flags byte
		if n.subject != nil {
			flags |= 1
		}
		if n.base != nil {
			flags |= 2
		}
		buf = append(buf, flags)
		if n.subject != nil {
			buf = append(buf, n.subject[:]...)
		}
		if n.base != nil {
			uv(len(n.base.name))
			buf = append(buf, n.base.name...)
			buf = append(buf, n.base.digest[:]...)
		}
		if len(buf) > 64<<10 {
			if _, err := mw.Write(buf); err != nil {
				return err
			}
			buf = buf[:0]
		}
	}
	if _, err := mw.Write(buf); err != nil {
		return err
	}
	_, err := w.Write(h.Sum(nil))
	return err
}

// hashingReader reads through bufio, hashing what it gives out.
type hashingReader struct {
	r *bufio.Reader
	h hash.Hash
}

func (hr *hashingReader) ReadByte() (byte, error) {
	b, err := hr.r.ReadByte()
	if err == nil {
		hr.h.Write([]byte{b})
	}
	return b, err
}

func (hr *hashingReader) full(p []byte) error {
	if _, err := io.ReadFull(hr.r, p); err != nil {
		return err
	}
	hr.h.Write(p)
	return nil
}

var errMarkCache = errors.New("not a mark cache of this version, or damaged")

// decodeMarkCache reads a cache written by encodeMarkCache; any damage is
// an error (errMarkCache or the read's).
func decodeMarkCache(r io.Reader) (map[sum256]*cachedNode, error) {
	m := map[sum256]*cachedNode{}
	if _, err := decodeMarkCacheEach(r, func(k sum256, n *cachedNode) { m[k] = n }); err != nil {
		return nil, err
	}
	return m, nil
}

// decodeMarkCacheEach reads a cache written by encodeMarkCache, giving
// each entry to fn as it is read, and returns their count; any damage is
// an error (errMarkCache or the read's), after which what fn was given
// must not be used.
func decodeMarkCacheEach(r io.Reader, fn func(sum256, *cachedNode)) (int, error) {
	hr := &hashingReader{r: bufio.NewReaderSize(r, 1<<20), h: sha256.New()}
	bad := func(what string) error { return fmt.Errorf("%w: %s", errMarkCache, what) }
	magic := make([]byte, len(markCacheMagic))
	if err := hr.full(magic); err != nil || string(magic) != markCacheMagic {
		return 0, bad("header")
	}
	uv := func(limit uint64) (int, error) {
		n, err := binary.ReadUvarint(hr)
		if err != nil || n > limit {
			return 0, bad("length")
		}
		return int(n), nil
	}
	readSums := func() ([]sum256, error) {
		n, err := uv(1 << 20)
		if err != nil || n == 0 {
			return nil, err
		}
		out := make([]sum256, 0, min(n, 1024)) // a damaged length must not allocate much
		for range n {
			var s sum256
			if err := hr.full(s[:]); err != nil {
				return nil, bad("truncated")
			}
			out = append(out, s)
		}
		return out, nil
	}
	str := func() (string, error) {
		n, err := uv(4 << 10)
		if err != nil {
			return "", err
		}
		b := make([]byte, n)
		if err := hr.full(b); err != nil {
			return "", bad("truncated")
		}
		return string(b), nil
	}
	count, err := uv(1 << 40)
	if err != nil {
		return 0, err
	}
	for range count {
		var k sum256
		if err := hr.full(k[:]); err != nil {
			return 0, bad("truncated")
		}
		n := &cachedNode{}
		code, err := hr.ReadByte()
		if err != nil || code == 0 || int(code) >= len(markCacheTypes) {
			return 0, bad("media type")
		}
		n.mediaType = knownTypeNames[markCacheTypes[code]]
		if n.refs, err = readSums(); err != nil {
			return 0, err
		}
		if n.children, err = readSums(); err != nil {
			return 0, err
		}
		flags, err := hr.ReadByte()
		if err != nil || flags > 3 {
			return 0, bad("flags")
		}
		if flags&1 != 0 {
			n.subject = new(sum256)
			if err := hr.full(n.subject[:]); err != nil {
				return 0, bad("truncated")
			}
		}
		if flags&2 != 0 {
			n.base = &cachedBase{}
			if n.base.name, err = str(); err != nil {
				return 0, err
			}
			if err := hr.full(n.base.digest[:]); err != nil {
				return 0, bad("truncated")
			}
		}
		fn(k, n)
	}
	want := hr.h.Sum(nil)
	got := make([]byte, sha256.Size)
	if _, err := io.ReadFull(hr.r, got); err != nil || !bytes.Equal(got, want) {
		return 0, bad("checksum")
	}
	if _, err := hr.r.ReadByte(); err != io.EOF {
		return 0, bad("trailing bytes")
	}
	return count, nil
}
