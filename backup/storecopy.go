// Server-side copy: blobs copied inside the object store, not through the
// machine.

package backup

import (
	"context"
	"fmt"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/service/s3"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/regkeeper/regkeeper/gc"
)

// The limits of S3's copies: one CopyObject copies up to 5 GiB; larger
// objects are copied in parts (UploadPartCopy) of s3PartSize, at most
// 10,000 of them. Variables so that a test can make a small blob "large"
// (MinIO takes parts of 5 MiB and more, but for the last).
var (
	s3CopyMax  int64 = 5 << 30
	s3PartSize int64 = 512 << 20
)

// s3MaxParts is the most parts one multipart upload has.
const s3MaxParts = 10000

// storeCopier copies a blob from the registry's storage to the backup's
// inside the store. ok is false when it cannot (the blob is not in the
// registry's storage at that size): then the blob is pulled.
type storeCopier interface {
	copy(ctx context.Context, d v1.Hash, size int64, dst string) (ok bool, err error)
}

// newStoreCopier returns a copier when source (the registry's storage) and
// the layout are s3-aws drivers on the same endpoint and region, or azure
// drivers in the same storage account; else nil and why not.
func newStoreCopier(source storagedriver.StorageDriver, l Layout) (storeCopier, string) {
	if source == nil {
		return nil, ""
	}
	if l.driver == nil {
		return nil, "the backup is a local directory"
	}
	if src, dst := gc.S3PlaceOf(source), gc.S3PlaceOf(l.driver); src != nil && dst != nil {
		if src.Client.Endpoint != dst.Client.Endpoint || aws.StringValue(src.Client.Config.Region) != aws.StringValue(dst.Client.Config.Region) {
			return nil, fmt.Sprintf("the registry's storage (%s) and the backup (%s) are not on one S3 endpoint", src.Client.Endpoint, dst.Client.Endpoint)
		}
		return &s3Copier{src: src, dst: dst}, ""
	}
	if src, dst := azurePlaceOf(source), azurePlaceOf(l.driver); src != nil && dst != nil {
		if src.Account != dst.Account {
			return nil, fmt.Sprintf("the registry's storage (%s) and the backup (%s) are not in one Azure storage account", src.Account, dst.Account)
		}
		return &azureCopier{src: src, dst: dst}, ""
	}
	return nil, fmt.Sprintf("store-side copy is done between S3 buckets of one endpoint or Azure containers of one account (registry storage %s, backup %s)", source.Name(), l.driver.Name())
}

// registryBlobPath is where distribution keeps a blob's bytes.
func registryBlobPath(d v1.Hash) string {
	return "/docker/registry/v2/blobs/" + d.Algorithm + "/" + d.Hex[:2] + "/" + d.Hex + "/data"
}

// s3Copier copies between buckets of one S3 endpoint.
type s3Copier struct {
	src, dst *gc.S3Place
}

