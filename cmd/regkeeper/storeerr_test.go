package main

import (
	"github.com/regkeeper/regkeeper/internal/testbed/tools"
	"strings"
	"testing"

	"github.com/regkeeper/regkeeper/internal/testbed/azurite"
	"github.com/regkeeper/regkeeper/internal/testbed/minio"
)

// An operator's wrong storage keys, in the registry's config (gc) or a
// --target-config file (verify): exit 1, and one line on stderr saying
// what is wrong and what to check.
func TestRefusedStorageKeys(t *testing.T) {
	m := minio.ForTest(t, "registry")
	a := azurite.ForTest(t, "registry")
	s3Wrong := tools.StorageConfig(t, strings.Replace(m.StorageYAML("registry"), "secretkey: "+minio.SecretKey, "secretkey: not-the-secret", 1))
	azWrong := tools.StorageConfig(t, strings.Replace(a.StorageYAML("registry", "/registry"), azurite.AccountKey, strings.Repeat("d3Jvbmcta2V5", 7)+"d3Jvbmcta2V5LS0tLQ==", 1))
	for _, tc := range []struct {
		argv []string
		want string // the start of the line
		then string // and further on
	}{
		{[]string{"gc", "--config", s3Wrong, "--dry-run"},
			"regkeeper gc: reading /docker/registry/v2: the store refused the credentials: the secret key does not match the access key (s3 403 SignatureDoesNotMatch, request id ",
			"check accesskey and secretkey in the storage: s3 section of the registry's config"},
		{[]string{"gc", "--config", azWrong, "--dry-run"},
			"regkeeper gc: reading /docker/registry/v2: the store refused the request (azure 403 AuthorizationFailure, request id ",
			"check accountname and accountkey in the storage: azure section of the registry's config"},
		{[]string{"verify", "--target-config", azWrong},
			"regkeeper verify: ",
			"(azure 403 AuthorizationFailure, request id "},
		{[]string{"verify", "--target-config", azWrong},
			"regkeeper verify: ",
			"check accountname and accountkey in the storage: azure section of " + azWrong},
	} {
		code, _, stderr := runCLI(t, tc.argv...)
		if code != exitError || !strings.HasPrefix(stderr, tc.want) || !strings.Contains(stderr, tc.then) || strings.Count(stderr, "\n") != 1 {
			t.Errorf("%s: exit %d, want %d and one line starting %q with %q:\n%s", strings.Join(tc.argv, " "), code, exitError, tc.want, tc.then, stderr)
		}
	}
}
