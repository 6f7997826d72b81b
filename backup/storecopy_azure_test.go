package backup

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/regkeeper/regkeeper/gc"
	"github.com/regkeeper/regkeeper/internal/testbed/embedded"
	"github.com/regkeeper/regkeeper/internal/testbed/regtest"
)

// As TestBackupS3StoreSideCopyReplaced on Azurite: a registry blob written
// again (same bytes, a new ETag) between its check and its Copy Blob
// fails the copy's source condition, and that blob is pulled instead,
// said in an info line; the run completes with no error, one blob fewer
// copied in the store, the pulled bytes right, and verify finds the
// backup whole.
func TestBackupAzureStoreSideCopyReplaced(t *testing.T) {
	a := startAzurite(t, "registry")
	ctx := context.Background()
	if err := a.CreateContainer(ctx, "backups"); err != nil {
		t.Fatal(err)
	}
	srv, _ := regtest.Seeded(t, embedded.Options{Storage: a.StorageYAML("registry", "/")})
	source, err := gc.Open(ctx, srv.ConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	reg := gc.AzurePlaceOf(source)
	if reg == nil {
		t.Fatal("the azure driver's client cannot be reached")
	}
	run := func(prefix string, logs io.Writer) (*Result, *blobGets, Layout) {
		t.Helper()
		l := azureTarget(t, a, "backups", prefix)
		bg := &blobGets{inner: http.DefaultTransport, got: map[string]int{}}
		opts := testOptions()
		opts.Client.Transport = bg
		opts.Source = source
		opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
		res, err := RunLayout(ctx, srv.Host, l, opts)
		if err != nil || len(res.Errors) > 0 || !res.Complete {
			t.Fatalf("backup to %s: %v %+v", prefix, err, res.Errors)
		}
		return res, bg, l
	}
	copied, copiedGets, _ := run("copied", io.Discard)
	if len(copiedGets.got) != 0 {
		t.Fatalf("store-side copy pulled %v", copiedGets.got)
	}

	// The first blob checked is written again; the others are left alone.
	var (
		mu       sync.Mutex
		replaced v1.Hash
	)
	storeCopyChecked = func(ctx context.Context, d v1.Hash) {
		mu.Lock()
		defer mu.Unlock()
		if replaced.Hex != "" {
			return
		}
		replaced = d
		name := reg.Name(registryBlobPath(d))
		got, err := reg.Client.NewBlobClient(name).DownloadStream(ctx, nil)
		if err != nil {
			t.Errorf("reading blob %s in the registry's container: %v", d, err)
			return
		}
		body, err := io.ReadAll(got.Body)
		got.Body.Close()
		if err != nil {
			t.Errorf("reading blob %s in the registry's container: %v", d, err)
			return
		}
		put, err := reg.Client.NewBlockBlobClient(name).UploadBuffer(ctx, body, nil)
		if err != nil || put.ETag == nil || got.ETag == nil || *put.ETag == *got.ETag {
			t.Errorf("writing blob %s again in the registry's container: %v (ETag %v, then %v)", d, err, got.ETag, put.ETag)
		}
	}
	t.Cleanup(func() { storeCopyChecked = nil })
	logs := &syncBuffer{}
	res, gets, l := run("replaced", logs)
	storeCopyChecked = nil

	if replaced.Hex == "" {
		t.Fatal("no blob was checked for a store-side copy")
	}
	if diff := cmp.Diff(map[string]int{replaced.String(): 1}, gets.got); diff != "" {
		t.Errorf("blobs pulled (-want +got):\n%s", diff)
	}
	type counts struct{ Written, Copied int }
	if diff := cmp.Diff(counts{copied.BlobsWritten, copied.BlobsCopiedInStore - 1}, counts{res.BlobsWritten, res.BlobsCopiedInStore}); diff != "" {
		t.Errorf("blobs written and copied in the store (-want +got):\n%s", diff)
	}
	if out := logs.String(); !strings.Contains(out, "pulled instead of copied in the store") || !strings.Contains(out, replaced.String()) {
		t.Errorf("no info line says blob %s was pulled; logs:\n%s", replaced, out)
	}
	got, err := a.Client.DownloadStream(ctx, "backups", "replaced/blobs/sha256/"+replaced.Hex, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	_, err = io.Copy(h, got.Body)
	got.Body.Close()
	if err != nil || hex.EncodeToString(h.Sum(nil)) != replaced.Hex {
		t.Errorf("blob %s in the backup: %v, hashes to sha256:%x", replaced, err, h.Sum(nil))
	}
	v, err := VerifyLayout(ctx, l, VerifyOptions{})
	if err != nil || !v.OK() || v.Blobs != res.BlobsWritten {
		t.Fatalf("verify: %v, %d blobs, %+v", err, v.Blobs, v.Problems)
	}
}

// What a failed Copy Blob on Azurite falls back from: a source condition
// not met (Azurite answers ConditionNotMet) and a missing source fall
// back to a pull; a missing destination container does not.
func TestSourceChangedAzure(t *testing.T) {
	a := startAzurite(t, "registry")
	ctx := context.Background()
	if err := a.CreateContainer(ctx, "backups"); err != nil {
		t.Fatal(err)
	}
	put, err := a.Client.UploadBuffer(ctx, "registry", "blob", []byte("the blob's bytes"), nil)
	if err != nil {
		t.Fatal(err)
	}
	src := a.Client.ServiceClient().NewContainerClient("registry")
	stale := azcore.ETag(`"0x8DDDDDDDDDDDDDD"`)
	for _, tc := range []struct {
		name, key, dstContainer string
		ifMatch                 *azcore.ETag
		wantErr, falls          bool
	}{
		{name: "copied", key: "blob", dstContainer: "backups", ifMatch: put.ETag},
		{name: "ETag changed", key: "blob", dstContainer: "backups", ifMatch: &stale, wantErr: true, falls: true},
		{name: "deleted", key: "gone", dstContainer: "backups", ifMatch: put.ETag, wantErr: true, falls: true},
		{name: "no such container", key: "blob", dstContainer: "nocontainer", ifMatch: put.ETag, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			to := a.Client.ServiceClient().NewContainerClient(tc.dstContainer).NewBlobClient("copy")
			_, err := to.StartCopyFromURL(ctx, src.NewBlobClient(tc.key).URL(), &blob.StartCopyFromURLOptions{
				SourceModifiedAccessConditions: &blob.SourceModifiedAccessConditions{SourceIfMatch: tc.ifMatch}})
			if (err != nil) != tc.wantErr || sourceChanged(err) != tc.falls {
				t.Errorf("copy: %v; sourceChanged %v, want error %v, sourceChanged %v", err, sourceChanged(err), tc.wantErr, tc.falls)
			}
		})
	}
}
