// The quarantine on S3: a store-side copy per blob (in parts above 5 GiB)
// and its source deleted 1,000 keys a request, instead of the s3-aws
// driver's Move (a HeadObject, a CopyObject, a ListObjectsV2 and a one-key
// DeleteObjects per blob).

package gc

import (
	"context"
	"fmt"
	"path"
	"reflect"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	s3driver "github.com/distribution/distribution/v3/registry/storage/driver/s3-aws"
)

// s3CopyMax and s3PartSize are the limits the mover copies with
// (S3Place.Copy); variables so that a test copies a small blob in parts.
var (
	s3CopyMax  = S3CopyMax
	s3PartSize = S3PartSize
)

// s3Mover is the storeMover of the s3-aws driver.
type s3Mover struct {
	*S3Place
	d storagedriver.StorageDriver
	// copy is what the driver sets on the objects it writes, so that a
	// copy made here is stored as the driver's own Move stores it.
	copy S3CopyOptions
}

func init() {
	storeMovers = append(storeMovers, func(d storagedriver.StorageDriver, opts Options) storeMover {
		p := S3PlaceOf(d)
		if p == nil {
			return nil
		}
		cs, ok := s3CopySettingsOf(d)
		if !ok {
			return nil
		}
		return &s3Mover{S3Place: p, d: d, copy: cs}
	})
}

// s3CopySettingsOf reads the driver's encryption, storage class and ACL
// (as S3PlaceOf reads its client); false when they cannot be read, and
// the driver's Move is used.
func s3CopySettingsOf(d storagedriver.StorageDriver) (S3CopyOptions, bool) {
	sd, ok := d.(*s3driver.Driver)
	if !ok || sd.StorageDriver == nil {
		return S3CopyOptions{}, false
	}
	v := reflect.ValueOf(sd.StorageDriver)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return S3CopyOptions{}, false
	}
	v = v.Elem()
	encrypt, ok1 := field[bool](v, "Encrypt")
	keyID, ok2 := field[string](v, "KeyID")
	class, ok3 := field[string](v, "StorageClass")
	acl, ok4 := field[string](v, "ObjectACL")
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return S3CopyOptions{}, false
	}
	return S3CopyOptions{ContentType: "application/octet-stream", ACL: acl, StorageClass: class,
		Encrypt: encrypt, KMSKeyID: keyID}, true
}

// copyObject copies the object at driver path from (of the given size, 0
// when unknown) to driver path to, setting what the driver's copy sets:
// one CopyObject up to s3CopyMax, in parts above (S3Place.Copy). A source
// that does not exist is a PathNotFoundError.
func (m *s3Mover) copyObject(ctx context.Context, from, to string, size int64) error {
	opts := m.copy
	opts.CopyMax, opts.PartSize = s3CopyMax, s3PartSize
	err := m.Copy(ctx, m.Key(from), m.Key(to), size, opts)
	if IsS3NotFound(err) {
		return storagedriver.PathNotFoundError{Path: from, DriverName: m.d.Name()}
	}
	return err
}

// put copies the blobs into the quarantine (each copy a CopyObject,
// workers at once; no HeadObject, no listing) and deletes the sources of
// those copied s3DeleteMax a DeleteObjects as they come, one delete at a
// time beside the copies, calling held for each blob once its source is
// deleted. The copies are one stream (no chunk waits for its slowest copy
// or for its delete), which is what the store's own floor for them costs
// (bench/gc/s3floor). A blob whose source is gone (NoSuchKey) is skipped.
// A blob larger than one CopyObject copies (5 GiB) is copied in parts
// (S3Place.Copy: a HeadObject for its ETag, then every part on the
// condition that the source still has it); none is left to the driver.
//
// When a copy fails (or the run is stopped), the sources of the copies
// not yet in a delete stay: those blobs are in both places, as after a
// crash between a copy and its delete. The next run finds them in the
// quarantine (leftovers): one the mark keeps is found present in blobs/ by
// restore and its quarantined copy is purged as redundant; one still dead
// is planned again, copied over its quarantined copy (the same bytes) and
// moved as any other.
func (m *s3Mover) put(ctx context.Context, blobs []BlobDeletion, workers int, hook func(path string) error, held func(BlobDeletion)) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	copied := make(chan BlobDeletion, s3DeleteMax)
	copiesDone := make(chan bool, 1) // whether every copy succeeded
	deleted := make(chan error, 1)
	go func() {
		batch := make([]BlobDeletion, 0, s3DeleteMax)
		var failed error
		flush := func() {
			if len(batch) == 0 || failed != nil {
				return
			}
			sources := make([]string, len(batch))
			for i, b := range batch {
				sources[i] = pathFor(blobDataSpec{b.Digest})
			}
			if err := (&s3Batch{m.S3Place}).deleteFiles(ctx, sources, 1); err != nil {
				failed = fmt.Errorf("quarantining: deleting the copied blobs from blobs/: %w", err)
				cancel(failed) // the copies stop; those made stay in both places
				return
			}
			for _, b := range batch {
				held(b)
			}
			batch = batch[:0]
		}
		for b := range copied {
			batch = append(batch, b)
			if len(batch) == s3DeleteMax {
				flush()
			}
		}
		if <-copiesDone {
			flush()
		}
		deleted <- failed
	}()
	err := forEach(ctx, workers, len(blobs), func(i int) error {
		b := blobs[i]
		from := pathFor(blobDataSpec{b.Digest})
		if hook != nil {
			if err := hook(from); err != nil {
				return err
			}
		}
		err := m.copyObject(ctx, from, pathFor(quarantineDataSpec{b.Digest}), b.Size)
		if isNotFound(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("quarantining %s: copying %s: %w", b.Digest, path.Base(path.Dir(from)), err)
		}
		copied <- b
		return nil
	})
	close(copied)
	copiesDone <- err == nil
	if derr := <-deleted; derr != nil {
		return derr
	}
	return err
}

// move moves one object: a copy (one CopyObject; in parts for an object
// S3 will not copy in one) and a DeleteObjects of its one key. Restores
// are few; the caller has checked that to is free.
func (m *s3Mover) move(ctx context.Context, from, to string, size int64) error {
	if err := m.copyObject(ctx, from, to, size); err != nil {
		return err
	}
	return (&s3Batch{m.S3Place}).deleteFiles(ctx, []string{from}, 1)
}
