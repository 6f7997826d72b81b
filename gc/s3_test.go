package gc

import (
	"context"
	"os"
	"path"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/regkeeper/regkeeper/internal/testbed/embedded"
	"github.com/regkeeper/regkeeper/internal/testbed/minio"
	"github.com/regkeeper/regkeeper/internal/testbed/regtest"
)

// startMinIO starts MinIO for one test with a fresh bucket, or skips the
// test when MinIO is not installed.
func startMinIO(t *testing.T, bucket string) *minio.Server {
	t.Helper()
	return minio.ForTest(t, bucket)
}

// TestGCEstateS3 is TestGCEstate on the s3-aws driver against MinIO: the
// registry and gc open the same config.yml, and the outcome is checked
// through the S3 API.
func TestGCEstateS3(t *testing.T) {
	const bucket = "registry"
	m := startMinIO(t, bucket)
	srv, e := regtest.Seeded(t, embedded.Options{Storage: m.StorageYAML(bucket)})
	if typ := srv.Config.Storage.Type(); typ != "s3" {
		t.Fatalf("registry storage is %q, want s3", typ)
	}
	if fi, err := os.Stat(srv.Root); err == nil && fi.IsDir() {
		if ents, _ := os.ReadDir(srv.Root); len(ents) > 0 {
			t.Fatalf("the registry wrote to the filesystem root %s", srv.Root)
		}
	}
	d, err := Open(context.Background(), srv.ConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	if d.Name() != "s3aws" {
		t.Fatalf("gc opened the %s driver, want s3aws", d.Name())
	}
	// The sweep deletes links and blobs 1,000 keys a request, through the
	// driver's own client.
	if b := newS3Batch(d); b == nil || b.Bucket != bucket {
		t.Fatalf("no S3 batch deleter for the s3aws driver: %+v", b)
	}
	ctx := context.Background()
	exists := func(p string) bool {
		ok, err := m.Exists(ctx, bucket, p)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	blobSizes := func() map[digest.Digest]int64 {
		objs, err := m.Objects(ctx, bucket, strings.TrimPrefix(pathFor(blobsSpec{digest.SHA256}), "/")+"/")
		if err != nil {
			t.Fatal(err)
		}
		out := map[digest.Digest]int64{}
		for k, size := range objs {
			if path.Base(k) == "data" {
				out[digest.NewDigestFromEncoded(digest.SHA256, path.Base(path.Dir(k)))] = size
			}
		}
		return out
	}
	if len(blobSizes()) == 0 {
		t.Fatal("no blobs in the bucket after seeding")
	}
	checkGCEstate(t, srv.Host, e, d, exists, blobSizes)
}
