package gc

import (
	"context"
	"fmt"
	"github.com/regkeeper/regkeeper/internal/testbed/tools"
	"strings"
	"testing"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/google/go-cmp/cmp"
	"github.com/opencontainers/go-digest"

	"github.com/regkeeper/regkeeper/internal/testbed/azurite"
)

// TestS3ListBlobs and TestAzureListBlobs: the blob store listed through
// the store's client (one delimited listing, then one flat listing per
// first character of the prefix directories) is exactly the walk of each
// prefix directory: the same blobs, sizes and times, in the same slices,
// with files that are not blob data, names that are not digests and a
// blob stored under another prefix than its own left as the walk leaves
// them; and it sends a listing per first hex digit where the walk sends
// one per prefix directory.
func TestS3ListBlobs(t *testing.T) {
	const bucket = "list"
	m := startMinIO(t, bucket)
	d, err := Open(context.Background(), tools.StorageConfig(t, m.StorageYAML(bucket)))
	if err != nil {
		t.Fatal(err)
	}
	reqs := countS3Requests(t, d)
	checkListBlobsFlat(t, d, func() map[string]int { by, _ := reqs.take(); return by },
		func(dirs int) map[string]int { return map[string]int{"ListObjectsV2": 1 + dirs} })
}

func TestAzureListBlobs(t *testing.T) {
	const container = "list"
	a := azurite.ForTest(t, container)
	counter := &azureCounter{n: map[string]int{}}
	d := openAzure(t, a.Through(t, counter.count), container)
	checkListBlobsFlat(t, d, counter.reset,
		func(dirs int) map[string]int {
			return map[string]int{"ListBlobs(delimiter)": 1, "ListBlobs(flat)": dirs}
		})
}

// checkListBlobsFlat is the body of the listing tests: take returns the
// requests sent since it was last called, by API, and want the requests
// of one delimited listing and of dirs flat listings.
func checkListBlobsFlat(t *testing.T, d storagedriver.StorageDriver, take func() map[string]int, want func(dirs int) map[string]int) {
	ctx := context.Background()
	flat := flatListerOf(d)
	if flat == nil {
		t.Fatalf("no flat lister for the %s driver", d.Name())
	}
	opts := DefaultOptions()
	opts.fill()

	// Empty store: nothing, as the walk.
	if got, err := listBlobsFlat(ctx, d, flat, opts); err != nil || len(got) != 0 {
		t.Fatalf("empty store: %v, %v; want nothing", got, err)
	}

	var files []string
	for i := range 300 { // every first character, most prefix directories
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
	take()
	walked, err := walkBlobs(ctx, d, nil, opts)
	if err != nil {
		t.Fatal(err)
	}
	walkReqs := take()
	listed, err := listBlobsFlat(ctx, d, flat, opts)
	if err != nil {
		t.Fatal(err)
	}
	listReqs := take()
	if walked.len() != 301 {
		t.Fatalf("the walk found %d blobs, want 301", walked.len())
	}
	if diff := cmp.Diff(walked, listed, cmp.AllowUnexported(blobInfo{})); diff != "" {
		t.Errorf("listing differs from the walk (-walk +list):\n%s", diff)
	}
	if s, _ := sumOf(odd); listed.index()(s) >= 0 {
		t.Error("a blob under another prefix than its own is found by its digest; the walk's listing does not find it there either")
	}
	// Each prefix directory holds fewer names than a page.
	if w := want(len(walked)); !cmp.Equal(walkReqs, w) {
		t.Errorf("the walk sent %v, want %v", walkReqs, w)
	}
	if w := want(16); !cmp.Equal(listReqs, w) {
		t.Errorf("the listing sent %v, want %v", listReqs, w)
	}
}
