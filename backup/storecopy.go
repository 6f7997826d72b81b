// Server-side copy: blobs copied inside the object store, not through the
// machine.

package backup

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/service/s3"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/regkeeper/regkeeper/gc"
)

// s3CopyMax is the largest object one CopyObject request copies (5 GiB);
// larger blobs are pulled (UploadPartCopy is not done).
const s3CopyMax = 5 << 30

// storeCopier copies blobs from the registry's storage to the backup's
// when both are buckets of one S3 endpoint.
type storeCopier struct {
	src, dst *gc.S3Place
}

// newStoreCopier returns a copier when source (the registry's storage) and
// the layout are s3-aws drivers on the same endpoint and region, else nil
// and why not.
func newStoreCopier(source storagedriver.StorageDriver, l Layout) (*storeCopier, string) {
	if source == nil {
		return nil, ""
	}
	if l.driver == nil {
		return nil, "the backup is a local directory"
	}
	src, dst := gc.S3PlaceOf(source), gc.S3PlaceOf(l.driver)
	if src == nil || dst == nil {
		return nil, fmt.Sprintf("store-side copy is done between S3 buckets only (registry storage %s, backup %s)", source.Name(), l.driver.Name())
	}
	if src.Client.Endpoint != dst.Client.Endpoint || aws.StringValue(src.Client.Config.Region) != aws.StringValue(dst.Client.Config.Region) {
		return nil, fmt.Sprintf("the registry's storage (%s) and the backup (%s) are not on one S3 endpoint", src.Client.Endpoint, dst.Client.Endpoint)
	}
	return &storeCopier{src: src, dst: dst}, ""
}

// registryBlobPath is where distribution keeps a blob's bytes.
func registryBlobPath(d v1.Hash) string {
	return "/docker/registry/v2/blobs/" + d.Algorithm + "/" + d.Hex[:2] + "/" + d.Hex + "/data"
}

// copy copies blob d of the given size store-side with the backup's
// credentials (which must read the registry's bucket). ok is false when it
// cannot (not in the registry's storage at that size, too large): then the
// blob is pulled. The registry's blob is content-addressed and was checked
// when pushed; the copy is not re-hashed here (verify does).
func (c *storeCopier) copy(ctx context.Context, d v1.Hash, size int64, dst string) (ok bool, err error) {
	if size > s3CopyMax || len(d.Hex) < 2 {
		return false, nil
	}
	srcKey := c.src.Key(registryBlobPath(d))
	head, err := c.dst.Client.HeadObjectWithContext(ctx, &s3.HeadObjectInput{Bucket: aws.String(c.src.Bucket), Key: aws.String(srcKey)})
	if err != nil || aws.Int64Value(head.ContentLength) != size {
		return false, nil
	}
	_, err = c.dst.Client.CopyObjectWithContext(ctx, &s3.CopyObjectInput{
		Bucket:     aws.String(c.dst.Bucket),
		Key:        aws.String(c.dst.Key(dst)),
		CopySource: aws.String(c.src.Bucket + "/" + srcKey),
		// Only the object just checked: a blob replaced meanwhile is pulled.
		CopySourceIfMatch: head.ETag,
	})
	if err != nil {
		return false, fmt.Errorf("copying blob %s in the store: %w", d, err)
	}
	return true, nil
}
