package backup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/aws/credentials"
	"github.com/aws/aws-sdk-go/aws/session"
	"github.com/aws/aws-sdk-go/service/s3"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/regkeeper/regkeeper/gc"
	"github.com/regkeeper/regkeeper/internal/testbed/embedded"
	"github.com/regkeeper/regkeeper/internal/testbed/minio"
	"github.com/regkeeper/regkeeper/internal/testbed/regtest"
)

// reuploadInParts writes the object's own bytes back as a multipart
// upload of one part: the content is the same (the registry still serves
// it), the ETag is not (an MD5 of the parts' MD5s, "-1" at its end).
func reuploadInParts(ctx context.Context, m *minio.Server, bucket, key string) (before, after string, err error) {
	got, err := m.S3.GetObjectWithContext(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return "", "", err
	}
	body, err := io.ReadAll(got.Body)
	got.Body.Close()
	if err != nil {
		return "", "", err
	}
	up, err := m.S3.CreateMultipartUploadWithContext(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return "", "", err
	}
	part, err := m.S3.UploadPartWithContext(ctx, &s3.UploadPartInput{Bucket: aws.String(bucket), Key: aws.String(key),
		UploadId: up.UploadId, PartNumber: aws.Int64(1), Body: bytes.NewReader(body)})
	if err != nil {
		return "", "", err
	}
	done, err := m.S3.CompleteMultipartUploadWithContext(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String(bucket), Key: aws.String(key),
		UploadId: up.UploadId, MultipartUpload: &s3.CompletedMultipartUpload{Parts: []*s3.CompletedPart{{ETag: part.ETag, PartNumber: aws.Int64(1)}}}})
	if err != nil {
		return "", "", err
	}
	return aws.StringValue(got.ETag), aws.StringValue(done.ETag), nil
}

