// A copy inside one S3 endpoint, of any size: one CopyObject up to 5 GiB,
// a multipart copy (UploadPartCopy of ranges) above. gc's quarantine and
// backup's store-side copies both use it.

package gc

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/aws/awserr"
	"github.com/aws/aws-sdk-go/service/s3"
)

// The limits of S3's copies: one CopyObject copies up to 5 GiB; larger
// objects are copied in parts of 512 MiB (S3 takes 5 MiB to 5 GiB a part),
// at most 10,000 of them.
const (
	S3CopyMax  int64 = 5 << 30
	S3PartSize int64 = 512 << 20
	s3MaxParts       = 10000
)

// S3CopyOptions say how S3Place.Copy copies. The zero value copies within
// the place's bucket, with S3's limits, on no condition, setting nothing
// on the copy.
type S3CopyOptions struct {
	// SourceBucket holds the source key ("": the place's own bucket). The
	// place's client must be allowed to read it.
	SourceBucket string
	// IfMatch is the ETag the source must still have: every request of the
	// copy is conditioned on it. "": no condition; a copy in parts then
	// reads the source's ETag (and size) with a HeadObject first, so that
	// all its parts come from one object.
	IfMatch string
	// CopyMax is the largest source copied with one CopyObject (0:
	// S3CopyMax); PartSize the size of the parts above it (0: S3PartSize).
	// Tests lower them to copy small objects in parts.
	CopyMax, PartSize int64
	// What the copy is stored with ("": S3's default), as a driver sets
	// them on what it writes. Encrypt is SSE-S3, or SSE-KMS with KMSKeyID.
	ContentType, ACL, StorageClass string
	Encrypt                        bool
	KMSKeyID                       string
}

// Copy copies the object srcKey (of the given size; 0 when unknown) to
// dstKey of the place's bucket inside the store: one CopyObject when size
// is at most opts.CopyMax, else a multipart copy, which also takes over
// when S3 refuses a CopyObject for the source's size. A multipart copy
// creates the upload, copies one range a part, and completes it, which
// makes the object visible whole; on any error it is aborted (nothing
// visible, nothing billed). A missing source (or one whose ETag is no
// longer opts.IfMatch) is the error S3 returned: see IsS3NotFound.
func (p *S3Place) Copy(ctx context.Context, srcKey, dstKey string, size int64, opts S3CopyOptions) error {
	if opts.SourceBucket == "" {
		opts.SourceBucket = p.Bucket
	}
	if opts.CopyMax <= 0 {
		opts.CopyMax = S3CopyMax
	}
	if opts.PartSize <= 0 {
		opts.PartSize = S3PartSize
	}
	if size <= opts.CopyMax {
		in := &s3.CopyObjectInput{
			Bucket:     aws.String(p.Bucket),
			Key:        aws.String(dstKey),
			CopySource: aws.String(opts.SourceBucket + "/" + srcKey),
		}
		if opts.IfMatch != "" {
			in.CopySourceIfMatch = aws.String(opts.IfMatch)
		}
		if opts.ContentType != "" {
			in.ContentType = aws.String(opts.ContentType)
		}
		in.ACL, in.StorageClass, in.ServerSideEncryption, in.SSEKMSKeyId = s3Settings(opts)
		_, err := p.Client.CopyObjectWithContext(ctx, in)
		if !isTooLargeToCopy(err) {
			return err
		}
		size = 0 // larger than known: read it
	}
	if opts.IfMatch == "" || size <= 0 {
		head, err := p.Client.HeadObjectWithContext(ctx, &s3.HeadObjectInput{
			Bucket: aws.String(opts.SourceBucket), Key: aws.String(srcKey)})
		if err != nil {
			return err
		}
		if opts.IfMatch != "" && aws.StringValue(head.ETag) != opts.IfMatch {
			return awserr.New("PreconditionFailed", "the source's ETag is not "+opts.IfMatch, nil)
		}
		opts.IfMatch, size = aws.StringValue(head.ETag), aws.Int64Value(head.ContentLength)
	}
	return p.copyParts(ctx, srcKey, dstKey, size, opts)
}

