package gc

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sync/atomic"
	"testing"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/regkeeper/regkeeper/internal/testbed/embedded"
	"github.com/regkeeper/regkeeper/internal/testbed/regtest"
)

// countingDriver counts the reads of blob data (manifests, as the mark
// reads only those from the blob store). Its name is not "filesystem", so
// gc reads through it rather than below it.
type countingDriver struct {
	storagedriver.StorageDriver
	blobReads atomic.Int64
}

var blobData = regexp.MustCompile(`/blobs/sha256/[0-9a-f]{2}/[0-9a-f]{64}/data$`)

func (c *countingDriver) Name() string { return "counting" }

func (c *countingDriver) GetContent(ctx context.Context, p string) ([]byte, error) {
	if blobData.MatchString(p) {
		c.blobReads.Add(1)
	}
	return c.StorageDriver.GetContent(ctx, p)
}

func (c *countingDriver) Reader(ctx context.Context, p string, off int64) (io.ReadCloser, error) {
	if blobData.MatchString(p) {
		c.blobReads.Add(1)
	}
	return c.StorageDriver.Reader(ctx, p, off)
}

// plan makes a plan (writing the mark cache unless opts say otherwise)
// and returns it with the manifests it read.
func (c *countingDriver) plan(t *testing.T, opts Options) (*Plan, int64) {
	t.Helper()
	c.blobReads.Store(0)
	p, err := PlanGC(context.Background(), c, opts)
	if err != nil {
		t.Fatal(err)
	}
	return p, c.blobReads.Load()
}

var planOpts = cmpopts.IgnoreUnexported(Plan{})

// A second run reads only the manifests pushed since the first; a damaged
// or missing cache costs a full read and changes nothing in the plan.
func TestMarkCacheReadsOnlyNewManifests(t *testing.T) {
	srv, _, d := seeded(t)
	checkMarkCache(t, srv, d)
}

