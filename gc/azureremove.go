package gc

import (
	"context"
	"fmt"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
)

// azureBatchMax is the most sub-requests one Azure Blob Batch request
// takes.
const azureBatchMax = 256

// azureRemover deletes blobs by exact name, 256 a Blob Batch request. The
// azure driver's Delete of a path that is already gone lists its prefix
// after the failed delete; gc knows the one blob under each path it
// deletes.
type azureRemover struct {
	p    *AzurePlace
	jobs int
	hook func(path string) error
}

func init() {
	storeRemovers = append(storeRemovers, func(d storagedriver.StorageDriver, opts Options) remover {
		if p := AzurePlaceOf(d); p != nil {
			return &azureRemover{p: p, jobs: opts.Jobs, hook: opts.beforeDelete}
		}
		return nil
	})
}

func (r *azureRemover) remove(ctx context.Context, paths []string) error {
	return r.p.deleteBatches(ctx, paths, r.jobs, r.hook)
}

// deleteBatches deletes the blobs of files (driver paths of files), 256 a
// request, jobs requests at a time. A blob already gone is not an error.
// hook (if not nil) is called with each path before its batch is sent; when
// it fails, the paths of the batch before it are deleted, as if the run
// stopped right there, and its error is returned.
func (p *AzurePlace) deleteBatches(ctx context.Context, files []string, jobs int, hook func(string) error) error {
	n := (len(files) + azureBatchMax - 1) / azureBatchMax
	return forEach(ctx, jobs, n, func(i int) error {
		chunk := files[i*azureBatchMax : min((i+1)*azureBatchMax, len(files))]
		var stop error
		if hook != nil {
			for j, f := range chunk {
				if err := hook(f); err != nil {
					chunk, stop = chunk[:j], err
					break
				}
			}
		}
		if err := p.deleteBatch(ctx, chunk); err != nil {
			return err
		}
		return stop
	})
}

// deleteBatch deletes up to 256 blobs in one request.
func (p *AzurePlace) deleteBatch(ctx context.Context, files []string) error {
	if len(files) == 0 {
		return nil
	}
	bb, err := p.Client.NewBatchBuilder()
	if err != nil {
		return fmt.Errorf("deleting %d blobs: %w", len(files), err)
	}
	for _, f := range files {
		if err := bb.Delete(p.Name(f), nil); err != nil {
			return fmt.Errorf("deleting %s: %w", f, err)
		}
	}
	resp, err := p.Client.SubmitBatch(ctx, bb, nil)
	if err != nil {
		return fmt.Errorf("deleting %d blobs: %w", len(files), err)
	}
	failed, first := 0, error(nil)
	for _, it := range resp.Responses {
		if it.Error != nil && !azureIs404(it.Error) {
			if failed++; first == nil {
				first = it.Error
			}
		}
	}
	if len(resp.Responses) != len(files) {
		return fmt.Errorf("deleting %d blobs: %d answers in the batch's response", len(files), len(resp.Responses))
	}
	if failed > 0 {
		return fmt.Errorf("deleting %d blobs: %d failed, first: %w", len(files), failed, first)
	}
	return nil
}
