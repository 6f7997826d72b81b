// Package storeerr says in one line what an object store's refusal means
// and what to check: no credentials, credentials refused, a bucket or
// container that does not exist. The SDKs' own errors say it in their
// words (the AWS SDK's "NoCredentialProviders: no valid providers in
// chain. Deprecated.", azcore's multi-line dump of the request, the
// response and its XML body), naming neither the setting to fix nor where
// it is. gc (the registry's own storage) and backup (its target) describe
// their stores' errors through Describe.
package storeerr

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"cloud.google.com/go/storage"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/aws/aws-sdk-go/aws/awserr"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"google.golang.org/api/googleapi"
)

// What a store's refusal is, for errors.Is.
var (
	// ErrNoCredentials: the store's SDK found no credentials at all.
	ErrNoCredentials = errors.New("no storage credentials")
	// ErrCredentialsRefused: the store refused the credentials, or they
	// may not do what was asked.
	ErrCredentialsRefused = errors.New("storage credentials refused")
	// ErrNoBucket: the bucket (S3, GCS) or container (Azure) does not
	// exist.
	ErrNoBucket = errors.New("no such bucket or container")
)

// Error is a store's error described: one line saying what is wrong and
// what to check, keeping the store's code. It wraps the store's error
// (errors.Is and errors.As reach it, and the SDK's error inside
// distribution's storagedriver.Error, which does not unwrap) and the kind
// (ErrNoCredentials, ErrCredentialsRefused, ErrNoBucket; none for an Azure
// answer that is none of them, only made one line).
type Error struct {
	// Store is "s3", "azure" or "gcs".
	Store string
	// Status is the HTTP status of the store's answer, 0 when there was
	// none.
	Status int
	// Code is the store's own error code (SignatureDoesNotMatch,
	// AuthenticationFailed, ContainerNotFound, a GCS reason), "" when it
	// gave none.
	Code string
	// Err is the error described.
	Err error

	kind error
	sdk  error
	msg  string
}

func (e *Error) Error() string { return e.msg }