// copyParts copies srcKey (of the given size, with ETag opts.IfMatch) to
// dstKey in parts.
func (p *S3Place) copyParts(ctx context.Context, srcKey, dstKey string, size int64, opts S3CopyOptions) (err error) {
	part := opts.PartSize
	if n := (size + part - 1) / part; n > s3MaxParts {
		part = (size + s3MaxParts - 1) / s3MaxParts
	}
	in := &s3.CreateMultipartUploadInput{Bucket: aws.String(p.Bucket), Key: aws.String(dstKey)}
	if opts.ContentType != "" {
		in.ContentType = aws.String(opts.ContentType)
	}
	in.ACL, in.StorageClass, in.ServerSideEncryption, in.SSEKMSKeyId = s3Settings(opts)
	up, err := p.Client.CreateMultipartUploadWithContext(ctx, in)
	if err != nil {
		return fmt.Errorf("starting a copy in parts: %w", err)
	}
	defer func() {
		if err != nil {
			_, _ = p.Client.AbortMultipartUploadWithContext(context.WithoutCancel(ctx), &s3.AbortMultipartUploadInput{
				Bucket: aws.String(p.Bucket), Key: aws.String(dstKey), UploadId: up.UploadId})
		}
	}()
	var parts []*s3.CompletedPart
	for off, n := int64(0), int64(1); off < size; off, n = off+part, n+1 {
		end := min(off+part, size) - 1
		res, err := p.Client.UploadPartCopyWithContext(ctx, &s3.UploadPartCopyInput{
			Bucket:            aws.String(p.Bucket),
			Key:               aws.String(dstKey),
			UploadId:          up.UploadId,
			PartNumber:        aws.Int64(n),
			CopySource:        aws.String(opts.SourceBucket + "/" + srcKey),
			CopySourceRange:   aws.String(fmt.Sprintf("bytes=%d-%d", off, end)),
			CopySourceIfMatch: aws.String(opts.IfMatch),
		})
		if err != nil {
			return fmt.Errorf("copying part %d (bytes %d-%d): %w", n, off, end, err)
		}
		if res.CopyPartResult == nil {
			return fmt.Errorf("copying part %d (bytes %d-%d): no ETag in the answer", n, off, end)
		}
		parts = append(parts, &s3.CompletedPart{ETag: res.CopyPartResult.ETag, PartNumber: aws.Int64(n)})
	}
	_, err = p.Client.CompleteMultipartUploadWithContext(ctx, &s3.CompleteMultipartUploadInput{
		Bucket: aws.String(p.Bucket), Key: aws.String(dstKey), UploadId: up.UploadId,
		MultipartUpload: &s3.CompletedMultipartUpload{Parts: parts}})
	if err != nil {
		return fmt.Errorf("completing a copy in %d parts: %w", len(parts), err)
	}
	return nil
}

// s3Settings are the ACL, storage class and encryption fields of a copy's
// requests (nil for those not set).
func s3Settings(opts S3CopyOptions) (acl, class, sse, kms *string) {
	if opts.ACL != "" {
		acl = aws.String(opts.ACL)
	}
	if opts.StorageClass != "" && opts.StorageClass != "NONE" {
		class = aws.String(opts.StorageClass)
	}
	if opts.Encrypt {
		sse = aws.String("AES256")
		if opts.KMSKeyID != "" {
			sse, kms = aws.String("aws:kms"), aws.String(opts.KMSKeyID)
		}
	}
	return acl, class, sse, kms
}

// IsS3NotFound tells whether err is S3's answer for a key that does not
// exist (NoSuchKey, or NotFound for a HeadObject).
func IsS3NotFound(err error) bool {
	var ae awserr.Error
	return errors.As(err, &ae) && (ae.Code() == s3.ErrCodeNoSuchKey || ae.Code() == "NotFound")
}

// isTooLargeToCopy tells whether S3 refused a CopyObject for the size of
// its source (the size known was smaller than the object's).
func isTooLargeToCopy(err error) bool {
	var ae awserr.Error
	return errors.As(err, &ae) && (ae.Code() == "EntityTooLarge" || ae.Code() == "InvalidRequest")
}
