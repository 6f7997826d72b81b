// Package regtest starts the embedded registry for tests, optionally seeded
// with the sample estate. Everything is real: distribution's handlers.NewApp
// on 127.0.0.1, filesystem storage in t.TempDir().
package regtest

import (
	"context"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/regkeeper/regkeeper/internal/client"
	"github.com/regkeeper/regkeeper/internal/testbed/embedded"
	"github.com/regkeeper/regkeeper/internal/testbed/estate"
	"github.com/regkeeper/regkeeper/internal/testbed/pull"
)

// Registry starts an empty embedded registry that stops with the test.
func Registry(t testing.TB, opts embedded.Options) *embedded.Server {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	srv, err := embedded.Start(context.Background(), opts)
	if err != nil {
		t.Fatalf("starting embedded registry: %v", err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

// Seeded starts a registry and seeds the sample estate into it.
func Seeded(t testing.TB, opts embedded.Options) (*embedded.Server, *estate.Estate) {
	t.Helper()
	srv := Registry(t, opts)
	e, err := estate.Seed(context.Background(), srv.Host, estate.Options{Insecure: true})
	if err != nil {
		t.Fatalf("seeding estate: %v", err)
	}
	return srv, e
}

// Client returns client options for an embedded registry (plain HTTP).
func Client() client.Options { return client.Options{Insecure: true} }

// Ref parses "repo:tag" or "repo@digest" on the embedded registry.
func Ref(t testing.TB, srv *embedded.Server, s string) name.Reference {
	t.Helper()
	ref, err := name.ParseReference(srv.Host+"/"+s, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

// PullAll pulls every tag of e from the registry at host, fully (manifests,
// children, configs and every layer byte, verified against its digest), and
// fails the test for each tag that does not come back with its digest. An
// index child absent from its repository fails the pull unless the estate
// left it out by design (Estate.AbsentChildren).
func PullAll(t testing.TB, host string, e *estate.Estate) {
	t.Helper()
	ctx := context.Background()
	for ref, want := range e.Tags() {
		r, err := name.ParseReference(host+"/"+ref, name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		if err := pull.Pull(ctx, r, pull.Absent(e.AbsentChildren(r.Context().RepositoryStr(), want)...)); err != nil {
			t.Errorf("pulling %s: %v", ref, err)
			continue
		}
		desc, err := remote.Head(r, remote.WithContext(ctx))
		if err != nil {
			t.Errorf("head %s: %v", ref, err)
			continue
		}
		if desc.Digest != want {
			t.Errorf("%s: digest %s, want %s", ref, desc.Digest, want)
		}
	}
}

// Pull fetches ref completely (see pull.Pull).
func Pull(ctx context.Context, ref name.Reference) error { return pull.Pull(ctx, ref) }