// A registry blob replaced in the registry's storage between its check
// (size and ETag) and its store-side copy on MinIO: the copy's ETag
// condition fails (PreconditionFailed) and that blob is pulled through
// the registry instead, said in an info line; the run completes with no
// error, every other blob is still copied in the store (one fewer than a
// run without the replacement), the pulled blob's bytes in the bucket
// hash to its digest, and verify finds the backup whole.
func TestBackupS3StoreSideCopyReplaced(t *testing.T) {
	m := startMinIO(t, "registry")
	ctx := context.Background()
	if err := m.CreateBucket(ctx, "backups"); err != nil {
		t.Fatal(err)
	}
	srv, _ := regtest.Seeded(t, embedded.Options{Storage: m.StorageYAML("registry")})
	source, err := gc.Open(ctx, srv.ConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	reg := gc.S3PlaceOf(source)
	if reg == nil {
		t.Fatal("the registry's storage is not an S3 place")
	}
	target := func(prefix string) Layout {
		l, err := OpenTarget(ctx, "s3://backups/"+prefix+"?endpoint="+m.Endpoint, "")
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	rewrite := func(ctx context.Context, d v1.Hash) error {
		before, after, err := reuploadInParts(ctx, m, reg.Bucket, reg.Key(registryBlobPath(d)))
		if err == nil && before == after {
			err = fmt.Errorf("the ETag stayed %s", before)
		}
		return err
	}
	storeSideCopyReplaced(t, srv.Host, source, target, rewrite, "PreconditionFailed")
}

// What a failed store-side copy on MinIO falls back from: the source's
// ETag no longer the one checked, or the source gone, by one CopyObject
// and by a copy in parts, fall back to a pull; a missing source bucket,
// and errors that are not S3's, do not.
func TestSourceChangedS3(t *testing.T) {
	m := startMinIO(t, "registry")
	ctx := context.Background()
	if err := m.CreateBucket(ctx, "backups"); err != nil {
		t.Fatal(err)
	}
	put, err := m.S3.PutObjectWithContext(ctx, &s3.PutObjectInput{Bucket: aws.String("registry"), Key: aws.String("blob"), Body: bytes.NewReader([]byte("the blob's bytes"))})
	if err != nil {
		t.Fatal(err)
	}
	etag := aws.StringValue(put.ETag)
	l, err := OpenTarget(ctx, "s3://backups/b?endpoint="+m.Endpoint, "")
	if err != nil {
		t.Fatal(err)
	}
	dst := gc.S3PlaceOf(l.driver)
	if dst == nil {
		t.Fatal("the backup is not an S3 place")
	}
	const stale = `"00000000000000000000000000000000"`
	for _, tc := range []struct {
		name           string
		bucket, key    string
		ifMatch        string
		inParts        bool
		wantErr, falls bool
	}{
		{name: "copied", bucket: "registry", key: "blob", ifMatch: etag},
		{name: "copied in parts", bucket: "registry", key: "blob", ifMatch: etag, inParts: true},
		{name: "ETag changed", bucket: "registry", key: "blob", ifMatch: stale, wantErr: true, falls: true},
		{name: "ETag changed, in parts", bucket: "registry", key: "blob", ifMatch: stale, inParts: true, wantErr: true, falls: true},
		{name: "deleted", bucket: "registry", key: "gone", ifMatch: etag, wantErr: true, falls: true},
		{name: "deleted, in parts", bucket: "registry", key: "gone", ifMatch: etag, inParts: true, wantErr: true, falls: true},
		{name: "no such bucket", bucket: "nobucket", key: "blob", ifMatch: etag, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := gc.S3CopyOptions{SourceBucket: tc.bucket, IfMatch: tc.ifMatch}
			if tc.inParts {
				opts.CopyMax, opts.PartSize = 1, 5<<20
			}
			err := dst.Copy(ctx, tc.key, dst.Key("/copy"), 16, opts)
			if (err != nil) != tc.wantErr || sourceChanged(err) != tc.falls {
				t.Errorf("copy: %v; sourceChanged %v, want error %v, sourceChanged %v", err, sourceChanged(err), tc.wantErr, tc.falls)
			}
		})
	}
	for _, err := range []error{nil, errors.New("connection reset"), context.Canceled} {
		if sourceChanged(err) {
			t.Errorf("sourceChanged(%v) = true", err)
		}
	}
}

// A registry blob the backup's credentials cannot look at (here: refused
// keys) is not a blob that changed: the copier says errCheckFailed, which
// the run reports once and pulls the blob; a blob that is not there is
// no error at all (pulled, as before).
func TestS3CopierCheckFails(t *testing.T) {
	m := startMinIO(t, "registry")
	ctx := context.Background()
	if err := m.CreateBucket(ctx, "backups"); err != nil {
		t.Fatal(err)
	}
	l, err := OpenTarget(ctx, "s3://backups/b?endpoint="+m.Endpoint, "")
	if err != nil {
		t.Fatal(err)
	}
	good := gc.S3PlaceOf(l.driver)
	if good == nil {
		t.Fatal("the backup is not an S3 place")
	}
	src := &gc.S3Place{Client: good.Client, Bucket: "registry", Root: "/"}
	d := v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("ab", 32)}
	ok, err := (&s3Copier{src: src, dst: good}).copy(ctx, d, 16, "/copy")
	if ok || err != nil {
		t.Errorf("a blob not in the registry's storage: %v, %v; want false, nil (pulled)", ok, err)
	}
	refused := *good
	sess, err := session.NewSession(good.Client.Config.Copy().WithCredentials(credentials.NewStaticCredentials(minio.AccessKey, "not-the-secret", "")))
	if err != nil {
		t.Fatal(err)
	}
	refused.Client = s3.New(sess)
	ok, err = (&s3Copier{src: src, dst: &refused}).copy(ctx, d, 16, "/copy")
	if ok || !errors.Is(err, errCheckFailed) || sourceChanged(err) {
		t.Errorf("refused keys: %v, %v; want errCheckFailed", ok, err)
	}
}
