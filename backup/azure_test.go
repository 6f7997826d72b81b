package backup

import (
	"bytes"
	"context"
	"errors"
	"github.com/regkeeper/regkeeper/internal/testbed/tools"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/google/go-cmp/cmp"

	"github.com/regkeeper/regkeeper/gc"

	"github.com/regkeeper/regkeeper/internal/testbed/azurite"
	"github.com/regkeeper/regkeeper/internal/testbed/embedded"
	"github.com/regkeeper/regkeeper/internal/testbed/regtest"
)

// azureTarget writes a --target-config file for the layout under prefix
// in container and opens it.
func azureTarget(t *testing.T, a *azurite.Server, container, prefix string) Layout {
	t.Helper()
	cfg := tools.StorageConfig(t, a.StorageYAML(container, "/"+prefix))
	l, err := OpenTarget(context.Background(), "", cfg)
	if err != nil {
		t.Fatal(err)
	}
	if l.Driver() == nil || l.Driver().Name() != "azure" {
		t.Fatalf("opened %s as %v", cfg, l)
	}
	return l
}

// azureBlobs are the blobs of the layout under prefix in container, by
// digest.
func azureBlobs(t *testing.T, a *azurite.Server, container, prefix string) map[string]int64 {
	t.Helper()
	objs, err := a.Blobs(context.Background(), container, prefix+"/blobs/")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for k, n := range objs {
		alg, hex, _ := strings.Cut(strings.TrimPrefix(k, prefix+"/blobs/"), "/")
		out[alg+":"+hex] = n
	}
	return out
}

