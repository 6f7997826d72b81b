// Server-side copy: blobs copied inside the object store, not through the
// machine.

package backup

import (
	"context"
	"fmt"
	"reflect"
	"strings"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/service/s3"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	s3driver "github.com/distribution/distribution/v3/registry/storage/driver/s3-aws"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// s3CopyMax is the largest object one CopyObject request copies (5 GiB);
// larger blobs are pulled (UploadPartCopy is not done).
const s3CopyMax = 5 << 30

// s3Place is an s3-aws driver's client, bucket and root directory.
type s3Place struct {
	client       *s3.S3
	bucket, root string
}

// s3PlaceOf reaches into an s3-aws driver for its configured client (as gc
// does for batch deletes); nil for any other driver.
func s3PlaceOf(d storagedriver.StorageDriver) *s3Place {
	sd, ok := d.(*s3driver.Driver)
	if !ok || sd.StorageDriver == nil {
		return nil
	}
	v := reflect.ValueOf(sd.StorageDriver)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return nil
	}
	e := v.Elem()
	client, ok1 := fieldOf[*s3.S3](e, "S3")
	bucket, ok2 := fieldOf[string](e, "Bucket")
	root, ok3 := fieldOf[string](e, "RootDirectory")
	if !ok1 || !ok2 || !ok3 || client == nil || bucket == "" {
		return nil
	}
	return &s3Place{client: client, bucket: bucket, root: root}
}

func fieldOf[T any](v reflect.Value, name string) (T, bool) {
	var zero T
	f := v.FieldByName(name)
	if !f.IsValid() || !f.CanInterface() {
		return zero, false
	}
	t, ok := f.Interface().(T)
	return t, ok
}

// key maps a driver path to its object key, as the driver does.
func (p *s3Place) key(path string) string {
	return strings.TrimLeft(strings.TrimRight(p.root, "/")+path, "/")
}

// storeCopier copies blobs from the registry's storage to the backup's
// when both are buckets of one S3 endpoint.
type storeCopier struct {
	src, dst *s3Place
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
	src, dst := s3PlaceOf(source), s3PlaceOf(l.driver)
	if src == nil || dst == nil {
		return nil, fmt.Sprintf("store-side copy is done between S3 buckets only (registry storage %s, backup %s)", source.Name(), l.driver.Name())
	}
	if src.client.Endpoint != dst.client.Endpoint || aws.StringValue(src.client.Config.Region) != aws.StringValue(dst.client.Config.Region) {
		return nil, fmt.Sprintf("the registry's storage (%s) and the backup (%s) are not on one S3 endpoint", src.client.Endpoint, dst.client.Endpoint)
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
	srcKey := c.src.key(registryBlobPath(d))
	head, err := c.dst.client.HeadObjectWithContext(ctx, &s3.HeadObjectInput{Bucket: aws.String(c.src.bucket), Key: aws.String(srcKey)})
	if err != nil || aws.Int64Value(head.ContentLength) != size {
		return false, nil
	}
	_, err = c.dst.client.CopyObjectWithContext(ctx, &s3.CopyObjectInput{
		Bucket:     aws.String(c.dst.bucket),
		Key:        aws.String(c.dst.key(dst)),
		CopySource: aws.String(c.src.bucket + "/" + srcKey),
		// Only the object just checked: a blob replaced meanwhile is pulled.
		CopySourceIfMatch: head.ETag,
	})
	if err != nil {
		return false, fmt.Errorf("copying blob %s in the store: %w", d, err)
	}
	return true, nil
}
