// Package minio runs a MinIO server on 127.0.0.1 for the S3 tests and
// benchmarks, and talks to it through the S3 API (the same aws-sdk-go the
// registry's s3-aws driver uses). scripts/setup-minio installs the binary.
package minio

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/aws/credentials"
	"github.com/aws/aws-sdk-go/aws/session"
	"github.com/aws/aws-sdk-go/service/s3"

	"github.com/regkeeper/regkeeper/internal/testbed/tools"
)

// ErrNotInstalled: no minio binary in REGKEEPER_MINIO, the cache or PATH.
var ErrNotInstalled = errors.New("minio not installed (run scripts/setup-minio, or set REGKEEPER_MINIO)")

// Credentials of every server Start starts.
const (
	AccessKey = "regkeeper"
	SecretKey = "regkeeper-secret"
	Region    = "us-east-1"
)

// CacheDir is where scripts/setup-minio and bench/gc install binaries:
// ${XDG_CACHE_HOME:-$HOME/.cache}/regkeeper/bin.
func CacheDir() string { return tools.CacheDir("bin") }

// Find returns the minio binary: $REGKEEPER_MINIO, then CacheDir()/minio,
// then minio on PATH.
func Find() (string, error) {
	return tools.Find("REGKEEPER_MINIO", filepath.Join(CacheDir(), "minio"), "minio", ErrNotInstalled)
}

// Server is a running MinIO.
type Server struct {
	// Endpoint is "http://127.0.0.1:PORT".
	Endpoint string
	// S3 is a client for it.
	S3 *s3.S3
	*tools.Process
}

// Start runs bin as a single-drive server with its data in dir, on a free
// port of 127.0.0.1, and waits until it is ready. Its output goes to
// dir/../minio.log (dir's parent must be writable).
func Start(ctx context.Context, bin, dir string) (*Server, error) {
	port, err := tools.FreePort()
	if err != nil {
		return nil, err
	}
	cport, err := tools.FreePort()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cmd := exec.Command(bin, "server", "--quiet", "--address", addr, "--console-address", fmt.Sprintf("127.0.0.1:%d", cport), dir)
	cmd.Env = append(os.Environ(), "MINIO_ROOT_USER="+AccessKey, "MINIO_ROOT_PASSWORD="+SecretKey,
		"MINIO_BROWSER=off", "MINIO_UPDATE=off", "MINIO_CI_CD=1")
	proc, err := tools.StartProcess("minio", cmd, filepath.Join(filepath.Dir(dir), "minio.log"))
	if err != nil {
		return nil, err
	}
	s := &Server{Endpoint: "http://" + addr, Process: proc}
	sess, err := session.NewSession(&aws.Config{
		Endpoint:         aws.String(s.Endpoint),
		Region:           aws.String(Region),
		S3ForcePathStyle: aws.Bool(true),
		DisableSSL:       aws.Bool(true),
		Credentials:      credentials.NewStaticCredentials(AccessKey, SecretKey, ""),
	})
	if err != nil {
		s.Close()
		return nil, err
	}
	s.S3 = s3.New(sess)
	// Ready when the S3 API serves a request: the health check can answer
	// while MinIO is still initialising its subsystems. A loaded machine
	// (the whole test suite on 2 cores, a disk that discards every freed
	// block) can take a long while to format the drive.
	err = proc.WaitReady(ctx, 3*time.Minute, "serve the S3 API on "+addr, func(ctx context.Context) error {
		_, err := s.S3.ListBucketsWithContext(ctx, &s3.ListBucketsInput{})
		return err
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// CreateBucket creates a bucket.
func (s *Server) CreateBucket(ctx context.Context, bucket string) error {
	if _, err := s.S3.CreateBucketWithContext(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		return fmt.Errorf("creating bucket %s: %w%s", bucket, err, s.LogTail())
	}
	return nil
}

// StorageYAML is the registry's s3 storage driver section for bucket on this
// server (as embedded.Options.Storage takes it).
func (s *Server) StorageYAML(bucket string) string {
	return fmt.Sprintf(`s3:
  accesskey: %s
  secretkey: %s
  region: %s
  regionendpoint: %s
  bucket: %s
  forcepathstyle: true
  secure: false
  v4auth: true
`, AccessKey, SecretKey, Region, s.Endpoint, bucket)
}

// Objects returns the size of every object under prefix ("" for all), keyed
// by the object key (a storage driver path without its leading "/").
func (s *Server) Objects(ctx context.Context, bucket, prefix string) (map[string]int64, error) {
	out := map[string]int64{}
	err := s.S3.ListObjectsV2PagesWithContext(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(prefix)},
		func(page *s3.ListObjectsV2Output, _ bool) bool {
			for _, o := range page.Contents {
				out[*o.Key] = *o.Size
			}
			return true
		})
	if err != nil {
		return nil, fmt.Errorf("listing %s/%s: %w", bucket, prefix, err)
	}
	return out, nil
}

// Exists tells whether a storage driver path exists in bucket: an object
// with that key, or any object below it.
func (s *Server) Exists(ctx context.Context, bucket, path string) (bool, error) {
	key := strings.TrimPrefix(path, "/")
	objs, err := s.Objects(ctx, bucket, key)
	if err != nil {
		return false, err
	}
	for k := range objs {
		if k == key || strings.HasPrefix(k, key+"/") {
			return true, nil
		}
	}
	return false, nil
}

// ForTest starts MinIO for one test with a fresh bucket, stopped when the
// test ends, or skips the test when MinIO is not installed
// (scripts/setup-minio).
func ForTest(t testing.TB, bucket string) *Server {
	t.Helper()
	bin, err := Find()
	if errors.Is(err, ErrNotInstalled) {
		t.Skipf("skipping the S3 test: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	m, err := Start(ctx, bin, filepath.Join(t.TempDir(), "data"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	if err := m.CreateBucket(ctx, bucket); err != nil {
		t.Fatal(err)
	}
	return m
}

// UseCredentials puts the server's keys where the AWS SDK looks first (the
// environment), for the test: what an s3:// backup target reads.
func UseCredentials(t testing.TB) {
	t.Setenv("AWS_ACCESS_KEY_ID", AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", SecretKey)
}

// TargetURL is the s3:// URL of a backup under prefix in bucket.
func (s *Server) TargetURL(bucket, prefix string) string {
	return "s3://" + bucket + "/" + prefix + "?region=" + Region + "&endpoint=" + s.Endpoint
}

// TargetConfig writes a --target-config file (a registry-style storage
// section) for a backup at rootdirectory in bucket, and returns its path.
func (s *Server) TargetConfig(t testing.TB, bucket, rootdirectory string) string {
	t.Helper()
	return tools.StorageConfig(t, s.StorageYAML(bucket)+"  rootdirectory: "+rootdirectory)
}