// TestMarkCacheS3 is TestMarkCacheReadsOnlyNewManifests on MinIO, counting
// GetObject requests for manifests.
func TestMarkCacheS3(t *testing.T) {
	const bucket = "registry"
	m := startMinIO(t, bucket)
	srv, _ := regtest.Seeded(t, embedded.Options{Storage: m.StorageYAML(bucket)})
	d, err := Open(context.Background(), srv.ConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	if d.Name() != "s3aws" {
		t.Fatalf("gc opened the %s driver, want s3aws", d.Name())
	}
	checkMarkCache(t, srv, d)
}

func checkMarkCache(t *testing.T, srv *embedded.Server, d storagedriver.StorageDriver) {
	ctx := context.Background()
	c := &countingDriver{StorageDriver: d}
	opts := noGrace()
	uncached := opts
	uncached.NoMarkCache = true
	cacheFile := pathFor(markCacheSpec{})

	want, all := c.plan(t, uncached)
	if _, err := d.Stat(ctx, cacheFile); !isNotFound(err) {
		t.Fatalf("--no-mark-cache wrote the cache: %v", err)
	}
	// Manifests read every run: those gc does not understand (kept and
	// reported each time), counted once per digest.
	unknown := map[string]bool{}
	for _, k := range want.Kept {
		unknown[k.Digest.String()] = true
	}
	if all <= int64(len(unknown)) {
		t.Fatalf("a full read read %d manifests, %d of them not understood", all, len(unknown))
	}

	first, n := c.plan(t, opts)
	if n != all {
		t.Errorf("first run with no cache read %d manifests, want %d", n, all)
	}
	if diff := cmp.Diff(want, first, planOpts); diff != "" {
		t.Errorf("first run (-uncached +cached):\n%s", diff)
	}
	second, n := c.plan(t, opts)
	if n != int64(len(unknown)) {
		t.Errorf("second run read %d manifests, want %d (the ones not understood)", n, len(unknown))
	}
	if diff := cmp.Diff(want, second, planOpts); diff != "" {
		t.Errorf("second run (-uncached +cached):\n%s", diff)
	}

	// Three new pushes: the next run reads those three.
	for _, tag := range []string{"new1", "new2", "new3"} {
		img, err := random.Image(256, 1)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(regtest.Ref(t, srv, "team-a/api:"+tag), img); err != nil {
			t.Fatal(err)
		}
	}
	want, _ = c.plan(t, uncached)
	third, n := c.plan(t, opts)
	if n != int64(len(unknown))+3 {
		t.Errorf("run after 3 pushes read %d manifests, want %d", n, len(unknown)+3)
	}
	if diff := cmp.Diff(want, third, planOpts); diff != "" {
		t.Errorf("run after 3 pushes (-uncached +cached):\n%s", diff)
	}
	t.Logf("%s: manifest reads: full %d, with the cache %d, after 3 pushes %d (%d not understood, read every run)", d.Name(), all, len(unknown), n, len(unknown))
	_, all = c.plan(t, uncached)

	// Damage the cache: flip one byte anywhere, cut it short, remove it.
	good, err := d.GetContent(ctx, cacheFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		b    []byte // nil: no file
	}{
		{"first byte", flip(good, 0)},
		{"middle byte", flip(good, len(good)/2)},
		{"checksum byte", flip(good, len(good)-1)},
		{"truncated", good[:len(good)-40]},
		{"trailing byte", append(bytes.Clone(good), 0)},
		{"empty", []byte{}},
		{"missing", nil},
	} {
		b := tc.b
		t.Run(tc.name, func(t *testing.T) {
			if b == nil {
				if err := d.Delete(ctx, cacheFile); err != nil {
					t.Fatal(err)
				}
			} else if err := d.PutContent(ctx, cacheFile, b); err != nil {
				t.Fatal(err)
			}
			got, n := c.plan(t, opts)
			if n != all {
				t.Errorf("read %d manifests, want all %d", n, all)
			}
			if diff := cmp.Diff(want, got, planOpts); diff != "" {
				t.Errorf("plan (-uncached +damaged cache):\n%s", diff)
			}
			// That run wrote a good cache again.
			if _, n := c.plan(t, opts); n != int64(len(unknown)) {
				t.Errorf("the run after read %d manifests, want %d", n, len(unknown))
			}
		})
	}
}

// A manifest whose blob was lost after the cache was written is read, and
// found missing, as without a cache: kept and reported.
func TestMarkCacheLostManifestBlob(t *testing.T) {
	srv, _, d := seeded(t)
	c := &countingDriver{StorageDriver: d}
	opts := noGrace()
	uncached := opts
	uncached.NoMarkCache = true
	first, _ := c.plan(t, opts) // writes the cache
	if len(first.Manifests) == 0 {
		t.Fatal("nothing to delete in the estate")
	}
	lost := first.Manifests[0]
	if err := os.Remove(filepath.Join(srv.Root, filepath.FromSlash(pathFor(blobDataSpec{lost.Digest})))); err != nil {
		t.Fatal(err)
	}
	want, _ := c.plan(t, uncached)
	got, _ := c.plan(t, opts)
	if diff := cmp.Diff(want, got, planOpts); diff != "" {
		t.Errorf("plan (-uncached +cached):\n%s", diff)
	}
	kept := false
	for _, k := range got.Kept {
		kept = kept || (k.Digest == lost.Digest && k.Repository == lost.Repository && k.Reason == "blob missing")
	}
	if !kept {
		t.Errorf("%s@%s, its blob lost, is not kept as \"blob missing\": %+v", lost.Repository, lost.Digest, got.Kept)
	}
}

func flip(b []byte, i int) []byte {
	b = bytes.Clone(b)
	b[i] ^= 0x01
	return b
}

// The file format reads back what it wrote, and refuses any damage.
func TestMarkCacheFormat(t *testing.T) {
	s := func(b byte) sum256 { var x sum256; x[0], x[31] = b, b; return x }
	subj := s(9)
	m := map[sum256]*cachedNode{
		s(1): {mediaType: "application/vnd.oci.image.manifest.v1+json", refs: []sum256{s(2), s(3)}, subject: &subj},
		s(4): {mediaType: "application/vnd.oci.image.index.v1+json", children: []sum256{s(1)}},
		s(5): {mediaType: "application/vnd.docker.distribution.manifest.v2+json", refs: []sum256{s(6)},
			base: &cachedBase{name: "registry.example.com/base/debian:12", digest: s(7)}},
	}
	keys := []sum256{s(1), s(4), s(5)}
	var buf bytes.Buffer
	if err := encodeMarkCache(&buf, len(keys), func(i int) (sum256, *cachedNode) { return keys[i], m[keys[i]] }); err != nil {
		t.Fatal(err)
	}
	got, err := decodeMarkCache(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(m, got, cmp.AllowUnexported(cachedNode{}, cachedBase{})); diff != "" {
		t.Errorf("round trip (-wrote +read):\n%s", diff)
	}
	for i := range buf.Len() {
		if _, err := decodeMarkCache(bytes.NewReader(flip(buf.Bytes(), i))); err == nil {
			t.Errorf("byte %d flipped: read without error", i)
		}
	}
	for n := range buf.Len() {
		if _, err := decodeMarkCache(bytes.NewReader(buf.Bytes()[:n])); err == nil {
			t.Errorf("cut to %d bytes: read without error", n)
		}
	}
}