// Unwrap returns the kind, the error described and the SDK's error in it.
func (e *Error) Unwrap() []error {
	var errs []error
	for _, err := range []error{e.kind, e.Err, e.sdk} {
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// Describe returns err described when it is a store's refusal that an
// operator mends in the store's settings, and err as it is otherwise (nil
// for nil). config names where the settings are, as the advice says it:
// the file whose storage: section configured the store ("registry.yml",
// or a phrase such as "the registry's config"), or "" for a store opened
// from an s3:// URL, whose credentials come only from the AWS SDK's chain
// (the environment, ~/.aws, an instance or pod role) or from a
// --target-config file instead.
func Describe(err error, config string) error {
	if err == nil {
		return nil
	}
	var already *Error
	if errors.As(err, &already) {
		return err
	}
	if ae, ok := find[awserr.Error](err); ok {
		return describeS3(err, ae, config)
	}
	if re, ok := find[*azcore.ResponseError](err); ok {
		return describeAzure(err, re, config)
	}
	if ae, ok := find[*azidentity.AuthenticationFailedError](err); ok {
		return describeEntra(err, ae, config)
	}
	if ge, ok := find[*googleapi.Error](err); ok {
		return describeGCS(err, ge, config)
	}
	switch {
	case strings.Contains(err.Error(), "NoCredentialProviders"):
		return describeS3(err, nil, config)
	case errors.Is(err, storage.ErrBucketNotExist):
		return &Error{Store: "gcs", Status: http.StatusNotFound, Err: err, kind: ErrNoBucket, msg: noGCSBucket("(gcs)", config)}
	case strings.Contains(err.Error(), "failed to acquire a token"):
		// azidentity's DefaultAzureCredential (credentials type
		// default_credentials) when no credential of its chain gave a
		// token: why each did not is on lines of its own, kept on one.
		return &Error{Store: "azure", Err: err, kind: ErrNoCredentials,
			msg: "no Azure credentials were found (credentials type default_credentials: " + oneLine(err.Error()) + "): set AZURE_CLIENT_ID, AZURE_TENANT_ID and AZURE_CLIENT_SECRET, run with a workload or managed identity, or give another credentials type in " + section(config, "azure")}
	case strings.Contains(err.Error(), "could not find default credentials"):
		// golang.org/x/oauth2/google, when the gcs driver is given neither
		// keyfile nor credentials and finds no default ones.
		return &Error{Store: "gcs", Err: err, kind: ErrNoCredentials,
			msg: "no Google credentials were found (no keyfile or credentials in " + section(config, "gcs") +
				", no GOOGLE_APPLICATION_CREDENTIALS, no gcloud application default credentials, no metadata server): " +
				"set keyfile in " + section(config, "gcs") + ", or GOOGLE_APPLICATION_CREDENTIALS to a service account's key file, or run with a workload identity"}
	}
	return err
}

// find returns the first T in err's chain, or in the Detail of a
// storagedriver.Error there (it has no Unwrap).
func find[T error](err error) (T, bool) {
	var t T
	if errors.As(err, &t) {
		return t, true
	}
	var de storagedriver.Error
	if errors.As(err, &de) && de.Detail != nil && errors.As(de.Detail, &t) {
		return t, true
	}
	return t, false
}

// section names a driver's section of config: "the storage: s3 section of
// registry.yml".
func section(config, driver string) string {
	if config == "" {
		config = "--target-config FILE"
	}
	return "the storage: " + driver + " section of " + config
}

// answer is the parenthesis naming the store's answer: "(s3 403
// SignatureDoesNotMatch, request id 18EE…)".
func answer(store string, status int, code, requestID string) string {
	s := store
	if status != 0 {
		s += fmt.Sprintf(" %d", status)
	}
	if code != "" {
		s += " " + code
	}
	if requestID != "" {
		s += ", request id " + requestID
	}
	return "(" + s + ")"
}

func describeS3(err error, ae awserr.Error, config string) error {
	code, status, id := "", 0, ""
	if ae != nil {
		code = ae.Code()
	}
	var rf awserr.RequestFailure
	if f, ok := find[awserr.RequestFailure](err); ok {
		rf = f
		status, id = rf.StatusCode(), rf.RequestID()
	}
	// Where the keys are: the section's accesskey and secretkey, else the
	// SDK's chain.
	keys := "accesskey and secretkey in " + section(config, "s3") + " (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY when it has none)"
	if config == "" {
		keys = "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or ~/.aws/credentials, the instance or pod role, or --target-config FILE with accesskey and secretkey)"
	}
	e := &Error{Store: "s3", Status: status, Code: code, Err: err}
	if ae != nil && error(ae) != err {
		e.sdk = ae
	}
	what := answer("s3", status, code, id)
	switch code {
	case "NoCredentialProviders", "":
		if code == "" && !strings.Contains(err.Error(), "NoCredentialProviders") {
			return err
		}
		e.Code, e.kind = "NoCredentialProviders", ErrNoCredentials
		if config == "" {
			e.msg = "no AWS credentials were found (none in the environment, in ~/.aws/credentials, nor from an instance or pod role): set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE with ~/.aws/credentials), run with an instance or pod role (IRSA), or give --target-config FILE with accesskey and secretkey in its storage: s3 section"
		} else {
			e.msg = "no AWS credentials were found (none in " + section(config, "s3") + ", in the environment, in ~/.aws/credentials, nor from an instance or pod role): set accesskey and secretkey in " + section(config, "s3") + ", or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE with ~/.aws/credentials), or run with an instance or pod role (IRSA)"
		}
	case "NoSuchBucket":
		e.kind = ErrNoBucket
		where := "bucket and regionendpoint in " + section(config, "s3")
		if config == "" {
			where = "the name and the endpoint"
		}
		e.msg = "the bucket does not exist " + what + ": create it, or check " + where
	case "SignatureDoesNotMatch":
		e.kind = ErrCredentialsRefused
		e.msg = "the store refused the credentials: the secret key does not match the access key " + what + ": check " + keys
	case "InvalidAccessKeyId":
		e.kind = ErrCredentialsRefused
		e.msg = "the store refused the credentials: it knows no such access key " + what + ": check " + keys + ", and that the endpoint is the store the key belongs to"
	case "ExpiredToken", "InvalidToken", "TokenRefreshRequired":
		e.kind = ErrCredentialsRefused
		e.msg = "the store refused the credentials: the session token is expired or not valid " + what + ": renew it (AWS_SESSION_TOKEN, the profile's or the role's session), or check " + keys
	case "AccessDenied", "AllAccessDisabled":
		e.kind = ErrCredentialsRefused
		e.msg = "the store refused access " + what + ": the credentials' user or role may not do this on the bucket (check its policy and the bucket's), or they are not the ones meant: check " + keys
	default:
		return err
	}
	return e
}

func describeAzure(err error, re *azcore.ResponseError, config string) error {
	id := ""
	if re.RawResponse != nil {
		id = re.RawResponse.Header.Get("x-ms-request-id")
	}
	e := &Error{Store: "azure", Status: re.StatusCode, Code: re.ErrorCode, Err: err}
	if error(re) != err {
		e.sdk = re
	}
	what := answer("azure", re.StatusCode, re.ErrorCode, id)
	sec := section(config, "azure")
	switch re.ErrorCode {
	case "AuthenticationFailed", "InvalidAuthenticationInfo":
		e.kind = ErrCredentialsRefused
		e.msg = "the store refused the credentials: the account key or token is wrong " + what + ": check accountname and accountkey in " + sec + " (credentials type shared_key), or the credentials type and its client or identity"
	case "AuthorizationFailure":
		// Azure: a request refused by the account's network rules or a SAS;
		// Azurite answers a wrong account key so.
		e.kind = ErrCredentialsRefused
		e.msg = "the store refused the request " + what + ": check accountname and accountkey in " + sec + " (credentials type shared_key), the credentials type, and the account's network rules (firewall, private endpoints)"
	case "AuthorizationPermissionMismatch", "AuthorizationResourceTypeMismatch", "InsufficientAccountPermissions", "AuthorizationServiceMismatch", "AuthorizationProtocolMismatch", "AuthorizationSourceIPMismatch":
		e.kind = ErrCredentialsRefused
		e.msg = "the store refused access " + what + ": the credentials may not do this on the container: give their identity the role Storage Blob Data Contributor on it (credentials type client_secret or default_credentials), or check the credentials type in " + sec
	case "KeyBasedAuthenticationNotPermitted":
		e.kind = ErrCredentialsRefused
		e.msg = "the storage account does not allow account keys " + what + ": use credentials type client_secret or default_credentials in " + sec + ", with the role Storage Blob Data Contributor on the container"
	case "ContainerNotFound":
		e.kind = ErrNoBucket
		e.msg = "the container does not exist " + what + ": create it (the azure driver does not), or check container, accountname and serviceurl in " + sec
	case "AccountIsDisabled":
		e.kind = ErrCredentialsRefused
		e.msg = "the storage account is disabled " + what + ": check accountname in " + sec + " and the account in the Azure portal"
	default:
		// Any other answer, on one line: azcore's Error() is the request,
		// the response and its body over a dozen lines.
		e.msg = fmt.Sprintf("azure answered %d %s", re.StatusCode, re.ErrorCode)
		if re.RawResponse != nil && re.RawResponse.Request != nil {
			u := re.RawResponse.Request.URL
			e.msg += " to " + re.RawResponse.Request.Method + " " + u.Scheme + "://" + u.Host + u.Path
		}
		if id != "" {
			e.msg += " (request id " + id + ")"
		}
	}
	return e
}

// describeEntra describes Microsoft Entra ID refusing a token to the
// credentials of type client_secret or default_credentials.
func describeEntra(err error, ae *azidentity.AuthenticationFailedError, config string) error {
	e := &Error{Store: "azure", Err: err, kind: ErrCredentialsRefused}
	if error(ae) != err {
		e.sdk = ae
	}
	if ae.RawResponse != nil {
		e.Status = ae.RawResponse.StatusCode
		// {"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided. …"}
		var body struct {
			Error       string `json:"error"`
			Description string `json:"error_description"`
		}
		if b, err := runtime.Payload(ae.RawResponse); err == nil && json.Unmarshal(b, &body) == nil {
			e.Code = body.Error
			if code, _, ok := strings.Cut(body.Description, ":"); ok && strings.HasPrefix(code, "AADSTS") {
				e.Code += " " + code
			}
		}
	}
	e.msg = "Microsoft Entra ID gave the credentials no token " + answer("azure", e.Status, e.Code, "") +
		": check clientid, tenantid and secret under credentials (type client_secret) in " + section(config, "azure") +
		", or the identity that default_credentials finds (AZURE_CLIENT_ID, AZURE_TENANT_ID, AZURE_CLIENT_SECRET, a workload or managed identity)"
	return e
}

// oneLine is a message of several lines on one, its lines joined by "; ".
func oneLine(msg string) string {
	var parts []string
	for _, l := range strings.Split(msg, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			parts = append(parts, l)
		}
	}
	return strings.Join(parts, "; ")
}

func describeGCS(err error, ge *googleapi.Error, config string) error {
	reason := ""
	if len(ge.Errors) > 0 {
		reason = ge.Errors[0].Reason
	}
	e := &Error{Store: "gcs", Status: ge.Code, Code: reason, Err: err}
	if error(ge) != err {
		e.sdk = ge
	}
	what := answer("gcs", ge.Code, reason, "")
	sec := section(config, "gcs")
	switch ge.Code {
	case http.StatusUnauthorized:
		e.kind = ErrCredentialsRefused
		e.msg = "the store refused the credentials " + what + ": check keyfile or credentials in " + sec + ", or GOOGLE_APPLICATION_CREDENTIALS when it has neither"
	case http.StatusForbidden:
		e.kind = ErrCredentialsRefused
		e.msg = "the store refused access " + what + ": the service account may not do this on the bucket: give it roles/storage.objectAdmin on it, or check keyfile or credentials in " + sec
	case http.StatusNotFound:
		e.kind = ErrNoBucket
		e.msg = noGCSBucket(what, config)
	default:
		return err
	}
	return e
}

func noGCSBucket(what, config string) string {
	return "the bucket does not exist " + what + ": create it, or check bucket in " + section(config, "gcs")
}
