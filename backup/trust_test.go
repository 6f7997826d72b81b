package backup

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/regkeeper/regkeeper/internal/testbed/embedded"
	"github.com/regkeeper/regkeeper/internal/testbed/regtest"
)

// Restore with credentials the registry refuses fails once, not once per
// repository.
func TestRestoreBadCredentialsOneError(t *testing.T) {
	src := regtest.Registry(t, embedded.Options{})
	for _, ref := range []string{"a/one:1", "b/two:1", "c/three:1"} {
		pushRandom(t, src, ref, 256, 1)
	}
	dir := t.TempDir()
	backup(t, src.Host, dir, testOptions())
	dst := regtest.Registry(t, embedded.Options{Username: "ops", Password: "s3cret"})
	opts := RestoreOptions{Client: regtest.Client()}
	opts.Client.Keychain = staticKeys{authn.FromConfig(authn.AuthConfig{Username: "ops", Password: "wrong"})}
	res, err := Restore(context.Background(), dir, dst.Host, opts)
	if err == nil || !strings.Contains(err.Error(), "authentication failed") {
		t.Errorf("restore with bad credentials: %v", err)
	}
	if res == nil || len(res.Errors) != 0 {
		t.Errorf("restore with bad credentials: one error returned, none per repository; got %+v", res)
	}
}

// Restored with --map into the registry it came from, every blob is
// mounted from the repository it came from: none is uploaded.
func TestRestoreMapMountsFromSource(t *testing.T) {
	srv := regtest.Registry(t, embedded.Options{})
	pushRandom(t, srv, "team-a/api:1", 2048, 2)
	pushRandom(t, srv, "team-a/web:1", 2048, 1)
	dir := t.TempDir()
	backup(t, srv.Host, dir, testOptions())
	m, err := ParseMapping("team-a=archive/team-a")
	if err != nil {
		t.Fatal(err)
	}
	res, err := Restore(context.Background(), dir, srv.Host, RestoreOptions{Client: regtest.Client(), Map: []Mapping{m}})
	if err != nil || len(res.Errors) > 0 {
		t.Fatalf("restore: %v %+v", err, res)
	}
	if res.BlobsPushed != 0 || res.BytesPushed != 0 || res.BlobsMounted != 5 { // 2 configs, 3 layers
		t.Errorf("restore --map into the same registry: pushed %d blobs (%d bytes), mounted %d; want 0 pushed, 5 mounted",
			res.BlobsPushed, res.BytesPushed, res.BlobsMounted)
	}
	for _, ref := range []string{"archive/team-a/api:1", "archive/team-a/web:1"} {
		if err := regtest.Pull(context.Background(), regtest.Ref(t, srv, ref)); err != nil {
			t.Errorf("pulling %s: %v", ref, err)
		}
	}
	if _, err := remote.Head(regtest.Ref(t, srv, "team-a/api:1")); err != nil {
		t.Errorf("source: %v", err)
	}
}
