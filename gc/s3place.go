package gc

import (
	"reflect"
	"strings"

	"github.com/aws/aws-sdk-go/service/s3"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	s3driver "github.com/distribution/distribution/v3/registry/storage/driver/s3-aws"
)

// S3Place is an s3-aws driver's own configured client (same credentials,
// endpoint and region), bucket and root directory: what gc's batch deletes
// and backup's store-side copies send their requests through, for the
// requests the driver's interface has no call for.
type S3Place struct {
	Client       *s3.S3
	Bucket, Root string
}

// S3PlaceOf reaches into an s3-aws driver for its client, bucket and root;
// nil for any other driver, or when they cannot be reached (the driver's
// own calls are used then).
func S3PlaceOf(d storagedriver.StorageDriver) *S3Place {
	sd, ok := d.(*s3driver.Driver)
	if !ok || sd.StorageDriver == nil {
		return nil
	}
	v := reflect.ValueOf(sd.StorageDriver)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return nil
	}
	e := v.Elem()
	client, ok1 := field[*s3.S3](e, "S3")
	bucket, ok2 := field[string](e, "Bucket")
	root, ok3 := field[string](e, "RootDirectory")
	if !ok1 || !ok2 || !ok3 || client == nil || bucket == "" {
		return nil
	}
	return &S3Place{Client: client, Bucket: bucket, Root: root}
}

func field[T any](v reflect.Value, name string) (T, bool) {
	var zero T
	f := v.FieldByName(name)
	if !f.IsValid() || !f.CanInterface() {
		return zero, false
	}
	t, ok := f.Interface().(T)
	return t, ok
}

// Key maps a driver path to its object key, as the driver does.
func (p *S3Place) Key(path string) string {
	return strings.TrimLeft(strings.TrimRight(p.Root, "/")+path, "/")
}
