package backup

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go/aws/awserr"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
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
// says what to give; other errors pass as they are.
func TestDescribeStorageError(t *testing.T) {
	sdk := awserr.New("NoCredentialProviders", "no valid providers in chain. Deprecated.\n\tFor verbose messaging see aws.Config.CredentialsChainVerboseErrors", nil)
	err := driverErr(storagedriver.Error{DriverName: "s3aws", Detail: sdk})
	if !errors.Is(err, ErrNoCredentials) || strings.Contains(err.Error(), "NoCredentialProviders") {
		t.Errorf("no credentials: %v", err)
	}
	for _, want := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "~/.aws/credentials", "role", "--target-config"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("no credentials: %q lacks %q", err, want)
		}
	}
	other := errors.New("connection refused")
	if got := DescribeStorageError(other); got != other {
		t.Errorf("other error: %v", got)
	}
	if DescribeStorageError(nil) != nil {
		t.Error("nil error described")
	}
}
