// Server-side copy: blobs copied inside the object store, not through the
// machine.

package backup

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/aws/awserr"
	"github.com/aws/aws-sdk-go/service/s3"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/regkeeper/regkeeper/gc"
)

// The limits of S3's copies (gc.S3Place.Copy: one CopyObject up to 5 GiB,
// parts of 512 MiB above). Variables so that a test can make a small blob
// "large" (MinIO takes parts of 5 MiB and more, but for the last).
var (
	s3CopyMax  = gc.S3CopyMax
	s3PartSize = gc.S3PartSize
)

// storeCopier copies a blob from the registry's storage to the backup's
// inside the store. ok is false when it cannot (the blob is not in the
// registry's storage at that size): then the blob is pulled. An error that
// wraps errSourceChanged says the blob was replaced or deleted in the
// registry's storage between its check and its copy: it is pulled too.
type storeCopier interface {
	copy(ctx context.Context, d v1.Hash, size int64, dst string) (ok bool, err error)
}

// errSourceChanged marks a store-side copy refused because the registry's
// blob is no longer the object just checked.
var errSourceChanged = errors.New("the registry's blob changed since it was checked")

// errCheckFailed: the registry's blob could not be looked at in its
// storage for another reason than its absence (refused credentials, a
// network error): the blob is pulled, and the run says why once.
var errCheckFailed = errors.New("cannot read the registry's blob in its storage")

// sourceChanged tells whether a store-side copy failed because its source
// was replaced or deleted since it was checked: S3's PreconditionFailed
// (the ETag condition of a CopyObject or of any UploadPartCopy of a copy
// in parts), NoSuchKey or NotFound; Azure's SourceConditionNotMet,
// ConditionNotMet (Azurite's answer to a failed source condition; the
// copy sets no condition on its destination) or BlobNotFound. Any other
// failure (access, a missing bucket or container, the network) is not.
func sourceChanged(err error) bool {
	if err == nil {
		return false
	}
	if bloberror.HasCode(err, bloberror.SourceConditionNotMet, bloberror.ConditionNotMet, bloberror.BlobNotFound) || gc.IsS3NotFound(err) {
		return true
	}
	var ae awserr.Error
	return errors.As(err, &ae) && ae.Code() == "PreconditionFailed"
}

// storeCopyChecked, when set (by tests), is called between the check of
// the registry's blob and its copy.
var storeCopyChecked func(ctx context.Context, d v1.Hash)

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
	if src, dst := gc.AzurePlaceOf(source), gc.AzurePlaceOf(l.driver); src != nil && dst != nil {
		if src.Account() == "" || src.Account() != dst.Account() {
			return nil, fmt.Sprintf("the registry's storage (%s) and the backup (%s) are not in one Azure storage account", src.Account(), dst.Account())
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
	if err != nil && !sourceChanged(err) && ctx.Err() == nil {
		return false, fmt.Errorf("%w %s: %w", errCheckFailed, srcKey, err)
	}
	if err != nil || aws.Int64Value(head.ContentLength) != size {
		return false, nil
	}
	if storeCopyChecked != nil {
		storeCopyChecked(ctx, d)
	}
	err = c.dst.Copy(ctx, srcKey, c.dst.Key(dst), size, gc.S3CopyOptions{
		SourceBucket: c.src.Bucket,
		// Only the object just checked: a blob replaced meanwhile fails
		// the copy (every part of a copy in parts is conditioned too).
		IfMatch: aws.StringValue(head.ETag),
		CopyMax: s3CopyMax, PartSize: s3PartSize,
	})
	if sourceChanged(err) {
		return false, fmt.Errorf("copying blob %s in the store: %w: %w", d, errSourceChanged, err)
	}
	if err != nil {
		return false, fmt.Errorf("copying blob %s in the store: %w", d, err)
	}
	return true, nil
}

// azureCopier copies between containers of one Azure storage account.
type azureCopier struct {
	src, dst *gc.AzurePlace
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
	src := c.src.Client.NewBlobClient(c.src.Name(registryBlobPath(d)))
	props, err := src.GetProperties(ctx, nil)
	if err != nil && !sourceChanged(err) && ctx.Err() == nil {
		return false, fmt.Errorf("%w %s: %w", errCheckFailed, c.src.Name(registryBlobPath(d)), err)
	}
	if err != nil || props.ContentLength == nil || *props.ContentLength != size {
		return false, nil
	}
	if storeCopyChecked != nil {
		storeCopyChecked(ctx, d)
	}
	to := c.dst.Client.NewBlobClient(c.dst.Name(dst))
	res, err := to.StartCopyFromURL(ctx, src.URL(), &blob.StartCopyFromURLOptions{
		SourceModifiedAccessConditions: &blob.SourceModifiedAccessConditions{SourceIfMatch: props.ETag}})
	if sourceChanged(err) {
		return false, fmt.Errorf("copying blob %s in the store: %w: %w", d, errSourceChanged, err)
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
