package gc

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/service/s3"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
)

// s3DeleteMax is the most keys one S3 DeleteObjects request takes.
const s3DeleteMax = 1000

// s3Batch deletes exact object keys, up to 1,000 per DeleteObjects request.
// The s3-aws driver's Delete lists the prefix of a path and then deletes
// what it found: two requests for every blob or link. gc knows the one
// object under each path it sweeps (a blob's data, a link), so on S3 it
// deletes those keys in batches, through the driver's own configured client
// (same credentials, endpoint, bucket and root directory).
type s3Batch struct {
	*S3Place
}

// newS3Batch returns a batch deleter for an s3-aws driver, or nil for any
// other driver (or an s3-aws driver whose client cannot be reached: then
// the driver's Delete is used, as before).
func newS3Batch(d storagedriver.StorageDriver) *s3Batch {
	if p := S3PlaceOf(d); p != nil {
		return &s3Batch{p}
	}
	return nil
}

// deleteFiles deletes the objects of files (driver paths of files, not
// directories), jobs requests at a time. Keys that do not exist are not an
// error (S3 says so for DeleteObjects).
func (b *s3Batch) deleteFiles(ctx context.Context, files []string, jobs int) error {
	n := (len(files) + s3DeleteMax - 1) / s3DeleteMax
	return forEach(ctx, jobs, n, func(i int) error {
		chunk := files[i*s3DeleteMax : min((i+1)*s3DeleteMax, len(files))]
		objs := make([]*s3.ObjectIdentifier, len(chunk))
		for j, f := range chunk {
			objs[j] = &s3.ObjectIdentifier{Key: aws.String(b.Key(f))}
		}
		resp, err := b.Client.DeleteObjectsWithContext(ctx, &s3.DeleteObjectsInput{
			Bucket: aws.String(b.Bucket),
			Delete: &s3.Delete{Objects: objs, Quiet: aws.Bool(true)},
		})
		if err != nil {
			return fmt.Errorf("deleting %d objects: %w", len(objs), err)
		}
		if len(resp.Errors) > 0 {
			e := resp.Errors[0]
			return fmt.Errorf("deleting %d objects: %d failed, first %s: %s", len(objs), len(resp.Errors), aws.StringValue(e.Key), aws.StringValue(e.Message))
		}
		return nil
	})
}

// DeleteFiles deletes the files at the driver paths files of d (files,
// not directories) in the fewest requests the store takes, jobs requests
// at a time: on S3 up to 1,000 keys a DeleteObjects, on Azure up to 256
// blobs a Blob Batch, through the driver's own client; on any other
// storage (or a driver whose client cannot be reached) one Delete of the
// driver a file. A file already gone is not an error; no directory is
// removed. Backup's prune uses it.
func DeleteFiles(ctx context.Context, d storagedriver.StorageDriver, files []string, jobs int) error {
	if r := newStoreRemover(d, Options{Jobs: jobs}); r != nil {
		return r.remove(ctx, files)
	}
	return (&driverRemover{d: d, jobs: jobs}).remove(ctx, files)
}
