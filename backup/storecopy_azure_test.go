package backup

import (
	"context"
	"fmt"
	"io"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/regkeeper/regkeeper/gc"
	"github.com/regkeeper/regkeeper/internal/testbed/azurite"
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
	a := azurite.ForTest(t, "registry")
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
	target := func(prefix string) Layout { return azureTarget(t, a, "backups", prefix) }
	rewrite := func(ctx context.Context, d v1.Hash) error {
		name := reg.Name(registryBlobPath(d))
		got, err := reg.Client.NewBlobClient(name).DownloadStream(ctx, nil)
		if err != nil {
			return err
		}
		body, err := io.ReadAll(got.Body)
		got.Body.Close()
		if err != nil {
			return err
		}
		put, err := reg.Client.NewBlockBlobClient(name).UploadBuffer(ctx, body, nil)
		if err == nil && (put.ETag == nil || got.ETag == nil || *put.ETag == *got.ETag) {
			err = fmt.Errorf("the ETag went from %v to %v", got.ETag, put.ETag)
		}
		return err
	}
	storeSideCopyReplaced(t, srv.Host, source, target, rewrite, "")
}

// What a failed Copy Blob on Azurite falls back from: a source condition
// not met (Azurite answers ConditionNotMet) and a missing source fall
// back to a pull; a missing destination container does not.
func TestSourceChangedAzure(t *testing.T) {
	a := azurite.ForTest(t, "registry")
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
