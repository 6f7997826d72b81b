//go:build !linux

package gc

import (
	"context"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
)

// newFSRemover: the unlinkat remover is Linux's; elsewhere the filesystem
// driver's Delete is used.
func newFSRemover(storagedriver.StorageDriver, Options) remover { return nil }

// fsReader reads the filesystem directly on Linux only.
type fsReader struct{}

func fsReaderFor(storagedriver.StorageDriver) *fsReader { return nil }

func (*fsReader) scanRepository(context.Context, *interner, string, bool) (*repoScan, error) {
	panic("gc: no direct filesystem reader on this system")
}

func (*fsReader) listBlobs(context.Context, *interner, Options) (blobList, error) {
	panic("gc: no direct filesystem reader on this system")
}

func (*fsReader) readFile(string) ([]byte, error) {
	panic("gc: no direct filesystem reader on this system")
}

// fsQuarantine renames blob directories on Linux only.
type fsQuarantine struct{}

func newFSQuarantine(storagedriver.StorageDriver) *fsQuarantine { return nil }

func (*fsQuarantine) put(_ context.Context, blobs []BlobDeletion, _ int, _ func(string) error, _ func(BlobDeletion)) ([]BlobDeletion, error) {
	return blobs, nil
}
