// Object stores: the seam through which a store's own bulk calls (S3's
// DeleteObjects and CopyObject, Azure's batch and copy) replace the
// driver's per-path ones. Each store registers its constructors from its
// own file; a driver no constructor takes goes through the driver's calls.

package gc

import (
	"context"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
)

// storeRemovers build a store's remover (remove.go) for a driver, or
// return nil when the driver is not theirs or they cannot serve these
// options. The first non-nil one is used.
var storeRemovers []func(d storagedriver.StorageDriver, opts Options) remover

// storeMover moves blobs into and out of the quarantine inside an object
// store, without the driver's Move (on s3-aws a Stat, a copy, a listing and
// a delete per blob).
type storeMover interface {
	// put moves the data of each blob from blobs/ into the quarantine,
	// workers at a time, calling hook (if not nil) with the blob's data
	// path before touching it and held after it is in the quarantine and
	// gone from blobs/. A blob already gone from blobs/ is skipped.
	put(ctx context.Context, blobs []BlobDeletion, workers int, hook func(path string) error, held func(BlobDeletion)) error
	// move moves one object from one driver path to another inside the
	// store (restoring a blob); size is the object's as gc knows it (0
	// when it does not). A source that does not exist is an error for
	// which isNotFound is true.
	move(ctx context.Context, from, to string, size int64) error
}

// storeMovers build a store's mover for a driver, or nil.
var storeMovers []func(d storagedriver.StorageDriver, opts Options) storeMover

func newStoreRemover(d storagedriver.StorageDriver, opts Options) remover {
	for _, f := range storeRemovers {
		if r := f(d, opts); r != nil {
			return r
		}
	}
	return nil
}

func newStoreMover(d storagedriver.StorageDriver, opts Options) storeMover {
	for _, f := range storeMovers {
		if m := f(d, opts); m != nil {
			return m
		}
	}
	return nil
}
