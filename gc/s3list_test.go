package gc

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/opencontainers/go-digest"
)

// TestS3ListBlobs: on MinIO, the blob store listed through the driver's
// client (one delimited listing, then one flat listing per first character
// of the prefix directories) is exactly the driver's walk of each prefix
// directory: the same blobs, sizes and times, in the same slices, with
// files that are not blob data, names that are not digests and a blob
// stored under another prefix than its own left as the walk leaves them;
// and it sends a listing per first hex digit where the walk sends one per
// prefix directory.
func TestS3ListBlobs(t *testing.T) {
	const bucket = "list"
	m := startMinIO(t, bucket)
	cfg := filepath.Join(t.TempDir(), "config.yml")
	yml := "version: 0.1\nstorage:\n" + indent(m.StorageYAML(bucket), "  ")
	if err := os.WriteFile(cfg, []byte(yml), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	d, err := Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	p := S3PlaceOf(d)
	if p == nil {
		t.Fatal("no S3 place for the s3aws driver")
	}
	opts := DefaultOptions()
	opts.fill()

	// Empty store: nothing, as the walk.
	if got, err := listS3Blobs(ctx, d, p, opts); err != nil || len(got) != 0 {
		t.Fatalf("empty store: %v, %v; want nothing", got, err)
	}

	var files []string
	for i := range 300 { // every prefix directory of one first character, and others
		files = append(files, pathFor(blobDataSpec{digest.FromString(fmt.Sprint(i))}))
	}
	odd := digest.FromString("misplaced")
	files = append(files,
		pathFor(blobsSpec{digest.SHA256})+"/00/"+odd.Encoded()+"/data", // under another prefix than its own
		pathFor(blobsSpec{digest.SHA256})+"/ab/not-a-digest/data",
		pathFor(blobsSpec{digest.SHA256})+"/ab/"+odd.Encoded()+"/other",
		pathFor(blobsSpec{digest.SHA256})+"/ab/"+odd.Encoded()+"/deeper/data",
	)
	for i, f := range files {
		if err := d.PutContent(ctx, f, []byte(strings.Repeat("x", i%7+1))); err != nil {
			t.Fatal(err)
		}
	}
	reqs := countS3Requests(t, d)
	walked, err := walkBlobs(ctx, d, nil, opts)
	if err != nil {
		t.Fatal(err)
	}
	walkReqs, _ := reqs.take()
	listed, err := listS3Blobs(ctx, d, p, opts)
	if err != nil {
		t.Fatal(err)
	}
	listReqs, _ := reqs.take()
	// One delimited listing of the prefix directories, then the walk one
	// listing per directory (each holds fewer than 1,000 keys), the
	// listing one per first hex digit.
	if want := map[string]int{"ListObjectsV2": 1 + len(walked)}; !cmp.Equal(walkReqs, want) {
		t.Errorf("the walk sent %v, want %v", walkReqs, want)
	}
	if want := map[string]int{"ListObjectsV2": 1 + 16}; !cmp.Equal(listReqs, want) {
		t.Errorf("the listing sent %v, want %v", listReqs, want)
	}
	if walked.len() != 301 {
		t.Fatalf("the walk found %d blobs, want 301", walked.len())
	}
	if diff := cmp.Diff(walked, listed, cmp.AllowUnexported(blobInfo{})); diff != "" {
		t.Errorf("listing differs from the walk (-walk +list):\n%s", diff)
	}
	if s, _ := sumOf(odd); listed.index()(s) >= 0 {
		t.Error("a blob under another prefix than its own is found by its digest; the walk's listing does not find it there either")
	}
}
