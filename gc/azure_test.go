package gc

import (
	"context"
	"fmt"
	"github.com/regkeeper/regkeeper/internal/testbed/tools"
	"os"
	"path"
	"sort"
	"strings"
	"testing"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/google/go-cmp/cmp"
	"github.com/opencontainers/go-digest"

	"github.com/regkeeper/regkeeper/internal/testbed/azurite"
	"github.com/regkeeper/regkeeper/internal/testbed/embedded"
	"github.com/regkeeper/regkeeper/internal/testbed/regtest"
)

// azureRoot is the rootdirectory of the registries the Azure tests run:
// not the container's top, so that gc's names are checked to carry it.
const azureRoot = "/registry"

// azureName is the blob name of a driver path under azureRoot.
func azureName(p string) string { return strings.TrimPrefix(azureRoot, "/") + p }

// TestGCEstateAzure is TestGCEstate on distribution's azure driver against
// Azurite, online and offline: the registry and gc open the same
// config.yml, and the outcome is checked through the blob API.
func TestGCEstateAzure(t *testing.T) {
	a := azurite.ForTest(t, "setup")
	for _, offline := range []bool{false, true} {
		container := "online"
		if offline {
			container = "offline"
		}
		t.Run(container, func(t *testing.T) {
			if err := a.CreateContainer(context.Background(), container); err != nil {
				t.Fatal(err)
			}
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
			// Deletes go in batches, the quarantine by copies, through the
			// driver's own client.
			if _, ok := newRemover(d, noGrace()).(*azureRemover); !ok {
				t.Fatal("no batch remover for the azure driver")
			}
			if _, ok := newStoreMover(d, noGrace()).(*azureMover); !ok {
				t.Fatal("no store mover for the azure driver")
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

// TestGCStormAzure is TestGCStorm on the azure driver against Azurite.
func TestGCStormAzure(t *testing.T) {
	const container = "registry"
	a := azurite.ForTest(t, container)
	srv := regtest.Registry(t, embedded.Options{Storage: a.StorageYAML(container, azureRoot)})
	e := pushStormEstate(t, srv.Host, 3, 3, 3)
	d, err := Open(context.Background(), srv.ConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	storm(t, srv.Host, d, e, 4, aged(), 100*time.Millisecond)
}

// TestGCPushInEachWindowAzure is TestGCPushInEachWindow on the azure
// driver against Azurite, a container per window.
func TestGCPushInEachWindowAzure(t *testing.T) {
	a := azurite.ForTest(t, "setup")
	windows(t, func(t *testing.T, step string) embedded.Options {
		if err := a.CreateContainer(context.Background(), step); err != nil {
			t.Fatal(err)
		}
		return embedded.Options{Storage: a.StorageYAML(step, azureRoot)}
	})
}

// openAzure opens the azure driver on container of a through a registry
// config, as gc does, with the layout at azureRoot.
func openAzure(t *testing.T, a *azurite.Server, container string) storagedriver.StorageDriver {
	t.Helper()
	d, err := Open(context.Background(), tools.StorageConfig(t, a.StorageYAML(container, azureRoot)))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// gc's Walk and List on Azure (one flat listing, one delimited listing)
// give what the driver's own give (distribution's WalkFallback: a List
// per directory and a Stat per entry): the same entries, sizes and
// modification times, the same not-found errors; ErrSkipDir skips a
// directory, and nothing on a file. The batch remover deletes exact
// names, 256 a request, and takes names already gone.
func TestAzureWalkListRemove(t *testing.T) {
	const container = "walk"
	a := azurite.ForTest(t, container)
	d := openAzure(t, a, container)
	w, ok := d.(*azureDriver)
	if !ok {
		t.Fatalf("Open gave %T, want gc's azureDriver", d)
	}
	ctx := context.Background()
	files := []string{
		"/docker/registry/v2/blobs/sha256/ab/abcd/data",
		"/docker/registry/v2/blobs/sha256/ab/abce/data",
		"/docker/registry/v2/blobs/sha256/ac/ac00/data",
		"/docker/registry/v2/repositories/a/_layers/sha256/ab/link",
		"/docker/registry/v2/repositories/a-b/_manifests/tags/v1/current/link",
		"/docker/registry/v2/repositories/a.b/_uploads/u/startedat",
		"/docker/registry/v2/repositories/a/b/_manifests/revisions/sha256/cd/link",
		"/docker/registry/v2/repositories/a0/_layers/sha256/ef/link",
		"/docker/top",
	}
	for i, f := range files {
		if err := w.PutContent(ctx, f, []byte(strings.Repeat("x", i+1))); err != nil {
			t.Fatal(err)
		}
	}
	type entry struct {
		Path  string
		Dir   bool
		Size  int64
		Mod   time.Time
		Error string
	}
	walk := func(walkFn func(context.Context, string, storagedriver.WalkFn, ...func(*storagedriver.WalkOptions)) error, from string, skip string) []entry {
		var out []entry
		err := walkFn(ctx, from, func(fi storagedriver.FileInfo) error {
			e := entry{Path: fi.Path(), Dir: fi.IsDir()}
			if !fi.IsDir() {
				e.Size, e.Mod = fi.Size(), fi.ModTime()
			}
			out = append(out, e)
			if fi.Path() == skip {
				return storagedriver.ErrSkipDir
			}
			return nil
		})
		if err != nil {
			out = append(out, entry{Error: fmt.Sprintf("%T", err)})
		}
		sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
		return out
	}
	for _, tc := range []struct{ from, skip string }{
		{"/", ""},
		{"/docker/registry/v2", ""},
		{"/docker/registry/v2/repositories", "/docker/registry/v2/repositories/a"},
		{"/docker/registry/v2/repositories/a", "/docker/registry/v2/repositories/a/b"},
		{"/docker/registry/v2/blobs/sha256/ab", ""},
		{"/docker/registry/v2/blobs", "/docker/registry/v2/blobs/sha256/ab/abcd/data"},
		{"/docker/registry/v2/nothing", ""},
	} {
		want := walk(w.StorageDriver.Walk, tc.from, tc.skip)
		got := walk(w.Walk, tc.from, tc.skip)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Walk(%s) skipping %q (-driver +gc):\n%s", tc.from, tc.skip, diff)
		}
		if len(got) == 0 {
			t.Errorf("Walk(%s) found nothing", tc.from)
		}
	}
	for _, dir := range []string{"/", "/docker", "/docker/registry/v2/repositories", "/docker/registry/v2/repositories/a", "/docker/top", "/nothing"} {
		want, werr := w.StorageDriver.List(ctx, dir)
		got, gerr := w.List(ctx, dir)
		sort.Strings(want)
		sort.Strings(got)
		if diff := cmp.Diff(want, got); diff != "" || fmt.Sprintf("%T", werr) != fmt.Sprintf("%T", gerr) {
			t.Errorf("List(%s) (-driver +gc):\n%s errors %v / %v", dir, diff, werr, gerr)
		}
	}

	// 600 blobs and two missing names: three batches.
	var many []string
	for i := range 600 {
		many = append(many, fmt.Sprintf("/docker/registry/v2/many/%03d", i))
	}
	if err := forEach(ctx, 8, len(many), func(i int) error { return w.PutContent(ctx, many[i], []byte("x")) }); err != nil {
		t.Fatal(err)
	}
	many = append(many, "/docker/registry/v2/many/gone", files[0])
	rm := newRemover(d, noGrace())
	if _, ok := rm.(*azureRemover); !ok {
		t.Fatalf("remover on azure is %T, want *azureRemover", rm)
	}
	if err := rm.remove(ctx, many); err != nil {
		t.Fatal(err)
	}
	if err := rm.remove(ctx, many[:3]); err != nil {
		t.Errorf("removing blobs already gone: %v", err)
	}
	left, err := a.Blobs(ctx, container, azureName("/docker/registry/v2/many/"))
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 0 {
		t.Errorf("%d blobs left after the batches", len(left))
	}
	if _, err := w.Stat(ctx, files[0]); !isNotFound(err) {
		t.Errorf("Stat(%s) after removal: %v", files[0], err)
	}
}

// TestGCQuarantineCrashThenRerunAzure is TestGCQuarantineCrashThenRerun on
// the azure driver against Azurite: the crash comes in the middle of the
// store mover's copies, whose sources are deleted as a crash would leave
// them, and the next run restores what the push needs and purges the rest.
func TestGCQuarantineCrashThenRerunAzure(t *testing.T) {
	a := azurite.ForTest(t, "setup")
	for _, legacy := range []bool{false, true} {
		container := "current"
		if legacy {
			container = "earlier"
		}
		t.Run(container+" layout", func(t *testing.T) {
			if err := a.CreateContainer(context.Background(), container); err != nil {
				t.Fatal(err)
			}
			testQuarantineCrashThenRerun(t, embedded.Options{Storage: a.StorageYAML(container, azureRoot)}, legacy)
		})
	}
}
