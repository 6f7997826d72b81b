// The quarantine on S3: a store-side copy per blob and its source deleted
// 1,000 keys a request, instead of the s3-aws driver's Move (a HeadObject,
// a CopyObject, a ListObjectsV2 and a one-key DeleteObjects per blob).

package gc

import (
	"context"
	"errors"
	"fmt"
	"path"
	"reflect"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/aws/awserr"
	"github.com/aws/aws-sdk-go/service/s3"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	s3driver "github.com/distribution/distribution/v3/registry/storage/driver/s3-aws"
)

// s3CopyMax is the largest object one CopyObject request copies (5 GiB).
// Larger blobs are left to the driver's Move, which copies them in parts.
const s3CopyMax = 5 << 30

// s3Mover is the storeMover of the s3-aws driver.
type s3Mover struct {
	*S3Place
	d    storagedriver.StorageDriver
	copy s3CopySettings
}

// s3CopySettings are what the driver sets on the objects it writes, so
// that a copy made here is stored as the driver's own Move stores it.
type s3CopySettings struct {
	encrypt                  bool
	keyID, storageClass, acl string
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
func s3CopySettingsOf(d storagedriver.StorageDriver) (s3CopySettings, bool) {
	sd, ok := d.(*s3driver.Driver)
	if !ok || sd.StorageDriver == nil {
		return s3CopySettings{}, false
	}
	v := reflect.ValueOf(sd.StorageDriver)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return s3CopySettings{}, false
	}
	v = v.Elem()
	encrypt, ok1 := field[bool](v, "Encrypt")
	keyID, ok2 := field[string](v, "KeyID")
	class, ok3 := field[string](v, "StorageClass")
	acl, ok4 := field[string](v, "ObjectACL")
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return s3CopySettings{}, false
	}
	return s3CopySettings{encrypt: encrypt, keyID: keyID, storageClass: class, acl: acl}, true
}

// copyObject copies the object at driver path from to driver path to with
// one CopyObject, setting what the driver's copy sets. A source that does
// not exist is a PathNotFoundError.
func (m *s3Mover) copyObject(ctx context.Context, from, to string) error {
	in := &s3.CopyObjectInput{
		Bucket:      aws.String(m.Bucket),
		Key:         aws.String(m.Key(to)),
		CopySource:  aws.String(m.Bucket + "/" + m.Key(from)),
		ContentType: aws.String("application/octet-stream"),
		ACL:         aws.String(m.copy.acl),
	}
	if m.copy.encrypt {
		in.ServerSideEncryption = aws.String("AES256")
		if m.copy.keyID != "" {
			in.ServerSideEncryption = aws.String("aws:kms")
			in.SSEKMSKeyId = aws.String(m.copy.keyID)
		}
	}
	if m.copy.storageClass != "" && m.copy.storageClass != "NONE" {
		in.StorageClass = aws.String(m.copy.storageClass)
	}
	if m.copy.acl == "" {
		in.ACL = nil
	}
	if _, err := m.Client.CopyObjectWithContext(ctx, in); err != nil {
		var ae awserr.Error
		if errors.As(err, &ae) && (ae.Code() == s3.ErrCodeNoSuchKey || ae.Code() == "NotFound") {
			return storagedriver.PathNotFoundError{Path: from, DriverName: m.d.Name()}
		}
		return err
	}
	return nil
}

// put copies the blobs into the quarantine, s3DeleteMax at a time (each
// copy a CopyObject, workers at once; no HeadObject, no listing), then
// deletes the sources of those copied in one DeleteObjects, and only then
// calls held for each. A blob whose source is gone (NoSuchKey) is skipped.
// Blobs too large for one CopyObject are returned for the driver's Move.
//
// A crash between a chunk's copies and its delete leaves those blobs in
// both places. The next run finds them in the quarantine (leftovers): one
// the mark keeps is found present in blobs/ by restore and its quarantined
// copy is purged as redundant; one still dead is planned again, copied
// over its quarantined copy (the same bytes) and moved as any other.
func (m *s3Mover) put(ctx context.Context, blobs []BlobDeletion, workers int, hook func(path string) error, held func(BlobDeletion)) ([]BlobDeletion, error) {
	var rest []BlobDeletion
	for start := 0; start < len(blobs); start += s3DeleteMax {
		chunk := blobs[start:min(start+s3DeleteMax, len(blobs))]
		// What each blob of the chunk became: 0 skipped, 1 copied, 2 too
		// large (the driver moves it).
		state := make([]byte, len(chunk))
		err := forEach(ctx, workers, len(chunk), func(i int) error {
			b := chunk[i]
			from := pathFor(blobDataSpec{b.Digest})
			if hook != nil {
				if err := hook(from); err != nil {
					return err
				}
			}
			if b.Size > s3CopyMax {
				state[i] = 2
				return nil
			}
			err := m.copyObject(ctx, from, pathFor(quarantineDataSpec{b.Digest}))
			if isNotFound(err) {
				return nil
			}
			if isTooLargeToCopy(err) {
				state[i] = 2
				return nil
			}
			if err != nil {
				return fmt.Errorf("quarantining %s: copying %s: %w", b.Digest, path.Base(path.Dir(from)), err)
			}
			state[i] = 1
			return nil
		})
		if err != nil {
			return nil, err
		}
		var sources []string
		var moved []BlobDeletion
		for i, b := range chunk {
			switch state[i] {
			case 1:
				sources = append(sources, pathFor(blobDataSpec{b.Digest}))
				moved = append(moved, b)
			case 2:
				rest = append(rest, b)
			}
		}
		if err := (&s3Batch{m.S3Place}).deleteFiles(ctx, sources, 1); err != nil {
			return nil, fmt.Errorf("quarantining: deleting the copied blobs from blobs/: %w", err)
		}
		for _, b := range moved {
			held(b)
		}
	}
	return rest, nil
}

// isTooLargeToCopy tells whether S3 refused a CopyObject for the size of
// its source (the size the plan knew was smaller than the object's).
func isTooLargeToCopy(err error) bool {
	var ae awserr.Error
	return errors.As(err, &ae) && (ae.Code() == "EntityTooLarge" || ae.Code() == "InvalidRequest")
}

// move moves one object: a CopyObject and a DeleteObjects of its one key.
// Restores are few; the caller has checked that to is free.
func (m *s3Mover) move(ctx context.Context, from, to string) error {
	err := m.copyObject(ctx, from, to)
	if isTooLargeToCopy(err) {
		return m.d.Move(ctx, from, to)
	}
	if err != nil {
		return err
	}
	return (&s3Batch{m.S3Place}).deleteFiles(ctx, []string{from}, 1)
}
