package storeerr

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"cloud.google.com/go/storage"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/aws/aws-sdk-go/aws/awserr"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/api/googleapi"
)

// s3Err is an S3 answer as the s3-aws driver returns it.
func s3Err(code string, status int) error {
	sdk := awserr.NewRequestFailure(awserr.New(code, "the store's words.\n\tmore words", nil), status, "REQ1")
	return storagedriver.Error{DriverName: "s3aws", Detail: sdk}
}

// azureErr is an Azure answer as the azure driver returns it: azcore's
// ResponseError, with the response it was made from.
func azureErr(code string, status int) error {
	u, _ := url.Parse("http://127.0.0.1:10000/devstoreaccount1/registry/docker/registry/v2?comp=list")
	resp := &http.Response{StatusCode: status, Status: fmt.Sprint(status), Header: http.Header{"X-Ms-Request-Id": {"AZ1"}},
		Request: &http.Request{Method: http.MethodGet, URL: u}}
	return storagedriver.Error{DriverName: "azure", Detail: &azcore.ResponseError{ErrorCode: code, StatusCode: status, RawResponse: resp}}
}

// entraErr is Microsoft Entra ID refusing a token to client_secret
// credentials, as azidentity returns it through the azure driver.
func entraErr() error {
	u, _ := url.Parse("https://login.microsoftonline.com/tenant/oauth2/v2.0/token")
	body := `{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.\r\nTrace ID: 1"}`
	resp := &http.Response{StatusCode: 401, Status: "401 Unauthorized", Header: http.Header{}, Body: io.NopCloser(strings.NewReader(body)),
		Request: &http.Request{Method: http.MethodPost, URL: u}}
	return storagedriver.Error{DriverName: "azure", Detail: &azidentity.AuthenticationFailedError{RawResponse: resp}}
}

// gcsErr is a GCS answer as cloud.google.com/go/storage returns it (the
// gcs driver passes it on as it is). No GCS emulator here: these are the
// only GCS tests.
func gcsErr(status int, reason string) error {
	return &googleapi.Error{Code: status, Message: "the store's words", Errors: []googleapi.ErrorItem{{Reason: reason}}, Header: http.Header{}}
}

