package gc

import (
	"context"
	"errors"
	"github.com/regkeeper/regkeeper/internal/testbed/tools"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/aws/aws-sdk-go/aws/awserr"
	"github.com/google/go-cmp/cmp"

	"github.com/regkeeper/regkeeper/internal/storeerr"
	"github.com/regkeeper/regkeeper/internal/testbed/azurite"
	"github.com/regkeeper/regkeeper/internal/testbed/minio"
)

// requestID is the store's request id in a message, which changes with
// every request.
var requestID = regexp.MustCompile(`request id [^)]+`)

// refusedRun opens config and starts a dry run, which must fail at its
// first read: the error, and its message with the request id made fixed.
func refusedRun(t *testing.T, config string) (error, string) {
	t.Helper()
	ctx := context.Background()
	d, err := Open(ctx, config)
	if err != nil {
		t.Fatalf("opening %s: %v", config, err)
	}
	opts := noGrace()
	opts.DryRun = true
	rep, err := Run(ctx, d, opts)
	if err == nil {
		t.Fatalf("a run with refused storage succeeded: %+v", rep)
	}
	return err, requestID.ReplaceAllString(err.Error(), "request id R")
}

// gc on MinIO with the registry config's keys wrong, its bucket missing,
// or no credentials anywhere: one line saying what is wrong and what to
// check in the registry's config, the SDK's error still reachable.
func TestRefusedStorageS3(t *testing.T) {
	const bucket = "registry"
	m := minio.ForTest(t, bucket)
	good := m.StorageYAML(bucket)
	secret := "secretkey: " + minio.SecretKey + "\n"
	for _, tc := range []struct {
		name    string
		storage string
		env     bool // no credentials in the environment either
		kind    error
		code    string
		want    string
	}{
		{"wrong secret key", strings.Replace(good, secret, "secretkey: not-the-secret\n", 1), false, storeerr.ErrCredentialsRefused, "SignatureDoesNotMatch",
			"reading /docker/registry/v2: the store refused the credentials: the secret key does not match the access key (s3 403 SignatureDoesNotMatch, request id R): check accesskey and secretkey in the storage: s3 section of the registry's config (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY when it has none)"},
		{"no bucket", strings.Replace(good, "bucket: "+bucket+"\n", "bucket: no-such-bucket\n", 1), false, storeerr.ErrNoBucket, "NoSuchBucket",
			"reading /docker/registry/v2: the bucket does not exist (s3 404 NoSuchBucket, request id R): create it, or check bucket and regionendpoint in the storage: s3 section of the registry's config"},
		{"no credentials", strings.Replace(strings.Replace(good, "  "+secret, "", 1), "  accesskey: "+minio.AccessKey+"\n", "", 1), true, storeerr.ErrNoCredentials, "NoCredentialProviders",
			"reading /docker/registry/v2: no AWS credentials were found (none in the storage: s3 section of the registry's config, in the environment, in ~/.aws/credentials, nor from an instance or pod role): set accesskey and secretkey in the storage: s3 section of the registry's config, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE with ~/.aws/credentials), or run with an instance or pod role (IRSA)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.storage == good {
				t.Fatal("the case did not change the storage section")
			}
			if tc.env {
				for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"} {
					t.Setenv(k, "")
				}
				none := filepath.Join(t.TempDir(), "none")
				t.Setenv("AWS_SHARED_CREDENTIALS_FILE", none)
				t.Setenv("AWS_CONFIG_FILE", none)
				t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
			}
			err, msg := refusedRun(t, tools.StorageConfig(t, tc.storage))
			if diff := cmp.Diff(tc.want, msg); diff != "" {
				t.Errorf("message (-want +got)\n%s", diff)
			}
			var ae awserr.Error
			if !errors.Is(err, tc.kind) || !errors.As(err, &ae) || ae.Code() != tc.code {
				t.Errorf("want %v wrapping the SDK's %s: %#v", tc.kind, tc.code, err)
			}
		})
	}
}

// gc on Azurite with the registry config's account key wrong or its
// container missing: one line, not azcore's dump of the request and the
// response.
func TestRefusedStorageAzure(t *testing.T) {
	const container = "registry"
	a := azurite.ForTest(t, container)
	good := a.StorageYAML(container, azureRoot)
	// A key of the right form that is not the account's.
	wrongKey := strings.Repeat("d3Jvbmcta2V5", 7) + "d3Jvbmcta2V5LS0tLQ=="
	for _, tc := range []struct {
		name    string
		storage string
		kind    error
		code    string
		want    string
	}{
		// Azurite answers a wrong key with AuthorizationFailure (Azure
		// with AuthenticationFailed, which storeerr's table test covers).
		{"wrong account key", strings.Replace(good, azurite.AccountKey, wrongKey, 1), storeerr.ErrCredentialsRefused, "AuthorizationFailure",
			"reading /docker/registry/v2: the store refused the request (azure 403 AuthorizationFailure, request id R): check accountname and accountkey in the storage: azure section of the registry's config (credentials type shared_key), the credentials type, and the account's network rules (firewall, private endpoints)"},
		{"no container", a.StorageYAML("no-such-container", azureRoot), storeerr.ErrNoBucket, "ContainerNotFound",
			"reading /docker/registry/v2: the container does not exist (azure 404 ContainerNotFound, request id R): create it (the azure driver does not), or check container, accountname and serviceurl in the storage: azure section of the registry's config"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.storage == good {
				t.Fatal("the case did not change the storage section")
			}
			err, msg := refusedRun(t, tools.StorageConfig(t, tc.storage))
			if diff := cmp.Diff(tc.want, msg); diff != "" {
				t.Errorf("message (-want +got)\n%s", diff)
			}
			var re *azcore.ResponseError
			if !errors.Is(err, tc.kind) || !errors.As(err, &re) || re.ErrorCode != tc.code {
				t.Errorf("want %v wrapping azcore's %s: %#v", tc.kind, tc.code, err)
			}
		})
	}
}
