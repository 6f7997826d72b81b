package backup

import (
	"context"
	"errors"
	"io/fs"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/aws/aws-sdk-go/aws/awserr"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"google.golang.org/api/googleapi"
)

// A target with a scheme other than s3 is ErrBadTarget (a usage error),
// never a local directory named after the URL (issue 26: cycle --backup
// s3://... made s3:/backups/...); what has no scheme is a directory.
func TestOpenTargetSchemes(t *testing.T) {
	for _, tc := range []struct {
		target string
		bad    bool
	}{
		{"gs://b/p", true},
		{"azure://container/p", true},
		{"http://127.0.0.1:9000/b", true},
		{"S3:/b/p", true}, // a mistyped s3:// is not a directory either
		{"file:///backups", true},
		{"s3://key:secret@b/p", true},
		{"s3://b?accesskey=k", true},
		{"/backups/registry", false},
		{"./backups", false},
		{"backups:weekly", false}, // a colon in a directory name, no ":/"
		{"weird/dir:/x", false},   // "/" before the colon: a path
	} {
		l, err := OpenTarget(context.Background(), tc.target, "")
		switch {
		case tc.bad && !errors.Is(err, ErrBadTarget):
			t.Errorf("%s: err %v, want ErrBadTarget", tc.target, err)
		case tc.bad && (!strings.Contains(err.Error(), "s3://BUCKET/PREFIX") && !strings.Contains(err.Error(), "credentials do not go") && !strings.Contains(err.Error(), "unknown parameter") || strings.Contains(err.Error(), "secret@")):
			t.Errorf("%s: %v does not say what is taken (or shows the secret)", tc.target, err)
		case !tc.bad && (err != nil || l.Driver() != nil || l.Root != tc.target):
			t.Errorf("%s: %+v, %v; want the local directory", tc.target, l, err)
		}
	}
}

// The AWS SDK's NoCredentialProviders, as distribution's driver wraps it,
// says what to give; so do Azure's and GCS's refusals, in one line naming
// the --target-config file's section; other errors pass as they are.
func TestDescribeStorageError(t *testing.T) {
	sdk := awserr.New("NoCredentialProviders", "no valid providers in chain. Deprecated.\n\tFor verbose messaging see aws.Config.CredentialsChainVerboseErrors", nil)
	err := Layout{}.driverErr(storagedriver.Error{DriverName: "s3aws", Detail: sdk})
	if !errors.Is(err, ErrNoCredentials) || strings.Contains(err.Error(), "NoCredentialProviders") {
		t.Errorf("no credentials: %v", err)
	}
	for _, want := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "~/.aws/credentials", "role", "--target-config"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("no credentials: %q lacks %q", err, want)
		}
	}
	var ae awserr.Error
	if !errors.As(err, &ae) || ae.Code() != "NoCredentialProviders" {
		t.Errorf("no credentials: the SDK's error is not wrapped: %v", err)
	}

	// A --target-config target: what to check is named in its file.
	cfg := Layout{config: "backup-storage.yml"}
	for _, tc := range []struct {
		name string
		err  error
		want []string
	}{
		{"s3 wrong secret key", awserr.NewRequestFailure(awserr.New("SignatureDoesNotMatch", "The request signature we calculated does not match", nil), 403, "R1"),
			[]string{"the store refused the credentials", "(s3 403 SignatureDoesNotMatch, request id R1)", "accesskey and secretkey in the storage: s3 section of backup-storage.yml"}},
		{"s3 no bucket", awserr.NewRequestFailure(awserr.New("NoSuchBucket", "The specified bucket does not exist", nil), 404, "R2"),
			[]string{"the bucket does not exist (s3 404 NoSuchBucket, request id R2)", "bucket and regionendpoint in the storage: s3 section of backup-storage.yml"}},
		{"azure wrong account key", &azcore.ResponseError{ErrorCode: "AuthenticationFailed", StatusCode: 403},
			[]string{"the store refused the credentials", "(azure 403 AuthenticationFailed)", "accountname and accountkey in the storage: azure section of backup-storage.yml"}},
		{"azure no container", &azcore.ResponseError{ErrorCode: "ContainerNotFound", StatusCode: 404},
			[]string{"the container does not exist (azure 404 ContainerNotFound)", "in the storage: azure section of backup-storage.yml"}},
		{"azure permission", &azcore.ResponseError{ErrorCode: "AuthorizationPermissionMismatch", StatusCode: 403},
			[]string{"Storage Blob Data Contributor"}},
		{"gcs forbidden", &googleapi.Error{Code: 403, Errors: []googleapi.ErrorItem{{Reason: "forbidden"}}},
			[]string{"(gcs 403 forbidden)", "keyfile or credentials in the storage: gcs section of backup-storage.yml"}},
	} {
		err := cfg.driverErr(storagedriver.Error{DriverName: "d", Detail: tc.err})
		for _, want := range tc.want {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s: %q lacks %q", tc.name, err, want)
			}
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: more than one line: %q", tc.name, err)
		}
		if !errors.Is(err, tc.err) {
			t.Errorf("%s: the store's error is not wrapped: %v", tc.name, err)
		}
	}
	if err := cfg.driverErr(storagedriver.PathNotFoundError{Path: "/oci-layout"}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("path not found: %v, want fs.ErrNotExist", err)
	}

	other := errors.New("connection refused")
	if got := DescribeStorageError(other); got != other {
		t.Errorf("other error: %v", got)
	}
	if DescribeStorageError(nil) != nil {
		t.Error("nil error described")
	}
}
