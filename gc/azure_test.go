package gc

import (
	"context"
	"errors"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regkeeper/regkeeper/internal/testbed/azurite"
	"github.com/regkeeper/regkeeper/internal/testbed/embedded"
	"github.com/regkeeper/regkeeper/internal/testbed/regtest"
)

// azureRoot is the rootdirectory of the registries the Azure tests run:
// not the container's top, so that gc's names are checked to carry it.
const azureRoot = "/registry"

// startAzurite starts Azurite's blob service for one test with a fresh
// container, or skips the test when Azurite is not installed
// (scripts/setup-azurite).
func startAzurite(t *testing.T, container string) *azurite.Server {
	t.Helper()
	bin, err := azurite.Find()
	if errors.Is(err, azurite.ErrNotInstalled) {
		t.Skipf("skipping the Azure test: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	a, err := azurite.Start(ctx, bin, filepath.Join(t.TempDir(), "data"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	if err := a.CreateContainer(ctx, container); err != nil {
		t.Fatal(err)
	}
	return a
}

// azureName is the blob name of a driver path under azureRoot.
func azureName(p string) string { return strings.TrimPrefix(azureRoot, "/") + p }

// TestGCEstateAzure is TestGCEstate on distribution's azure driver against
// Azurite, online and offline: the registry and gc open the same
// config.yml, and the outcome is checked through the blob API.
func TestGCEstateAzure(t *testing.T) {
	for _, offline := range []bool{false, true} {
		name := "online"
		if offline {
			name = "offline"
		}
		t.Run(name, func(t *testing.T) {
			const container = "registry"
			a := startAzurite(t, container)
			srv, e := regtest.Seeded(t, embedded.Options{Storage: a.StorageYAML(container, azureRoot)})
			if typ := srv.Config.Storage.Type(); typ != "azure" {
				t.Fatalf("registry storage is %q, want azure", typ)
			}
			if ents, _ := os.ReadDir(srv.Root); len(ents) > 0 {
				t.Fatalf("the registry wrote to the filesystem root %s", srv.Root)
			}
			d, err := Open(context.Background(), srv.ConfigFile)
			if err != nil {
				t.Fatal(err)
			}
			if d.Name() != "azure" {
				t.Fatalf("gc opened the %s driver, want azure", d.Name())
			}
			ctx := context.Background()
			// A path exists as a blob or as a prefix of one (a directory).
			exists := func(p string) bool {
				objs, err := a.Blobs(ctx, container, azureName(p))
				if err != nil {
					t.Fatal(err)
				}
				for k := range objs {
					if k == azureName(p) || strings.HasPrefix(k, azureName(p)+"/") {
						return true
					}
				}
				return false
			}
			blobSizes := func() map[digest.Digest]int64 {
				objs, err := a.Blobs(ctx, container, azureName(pathFor(blobsSpec{digest.SHA256}))+"/")
				if err != nil {
					t.Fatal(err)
				}
				out := map[digest.Digest]int64{}
				for k, size := range objs {
					if path.Base(k) == "data" {
						out[digest.NewDigestFromEncoded(digest.SHA256, path.Base(path.Dir(k)))] = size
					}
				}
				return out
			}
			if len(blobSizes()) == 0 {
				t.Fatal("no blobs in the container after seeding")
			}
			opts := noGrace()
			opts.Offline = offline
			checkGCEstateWith(t, opts, srv.Host, e, d, exists, blobSizes)
			if !offline {
				if n, err := a.Blobs(ctx, container, azureName(pathFor(quarantineSpec{}))); err != nil || len(n) > 0 {
					t.Errorf("quarantine left behind: %v %v", n, err)
				}
			}
		})
	}
}
