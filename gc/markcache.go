// The mark cache: what the mark learned of each manifest, kept in the
// storage so that the next run reads only the manifests it has not seen.
//
// A manifest is immutable by digest: its content, and so what it
// references, is the same for every read. The cache maps a manifest's
// digest to its manifestNode (media type, the blobs and children it
// names, its subject, its base annotations). It holds only manifests gc
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
	"sort"

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

// loadMarkCache reads the mark cache; nil when there is none or it cannot
// be used (the run then reads every manifest).
func loadMarkCache(ctx context.Context, d storagedriver.StorageDriver, log *slog.Logger) map[sum256]*manifestNode {
	p := pathFor(markCacheSpec{})
	rc, err := d.Reader(ctx, p, 0)
	if err != nil {
		if !isNotFound(err) {
			log.Warn("gc: mark cache unreadable, reading every manifest", "path", p, "error", err)
		} else {
			log.Info("gc: no mark cache, reading every manifest", "path", p)
		}
		return nil
	}
	defer rc.Close()
	m, err := decodeMarkCache(rc)
	if err != nil {
		log.Warn("gc: mark cache not used, reading every manifest", "path", p, "error", err)
		return nil
	}
	log.Info("gc: mark cache read", "manifests", len(m))
	return m
}

// saveMarkCache writes the manifests this run understood. A failure is
// logged: the next run reads every manifest, as it would without a cache.
func saveMarkCache(ctx context.Context, d storagedriver.StorageDriver, c *manifestCache, log *slog.Logger) {
	c.mu.Lock()
	keys := make([]sum256, 0, len(c.m))
	for k, n := range c.m {
		if n != nil && c.reasons[k] == "" && markCacheType(n.mediaType) != 0 {
			keys = append(keys, k)
		}
	}
	c.mu.Unlock()
	sort.Slice(keys, func(i, j int) bool { return keys[i].less(keys[j]) })
	p := pathFor(markCacheSpec{})
	err := func() error {
		w, err := d.Writer(ctx, p, false)
		if err != nil {
			return err
		}
		bw := bufio.NewWriterSize(w, 1<<20)
		if err := encodeMarkCache(bw, keys, func(k sum256) *manifestNode { return c.m[k] }); err != nil {
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

// encodeMarkCache writes the cache of keys (sorted) to w.
func encodeMarkCache(w io.Writer, keys []sum256, node func(sum256) *manifestNode) error {
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
	uv(len(keys))
	for _, k := range keys {
		n := node(k)
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
func decodeMarkCache(r io.Reader) (map[sum256]*manifestNode, error) {
	hr := &hashingReader{r: bufio.NewReaderSize(r, 1<<20), h: sha256.New()}
	bad := func(what string) error { return fmt.Errorf("%w: %s", errMarkCache, what) }
	magic := make([]byte, len(markCacheMagic))
	if err := hr.full(magic); err != nil || string(magic) != markCacheMagic {
		return nil, bad("header")
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
		return nil, err
	}
	m := make(map[sum256]*manifestNode, min(count, 1<<16))
	for range count {
		var k sum256
		if err := hr.full(k[:]); err != nil {
			return nil, bad("truncated")
		}
		n := &manifestNode{}
		code, err := hr.ReadByte()
		if err != nil || code == 0 || int(code) >= len(markCacheTypes) {
			return nil, bad("media type")
		}
		n.mediaType = knownTypeNames[markCacheTypes[code]]
		if n.refs, err = readSums(); err != nil {
			return nil, err
		}
		if n.children, err = readSums(); err != nil {
			return nil, err
		}
		flags, err := hr.ReadByte()
		if err != nil || flags > 3 {
			return nil, bad("flags")
		}
		if flags&1 != 0 {
			n.subject = new(sum256)
			if err := hr.full(n.subject[:]); err != nil {
				return nil, bad("truncated")
			}
		}
		if flags&2 != 0 {
			n.base = &baseRef{}
			if n.base.name, err = str(); err != nil {
				return nil, err
			}
			if err := hr.full(n.base.digest[:]); err != nil {
				return nil, bad("truncated")
			}
		}
		m[k] = n
	}
	want := hr.h.Sum(nil)
	got := make([]byte, sha256.Size)
	if _, err := io.ReadFull(hr.r, got); err != nil || !bytes.Equal(got, want) {
		return nil, bad("checksum")
	}
	if _, err := hr.r.ReadByte(); err != io.EOF {
		return nil, bad("trailing bytes")
	}
	return m, nil
}