// azureETags are the ETags of the blobs of the layout under prefix in
// container, by digest: an ETag changes when a blob is written again.
func azureETags(t *testing.T, a *azurite.Server, container, prefix string) map[string]string {
	t.Helper()
	out := map[string]string{}
	p := prefix + "/blobs/"
	pager := a.Client.NewListBlobsFlatPager(container, &azblob.ListBlobsFlatOptions{Prefix: &p})
	for pager.More() {
		page, err := pager.NextPage(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range page.Segment.BlobItems {
			alg, hex, _ := strings.Cut(strings.TrimPrefix(*b.Name, p), "/")
			out[alg+":"+hex] = string(*b.Properties.ETag)
		}
	}
	return out
}

// The estate backed up to Azurite through a --target-config file with the
// registry's azure storage section: a run interrupted after a few blobs
// leaves them, and the next run downloads and writes none of them again;
// the layout is an OCI image layout under the rootdirectory, nothing left
// in .regkeeper/tmp; verify reads it there, re-hashing every blob; a
// third run finds every blob there and writes none; a lock held elsewhere
// refuses a run; a blob damaged in the container is found by verify;
// restore from the container into a fresh registry, and into the stock
// one, gives every tag its digest, and every image pulls.
func TestBackupAzure(t *testing.T) {
	const container, prefix = "backups", "registry/weekly"
	a := azurite.ForTest(t, container)
	srv, e := regtest.Seeded(t, embedded.Options{})
	ctx := context.Background()
	l := azureTarget(t, a, container, prefix)

	// Interrupted after a few blobs.
	cctx, cancel := context.WithCancel(ctx)
	opts := testOptions()
	opts.Client.Jobs = 2
	opts.Checkpoint = time.Nanosecond
	opts.Client.Transport = &cancelAfter{inner: http.DefaultTransport, n: 10, cancel: cancel}
	first, err := RunLayout(cctx, srv.Host, l, opts)
	cancel()
	if !errors.Is(err, context.Canceled) || first.Complete {
		t.Fatalf("interrupted run: %v, complete %v", err, first.Complete)
	}
	written := azureETags(t, a, container, prefix)
	if len(written) == 0 || first.BlobsWritten == 0 {
		t.Fatalf("the interrupted run left no blob in the container (%d written)", first.BlobsWritten)
	}

	// The next run downloads and writes none of what is there.
	gets := &blobGets{inner: http.DefaultTransport, got: map[string]int{}}
	opts = testOptions()
	opts.Client.Transport = gets
	res, err := RunLayout(ctx, srv.Host, l, opts)
	if err != nil || len(res.Errors) > 0 || !res.Complete {
		t.Fatalf("resumed run: %v %+v", err, res.Errors)
	}
	after := azureETags(t, a, container, prefix)
	for d, etag := range written {
		if gets.got[d] > 0 || after[d] != etag {
			t.Errorf("the resumed run downloaded %s %d times and wrote it again (ETag %s, was %s), already in the container", d, gets.got[d], after[d], etag)
		}
	}
	there := azureBlobs(t, a, container, prefix)
	if len(there) != first.BlobsWritten+res.BlobsWritten || res.BlobsSkipped < len(written) || res.BlobsWritten == 0 {
		t.Errorf("%d + %d blobs written, %d in the container, %d skipped (%d were there)", first.BlobsWritten, res.BlobsWritten, len(there), res.BlobsSkipped, len(written))
	}

	// An OCI image layout under the rootdirectory, nothing outside it.
	objs, err := a.Blobs(ctx, container, "")
	if err != nil {
		t.Fatal(err)
	}
	checkObjectLayout(t, objs, prefix, res.Snapshot)
	if diff := cmp.Diff(e.Tags(), layoutTags(t, l)); diff != "" {
		t.Errorf("tags in the Azure backup (-want +got):\n%s", diff)
	}
	v, err := VerifyLayout(ctx, l, VerifyOptions{})
	if err != nil || !v.OK() || v.Completeness != CompletenessComplete || v.Blobs != len(there) {
		t.Fatalf("verify: %v %s %d blobs (%d in the container) %+v", err, v.Completeness, v.Blobs, len(there), v.Problems)
	}

	// A second run finds every blob there.
	again, err := RunLayout(ctx, srv.Host, l, testOptions())
	if err != nil || len(again.Errors) > 0 || !again.Complete || again.BlobsWritten != 0 || again.BlobsSkipped != len(there) {
		t.Errorf("second run: %v, %d written, %d skipped (%d there), %+v", err, again.BlobsWritten, again.BlobsSkipped, len(there), again.Errors)
	}
	snaps, err := l.ReadSnapshots()
	if err != nil || len(snaps) != 3 || snaps[0].Complete() || !snaps[1].Complete() || !snaps[2].Complete() {
		t.Errorf("snapshots: %v %+v", err, snaps)
	}

	// A second run holds the lock: refused while it is there.
	checkLockRefuses(t, l, srv.Host)

	// Restore from the container into an empty registry, and into the
	// stock registry.
	checkRestores(t, l, e)

	// A blob damaged in the container (same size) is found by verify.
	damageBlob(t, l, there)
}

// A registry on Azurite backed up into another container of the same
// account, once by pulling and once with the registry's storage as Source:
// the second copies every blob inside the store (Copy Blob) and reads no
// blob through this machine, only manifests; it verifies (every copied
// blob re-hashed) and restores into the stock registry with every digest
// equal.
func TestBackupAzureStoreSideCopy(t *testing.T) {
	a := azurite.ForTest(t, "registry")
	ctx := context.Background()
	if err := a.CreateContainer(ctx, "backups"); err != nil {
		t.Fatal(err)
	}
	// Every request to Azurite, the registry's and the backup's, through
	// a counting proxy.
	via, reqs := proxyAzurite(t, a)
	srv, e := regtest.Seeded(t, embedded.Options{Storage: via.StorageYAML("registry", "/")})
	source, err := gc.Open(ctx, srv.ConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	if gc.AzurePlaceOf(source) == nil {
		t.Fatal("the azure driver's client cannot be reached")
	}
	run := func(prefix string, src bool) (*Result, *bodyBytes, int64, Layout) {
		t.Helper()
		l := azureTarget(t, via, "backups", prefix)
		bb := &bodyBytes{inner: http.DefaultTransport, n: map[string]int64{}, gets: map[string]int{}}
		opts := testOptions()
		opts.Client.Transport = bb
		if src {
			opts.Source = source
		}
		reqs.n.Store(0)
		res, err := RunLayout(ctx, srv.Host, l, opts)
		if err != nil || len(res.Errors) > 0 || !res.Complete {
			t.Fatalf("backup to %s: %v %+v", prefix, err, res.Errors)
		}
		return res, bb, reqs.n.Load(), l
	}
	pulled, pullBytes, pullReqs, _ := run("pulled", false)
	copied, copyBytes, copyReqs, l := run("copied", true)
	t.Logf("pull path: %d blobs, %d bytes of blobs and %d of manifests through the machine, %d requests to the store (%.1f a blob written); store-side copy: %d blobs copied (%d bytes), %d bytes of blobs and %d of manifests through the machine, %d requests to the store (%.1f a blob written)",
		pulled.BlobsWritten, pullBytes.n["blobs"], pullBytes.n["manifests"], pullReqs, float64(pullReqs)/float64(pulled.BlobsWritten),
		copied.BlobsCopiedInStore, copied.BytesCopiedInStore, copyBytes.n["blobs"], copyBytes.n["manifests"], copyReqs, float64(copyReqs)/float64(copied.BlobsWritten))
	if copyReqs >= pullReqs {
		t.Errorf("the store-side copy made %d requests to the store, the pull path %d", copyReqs, pullReqs)
	}
	if pulled.BlobsCopiedInStore != 0 || pullBytes.n["blobs"] == 0 {
		t.Errorf("pull path: %d blobs copied in store, %d blob bytes read", pulled.BlobsCopiedInStore, pullBytes.n["blobs"])
	}
	if copyBytes.gets["GET blobs"] != 0 || copyBytes.n["blobs"] != 0 {
		t.Errorf("store-side copy read %d blobs (%d bytes) through the machine", copyBytes.gets["GET blobs"], copyBytes.n["blobs"])
	}
	if copied.BlobsCopiedInStore == 0 || copied.BlobsWritten != pulled.BlobsWritten || copied.BytesWritten != pulled.BytesWritten {
		t.Errorf("store-side copy wrote %d blobs (%d copied), %d bytes; the pull path %d, %d", copied.BlobsWritten, copied.BlobsCopiedInStore, copied.BytesWritten, pulled.BlobsWritten, pulled.BytesWritten)
	}
	if copyBytes.n["manifests"] == 0 {
		t.Error("store-side copy read no manifest")
	}
	if diff := cmp.Diff(azureBlobs(t, a, "backups", "pulled"), azureBlobs(t, a, "backups", "copied")); diff != "" {
		t.Errorf("blobs of the copied backup, against the pulled one's (-want +got):\n%s", diff)
	}
	v, err := VerifyLayout(ctx, l, VerifyOptions{})
	if err != nil || !v.OK() || v.Blobs != copied.BlobsWritten {
		t.Fatalf("verify of the copied backup: %v, %d blobs, %+v", err, v.Blobs, v.Problems)
	}
	restoreIntoStock(t, l, e)
}

// forget and prune on Azurite: as TestForgetPrune, the blobs left are
// exactly those the kept snapshots reach, and each kept snapshot restores
// and pulls whole; the four blobs go in one Blob Batch request, none by a
// DELETE of its own.
func TestBackupAzureForgetPrune(t *testing.T) {
	a := azurite.ForTest(t, "backups")
	via, reqs := proxyAzurite(t, a)
	res := forgetPrune(t, azureTarget(t, via, "backups", "weekly"))
	reqs.mu.Lock()
	defer reqs.mu.Unlock()
	t.Logf("deletes of blobs: %v (%d requests to the store in all)", reqs.by, reqs.n.Load())
	if res.Prune == nil || res.Prune.Blobs != 4 || reqs.by["batch of blobs"] != 1 || reqs.by["blob names"] != 4 || reqs.by["DELETE blobs"] != 0 {
		t.Errorf("prune of %d blobs: %d Blob Batch requests naming %d blobs (want 1 naming 4), %d DELETEs of a blob (want 0)",
			res.Prune.Blobs, reqs.by["batch of blobs"], reqs.by["blob names"], reqs.by["DELETE blobs"])
	}
}

// azureRequests counts the requests to Azurite, and the deletes of backup
// blobs: Blob Batch requests with the blob deletes they carry, and DELETE
// requests of one blob.
type azureRequests struct {
	n  atomic.Int64
	mu sync.Mutex
	by map[string]int
}

func (a *azureRequests) see(r *http.Request) {
	a.n.Add(1)
	var k string
	n := 0
	switch {
	case r.URL.Query().Get("comp") == "batch":
		body, _ := io.ReadAll(r.Body) // what could not be read is not forwarded either
		r.Body = io.NopCloser(bytes.NewReader(body))
		for _, line := range strings.Split(string(body), "\n") {
			// The blob's name is escaped in the path ("/" as %2F).
			if strings.HasPrefix(line, "DELETE ") && strings.Contains(strings.ReplaceAll(line, "%2F", "/"), "/blobs/") {
				n++
			}
		}
		if n > 0 {
			k = "batch of blobs"
		}
	case r.Method == http.MethodDelete && strings.Contains(r.URL.Path, "/blobs/"):
		k = "DELETE blobs"
	}
	if k != "" {
		a.mu.Lock()
		if a.by == nil {
			a.by = map[string]int{}
		}
		a.by[k]++
		a.by["blob names"] += n
		a.mu.Unlock()
	}
}

// proxyAzurite returns a's service through a counting proxy.
func proxyAzurite(t *testing.T, a *azurite.Server) (*azurite.Server, *azureRequests) {
	t.Helper()
	reqs := &azureRequests{}
	return a.Through(t, reqs.see), reqs
}
