package client_test

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/regkeeper/regkeeper/internal/client"
	"github.com/regkeeper/regkeeper/internal/testbed/embedded"
	"github.com/regkeeper/regkeeper/internal/testbed/regtest"
)

type staticKeychain struct{ a authn.Authenticator }

func (k staticKeychain) Resolve(authn.Resource) (authn.Authenticator, error) { return k.a, nil }

// TestDescribeAuthFailures is issue 24's "a wrong password reads like
// missing credentials": against a registry behind htpasswd, a request with
// no credentials and one with a wrong password are told apart, named with
// the user and the host, with no Go map dump of the registry's details.
func TestDescribeAuthFailures(t *testing.T) {
	srv := regtest.Registry(t, embedded.Options{Username: "ops", Password: "s3cret"})
	for _, tc := range []struct {
		name string
		kc   authn.Keychain
		want string
	}{
		{"no credentials", staticKeychain{authn.Anonymous},
			"no credentials for " + srv.Host + " (docker login " + srv.Host + ", or a credential helper in the Docker config)"},
		{"wrong password", staticKeychain{authn.FromConfig(authn.AuthConfig{Username: "ops", Password: "wrong"})},
			"authentication failed for ops at " + srv.Host + ": wrong user name or password"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			opts := client.Options{Insecure: true, Keychain: tc.kc, MaxRetries: -1}
			reg, err := opts.Registry(srv.Host)
			if err != nil {
				t.Fatal(err)
			}
			_, err = remote.Catalog(ctx, reg, opts.Remote(ctx)...)
			if err == nil {
				t.Fatal("catalog: no error")
			}
			got := client.Describe(err)
			if !strings.HasPrefix(got, tc.want) || strings.Contains(got, "map[") || !client.Unauthorized(err) {
				t.Errorf("Describe = %q\nwant it to start with %q, without a map dump", got, tc.want)
			}
		})
	}
}