// copy copies blob d of the given size store-side with the backup's
// credentials (which must read the registry's bucket): one CopyObject up
// to s3CopyMax, a multipart copy above. The registry's blob is
// content-addressed and was checked when pushed; the copy is not re-hashed
// here (verify does).
func (c *s3Copier) copy(ctx context.Context, d v1.Hash, size int64, dst string) (ok bool, err error) {
	if len(d.Hex) < 2 {
		return false, nil
	}
	srcKey := c.src.Key(registryBlobPath(d))
	head, err := c.dst.Client.HeadObjectWithContext(ctx, &s3.HeadObjectInput{Bucket: aws.String(c.src.Bucket), Key: aws.String(srcKey)})
	if err != nil || aws.Int64Value(head.ContentLength) != size {
		return false, nil
	}
	if size > s3CopyMax {
		if err := c.multipartCopy(ctx, srcKey, aws.StringValue(head.ETag), size, c.dst.Key(dst)); err != nil {
			return false, fmt.Errorf("copying blob %s in the store in parts: %w", d, err)
		}
		return true, nil
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

// multipartCopy copies srcKey (of the given size and ETag) to dstKey in
// parts: CreateMultipartUpload, one UploadPartCopy per range, then
// CompleteMultipartUpload, which makes the object visible whole. On any
// error the upload is aborted (nothing visible, nothing billed).
func (c *s3Copier) multipartCopy(ctx context.Context, srcKey, etag string, size int64, dstKey string) (err error) {
	part := s3PartSize
	if n := (size + part - 1) / part; n > s3MaxParts {
		part = (size + s3MaxParts - 1) / s3MaxParts
	}
	up, err := c.dst.Client.CreateMultipartUploadWithContext(ctx, &s3.CreateMultipartUploadInput{
		Bucket: aws.String(c.dst.Bucket), Key: aws.String(dstKey)})
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_, _ = c.dst.Client.AbortMultipartUploadWithContext(bg, &s3.AbortMultipartUploadInput{
				Bucket: aws.String(c.dst.Bucket), Key: aws.String(dstKey), UploadId: up.UploadId})
		}
	}()
	var parts []*s3.CompletedPart
	for off, n := int64(0), int64(1); off < size; off, n = off+part, n+1 {
		end := min(off+part, size) - 1
		res, err := c.dst.Client.UploadPartCopyWithContext(ctx, &s3.UploadPartCopyInput{
			Bucket:            aws.String(c.dst.Bucket),
			Key:               aws.String(dstKey),
			UploadId:          up.UploadId,
			PartNumber:        aws.Int64(n),
			CopySource:        aws.String(c.src.Bucket + "/" + srcKey),
			CopySourceRange:   aws.String(fmt.Sprintf("bytes=%d-%d", off, end)),
			CopySourceIfMatch: aws.String(etag),
		})
		if err != nil {
			return fmt.Errorf("part %d (bytes %d-%d): %w", n, off, end, err)
		}
		if res.CopyPartResult == nil {
			return fmt.Errorf("part %d (bytes %d-%d): no ETag in the answer", n, off, end)
		}
		parts = append(parts, &s3.CompletedPart{ETag: res.CopyPartResult.ETag, PartNumber: aws.Int64(n)})
	}
	_, err = c.dst.Client.CompleteMultipartUploadWithContext(ctx, &s3.CompleteMultipartUploadInput{
		Bucket: aws.String(c.dst.Bucket), Key: aws.String(dstKey), UploadId: up.UploadId,
		MultipartUpload: &s3.CompletedMultipartUpload{Parts: parts}})
	return err
}

// azureCopier copies between containers of one Azure storage account.
type azureCopier struct {
	src, dst *azurePlace
}

// azureCopyPoll bounds the wait between two looks at a pending copy.
const azureCopyPoll = 2 * time.Second

// copy copies blob d with Azure's Copy Blob (StartCopyFromURL), as the
// azure driver's own Move does: inside one account the destination's
// credentials (shared key or Entra ID) authorize the source, any blob type
// (the driver writes append blobs) and any size; no SAS. Only the source
// just checked (by size and ETag) is copied. A copy the service reports
// pending is polled until it succeeds; one that fails, or a run cancelled
// meanwhile, is aborted and its destination deleted.
func (c *azureCopier) copy(ctx context.Context, d v1.Hash, size int64, dst string) (ok bool, err error) {
	if len(d.Hex) < 2 {
		return false, nil
	}
	src := c.src.Container.NewBlobClient(c.src.name(registryBlobPath(d)))
	props, err := src.GetProperties(ctx, nil)
	if err != nil || props.ContentLength == nil || *props.ContentLength != size {
		return false, nil
	}
	to := c.dst.Container.NewBlobClient(c.dst.name(dst))
	res, err := to.StartCopyFromURL(ctx, src.URL(), &blob.StartCopyFromURLOptions{
		SourceModifiedAccessConditions: &blob.SourceModifiedAccessConditions{SourceIfMatch: props.ETag}})
	if bloberror.HasCode(err, bloberror.SourceConditionNotMet, bloberror.BlobNotFound) {
		return false, nil // replaced or gone since: pulled
	}
	if err != nil {
		return false, fmt.Errorf("copying blob %s in the store: %w", d, err)
	}
	status, id := res.CopyStatus, res.CopyID
	defer func() {
		if err != nil && id != nil {
			_, _ = to.AbortCopyFromURL(bg, *id, nil)
			_, _ = to.Delete(bg, nil)
		}
	}()
	for wait := 50 * time.Millisecond; status != nil && *status == blob.CopyStatusTypePending; wait = min(2*wait, azureCopyPoll) {
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(wait):
		}
		p, err := to.GetProperties(ctx, nil)
		if err != nil {
			return false, fmt.Errorf("copying blob %s in the store: %w", d, err)
		}
		status = p.CopyStatus
	}
	if status != nil && *status != blob.CopyStatusTypeSuccess {
		return false, fmt.Errorf("copying blob %s in the store: copy %s", d, *status)
	}
	return true, nil
}