// The store's refusals that an operator mends in the settings, each one
// line naming the store's code and the settings to check, the store's
// error still reachable; other errors pass as they are.
func TestDescribe(t *testing.T) {
	type got struct {
		Kind     error
		Store    string
		Status   int
		Code     string
		Contains bool // every word of the case is in the message
	}
	noCreds := awserr.New("NoCredentialProviders", "no valid providers in chain. Deprecated.\n\tFor verbose messaging see aws.Config.CredentialsChainVerboseErrors", nil)
	for _, tc := range []struct {
		name   string
		err    error
		config string
		want   got
		words  []string
	}{
		{"s3 no credentials, registry config", storagedriver.Error{DriverName: "s3aws", Detail: noCreds}, "registry.yml",
			got{ErrNoCredentials, "s3", 0, "NoCredentialProviders", true},
			[]string{"no AWS credentials were found", "accesskey and secretkey in the storage: s3 section of registry.yml", "AWS_ACCESS_KEY_ID", "role"}},
		{"s3 no credentials, s3:// target", storagedriver.Error{DriverName: "s3aws", Detail: noCreds}, "",
			got{ErrNoCredentials, "s3", 0, "NoCredentialProviders", true},
			[]string{"no AWS credentials were found", "AWS_ACCESS_KEY_ID", "~/.aws/credentials", "--target-config FILE"}},
		{"s3 wrong secret key", s3Err("SignatureDoesNotMatch", 403), "registry.yml",
			got{ErrCredentialsRefused, "s3", 403, "SignatureDoesNotMatch", true},
			[]string{"secret key does not match", "(s3 403 SignatureDoesNotMatch, request id REQ1)", "storage: s3 section of registry.yml"}},
		{"s3 unknown access key", s3Err("InvalidAccessKeyId", 403), "",
			got{ErrCredentialsRefused, "s3", 403, "InvalidAccessKeyId", true},
			[]string{"no such access key", "AWS_ACCESS_KEY_ID", "endpoint"}},
		{"s3 access denied", s3Err("AccessDenied", 403), "registry.yml",
			got{ErrCredentialsRefused, "s3", 403, "AccessDenied", true},
			[]string{"refused access", "policy"}},
		{"s3 expired token", s3Err("ExpiredToken", 400), "registry.yml",
			got{ErrCredentialsRefused, "s3", 400, "ExpiredToken", true},
			[]string{"session token", "AWS_SESSION_TOKEN"}},
		{"s3 no bucket", s3Err("NoSuchBucket", 404), "registry.yml",
			got{ErrNoBucket, "s3", 404, "NoSuchBucket", true},
			[]string{"bucket does not exist", "bucket and regionendpoint in the storage: s3 section of registry.yml"}},
		{"s3 no bucket, s3:// target", s3Err("NoSuchBucket", 404), "",
			got{ErrNoBucket, "s3", 404, "NoSuchBucket", true},
			[]string{"bucket does not exist", "the name and the endpoint"}},
		{"azure wrong account key", azureErr("AuthenticationFailed", 403), "registry.yml",
			got{ErrCredentialsRefused, "azure", 403, "AuthenticationFailed", true},
			[]string{"account key", "(azure 403 AuthenticationFailed, request id AZ1)", "accountname and accountkey in the storage: azure section of registry.yml", "credentials type"}},
		{"azure wrong key on azurite, or network rules", azureErr("AuthorizationFailure", 403), "registry.yml",
			got{ErrCredentialsRefused, "azure", 403, "AuthorizationFailure", true},
			[]string{"accountkey", "network rules"}},
		{"azure role missing", azureErr("AuthorizationPermissionMismatch", 403), "backup.yml",
			got{ErrCredentialsRefused, "azure", 403, "AuthorizationPermissionMismatch", true},
			[]string{"Storage Blob Data Contributor", "credentials type in the storage: azure section of backup.yml"}},
		{"azure account keys disabled", azureErr("KeyBasedAuthenticationNotPermitted", 403), "registry.yml",
			got{ErrCredentialsRefused, "azure", 403, "KeyBasedAuthenticationNotPermitted", true},
			[]string{"does not allow account keys", "client_secret"}},
		{"azure no container", azureErr("ContainerNotFound", 404), "registry.yml",
			got{ErrNoBucket, "azure", 404, "ContainerNotFound", true},
			[]string{"container does not exist", "container, accountname and serviceurl in the storage: azure section of registry.yml"}},
		{"azure any other answer, one line", azureErr("ServerBusy", 503), "registry.yml",
			got{nil, "azure", 503, "ServerBusy", true},
			[]string{"azure answered 503 ServerBusy to GET http://127.0.0.1:10000/devstoreaccount1/registry/docker/registry/v2 (request id AZ1)"}},
		{"azure client secret refused", entraErr(), "registry.yml",
			got{ErrCredentialsRefused, "azure", 401, "invalid_client AADSTS7000215", true},
			[]string{"Entra ID gave the credentials no token (azure 401 invalid_client AADSTS7000215)", "clientid, tenantid and secret under credentials (type client_secret) in the storage: azure section of registry.yml"}},
		{"azure default credentials find none", errors.New("DefaultAzureCredential: failed to acquire a token.\nAttempted credentials:\n\tEnvironmentCredential: missing environment variable AZURE_TENANT_ID\n\tManagedIdentityCredential: no response from the IMDS endpoint"), "registry.yml",
			got{ErrNoCredentials, "azure", 0, "", true},
			[]string{"no Azure credentials were found (credentials type default_credentials: DefaultAzureCredential: failed to acquire a token.; Attempted credentials:; EnvironmentCredential: missing environment variable AZURE_TENANT_ID; ManagedIdentityCredential", "AZURE_CLIENT_SECRET", "another credentials type in the storage: azure section of registry.yml"}},
		{"gcs refused", gcsErr(401, "authError"), "registry.yml",
			got{ErrCredentialsRefused, "gcs", 401, "authError", true},
			[]string{"refused the credentials", "keyfile or credentials in the storage: gcs section of registry.yml", "GOOGLE_APPLICATION_CREDENTIALS"}},
		{"gcs forbidden", fmt.Errorf("listing: %w", gcsErr(403, "forbidden")), "registry.yml",
			got{ErrCredentialsRefused, "gcs", 403, "forbidden", true},
			[]string{"refused access", "roles/storage.objectAdmin"}},
		{"gcs no bucket", gcsErr(404, "notFound"), "registry.yml",
			got{ErrNoBucket, "gcs", 404, "notFound", true},
			[]string{"bucket does not exist", "bucket in the storage: gcs section of registry.yml"}},
		{"gcs no bucket, the library's sentinel", fmt.Errorf("reading: %w", storage.ErrBucketNotExist), "registry.yml",
			got{ErrNoBucket, "gcs", 404, "", true},
			[]string{"bucket does not exist"}},
		{"gcs no default credentials", errors.New("google: could not find default credentials. See https://cloud.google.com/docs/authentication/external/set-up-adc for more information"), "registry.yml",
			got{ErrNoCredentials, "gcs", 0, "", true},
			[]string{"no Google credentials were found", "keyfile in the storage: gcs section of registry.yml", "GOOGLE_APPLICATION_CREDENTIALS"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Describe(tc.err, tc.config)
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("not described: %v", err)
			}
			msg := err.Error()
			g := got{Store: e.Store, Status: e.Status, Code: e.Code, Contains: true}
			for _, k := range []error{ErrNoCredentials, ErrCredentialsRefused, ErrNoBucket} {
				if errors.Is(err, k) {
					g.Kind = k
				}
			}
			for _, w := range tc.words {
				if !strings.Contains(msg, w) {
					g.Contains = false
					t.Errorf("%q lacks %q", msg, w)
				}
			}
			if diff := cmp.Diff(tc.want, g, cmp.Comparer(func(a, b error) bool { return a == b })); diff != "" {
				t.Errorf("(-want +got)\n%s", diff)
			}
			if strings.Contains(msg, "\n") || strings.Contains(msg, "the store's words") || strings.Contains(msg, "NoCredentialProviders:") {
				t.Errorf("not one line of its own: %q", msg)
			}
			if !errors.Is(err, tc.err) {
				t.Errorf("the store's error is not wrapped: %v", err)
			}
			// The SDK's error is reachable through distribution's
			// storagedriver.Error, which does not unwrap.
			var ae awserr.Error
			var re *azcore.ResponseError
			var ge *googleapi.Error
			var ie *azidentity.AuthenticationFailedError
			errors.As(err, &ae)
			errors.As(err, &re)
			errors.As(err, &ge)
			errors.As(err, &ie)
			switch {
			case e.Store == "s3" && ae == nil, e.Store == "azure" && e.Code != "" && re == nil && ie == nil, e.Store == "gcs" && e.Code != "" && ge == nil:
				t.Errorf("the SDK's error is not reachable: %v", err)
			}
			if again := Describe(err, "other.yml"); again != err {
				t.Errorf("described twice: %v", again)
			}
		})
	}
}

func TestDescribeOthers(t *testing.T) {
	for _, err := range []error{
		errors.New("connection refused"),
		storagedriver.PathNotFoundError{Path: "/docker", DriverName: "s3aws"},
		s3Err("InternalError", 500),
		gcsErr(503, "backendError"),
	} {
		if got := Describe(err, "registry.yml"); got != err {
			t.Errorf("%v described: %v", err, got)
		}
	}
	if Describe(nil, "registry.yml") != nil {
		t.Error("nil described")
	}
}
