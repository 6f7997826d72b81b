package gc

import (
	"context"
	"fmt"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
)

// azureMover moves blobs into and out of the quarantine with a copy inside
// the storage account (Copy Blob, which Azure completes at once within an
// account, or else is polled) and, into the quarantine, deletes of the
// sources 256 a Blob Batch request: a copy and 1/256 of a batch per blob,
// where the driver's Move sends a copy and a delete.
type azureMover struct{ p *AzurePlace }

func init() {
	storeMovers = append(storeMovers, func(d storagedriver.StorageDriver, opts Options) storeMover {
		if p := AzurePlaceOf(d); p != nil {
			return &azureMover{p: p}
		}
		return nil
	})
}

// azureCopyWait bounds the wait for one copy that Azure did not complete
// at once.
const azureCopyWait = 10 * time.Minute

// put copies each blob's data into the quarantine, workers at a time, then
// deletes the sources of each 256 copied in one batch, and calls held for
// them.
func (m *azureMover) put(ctx context.Context, blobs []BlobDeletion, workers int, hook func(path string) error, held func(BlobDeletion)) error {
	n := (len(blobs) + azureBatchMax - 1) / azureBatchMax
	// Two batches at a time: one copying while the other deletes.
	return forEach(ctx, 2, n, func(i int) error {
		chunk := blobs[i*azureBatchMax : min((i+1)*azureBatchMax, len(blobs))]
		copied := make([]bool, len(chunk))
		cerr := forEach(ctx, workers, len(chunk), func(j int) error {
			from := pathFor(blobDataSpec{chunk[j].Digest})
			if hook != nil {
				if err := hook(from); err != nil {
					return err
				}
			}
			err := m.copy(ctx, from, pathFor(quarantineDataSpec{chunk[j].Digest}))
			if isNotFound(err) {
				return nil // gone from blobs/ already
			}
			if err != nil {
				return fmt.Errorf("quarantining %s: %w", chunk[j].Digest, err)
			}
			copied[j] = true
			return nil
		})
		// What was copied leaves blobs/ even when a copy failed (or the
		// test hook stopped the run): a crash would have left it as well.
		var sources []string
		var moved []BlobDeletion
		for j, ok := range copied {
			if ok {
				sources = append(sources, pathFor(blobDataSpec{chunk[j].Digest}))
				moved = append(moved, chunk[j])
			}
		}
		if err := m.p.deleteBatch(ctx, sources); err != nil {
			return fmt.Errorf("quarantining: %w", err)
		}
		for _, b := range moved {
			held(b)
		}
		return cerr
	})
}

// move moves one blob: a copy (of any size), then a delete of the source.
func (m *azureMover) move(ctx context.Context, from, to string, _ int64) error {
	if err := m.copy(ctx, from, to); err != nil {
		return err
	}
	if _, err := m.p.Client.NewBlobClient(m.p.Name(from)).Delete(ctx, nil); err != nil && !azureIs404(err) {
		return fmt.Errorf("deleting %s: %w", from, err)
	}
	return nil
}

// copy copies the blob at driver path from to driver path to, within the
// account, waiting until the copy is complete. A missing source is a
// PathNotFoundError.
func (m *azureMover) copy(ctx context.Context, from, to string) error {
	src := m.p.Client.NewBlobClient(m.p.Name(from)).URL()
	dst := m.p.Client.NewBlobClient(m.p.Name(to))
	resp, err := dst.StartCopyFromURL(ctx, src, nil)
	if err != nil {
		if azureIs404(err) {
			return storagedriver.PathNotFoundError{Path: from, DriverName: "azure"}
		}
		return fmt.Errorf("copying %s to %s: %w", from, to, err)
	}
	status, id := resp.CopyStatus, resp.CopyID
	deadline := time.Now().Add(azureCopyWait)
	for delay := 50 * time.Millisecond; status != nil && *status == blob.CopyStatusTypePending; delay = min(2*delay, 2*time.Second) {
		if time.Now().After(deadline) {
			if id != nil {
				_, _ = dst.AbortCopyFromURL(context.WithoutCancel(ctx), *id, nil)
			}
			return fmt.Errorf("copying %s to %s: not complete after %s, aborted", from, to, azureCopyWait)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
		props, err := dst.GetProperties(ctx, nil)
		if err != nil {
			return fmt.Errorf("copying %s to %s: reading the copy's state: %w", from, to, err)
		}
		status, id = props.CopyStatus, props.CopyID
		if status != nil && (*status == blob.CopyStatusTypeAborted || *status == blob.CopyStatusTypeFailed) {
			desc := ""
			if props.CopyStatusDescription != nil {
				desc = *props.CopyStatusDescription
			}
			return fmt.Errorf("copying %s to %s: %s %s", from, to, *status, desc)
		}
	}
	return nil
}
