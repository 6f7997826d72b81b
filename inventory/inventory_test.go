package inventory_test

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/regkeeper/regkeeper/internal/client"
	"github.com/regkeeper/regkeeper/internal/testbed/embedded"
	"github.com/regkeeper/regkeeper/internal/testbed/estate"
	"github.com/regkeeper/regkeeper/internal/testbed/regtest"
	"github.com/regkeeper/regkeeper/internal/walk"
	"github.com/regkeeper/regkeeper/inventory"
)

func run(t *testing.T, host string, opts inventory.Options) *inventory.Result {
	t.Helper()
	if opts.Client == (client.Options{}) {
		opts.Client = regtest.Client()
	}
	res, err := inventory.Run(context.Background(), host, opts)
	if err != nil {
		t.Fatalf("inventory.Run: %v", err)
	}
	return res
}

func tagDigests(res *inventory.Result) map[string]v1.Hash {
	got := map[string]v1.Hash{}
	for _, img := range res.Images {
		got[img.Repository+":"+img.Tag] = v1.Hash{Algorithm: "sha256", Hex: strings.TrimPrefix(img.Digest, "sha256:")}
	}
	return got
}

func find(t *testing.T, res *inventory.Result, repo, tag string) inventory.Image {
	t.Helper()
	for _, img := range res.Images {
		if img.Repository == repo && img.Tag == tag {
			return img
		}
	}
	t.Fatalf("%s:%s not in the inventory", repo, tag)
	return inventory.Image{}
}

// pullSize is what a pull of ref transfers, computed independently of the
// inventory with go-containerregistry: the manifest, then per platform
// manifest its config and layers, each distinct digest once.
func pullSize(t *testing.T, ref name.Reference) int64 {
	t.Helper()
	desc, err := remote.Get(ref)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[v1.Hash]bool{desc.Digest: true}
	size := desc.Size
	count := func(d v1.Descriptor) {
		if !seen[d.Digest] {
			seen[d.Digest] = true
			size += d.Size
		}
	}
	image := func(img v1.Image) {
		m, err := img.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		count(m.Config)
		for _, l := range m.Layers {
			count(l)
		}
	}
	if desc.MediaType.IsIndex() {
		idx, _ := desc.ImageIndex()
		im, _ := idx.IndexManifest()
		for _, c := range im.Manifests {
			count(c)
			img, err := idx.Image(c.Digest)
			if err != nil {
				t.Fatal(err)
			}
			image(img)
		}
		return size
	}
	img, err := desc.Image()
	if err != nil {
		t.Fatal(err)
	}
	image(img)
	return size
}

func TestInventoryEstate(t *testing.T) {
	srv, e := regtest.Seeded(t, embedded.Options{})
	res := run(t, srv.Host, inventory.Options{})

	if diff := cmp.Diff(e.Tags(), tagDigests(res)); diff != "" {
		t.Errorf("tags and digests (-want +got):\n%s", diff)
	}
	if res.Registry != srv.Host {
		t.Errorf("registry %q, want %q", res.Registry, srv.Host)
	}

	for _, img := range res.Images {
		if img.Repository == "mirror/alpine" {
			continue // index-only copy: its children are not in the repository
		}
		if want := pullSize(t, regtest.Ref(t, srv, img.Repository+":"+img.Tag)); img.Size != want {
			t.Errorf("%s:%s: size %d, want %d", img.Repository, img.Tag, img.Size, want)
		}
	}
}

func TestInventoryMultiArch(t *testing.T) {
	srv, e := regtest.Seeded(t, embedded.Options{})
	res := run(t, srv.Host, inventory.Options{Repo: regexp.MustCompile(`^(team-e/edge|base/alpine|mirror/alpine)$`)})

	for _, ref := range []string{"team-e/edge:1.0", "base/alpine:3.20"} {
		repo, tag, _ := strings.Cut(ref, ":")
		img := find(t, res, repo, tag)
		idx, ok := e.Find(repo, e.Tags()[ref])
		if !ok || idx.Role != estate.RoleIndex {
			t.Fatalf("%s is not an index in the estate", ref)
		}
		var want, got []string
		for _, c := range idx.Children {
			child, _ := e.Find(repo, c)
			want = append(want, child.Platform+" "+c.String())
		}
		for _, p := range img.Platforms {
			got = append(got, p.Platform+" "+p.Digest)
			if p.Size <= 0 || p.Config == nil || p.Manifest == nil {
				t.Errorf("%s %s: size %d, config %v, manifest %v", ref, p.Platform, p.Size, p.Config != nil, p.Manifest != nil)
			}
			if p.Created == "" {
				t.Errorf("%s %s: no created date", ref, p.Platform)
			}
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s platforms (-want +got):\n%s", ref, diff)
		}
		var sum int64
		for _, p := range img.Platforms {
			sum += p.Size
		}
		if img.Size > sum+1<<20 || img.Size <= 0 {
			t.Errorf("%s: size %d is not the distinct blobs of its platforms (sum of platforms %d)", ref, img.Size, sum)
		}
	}

	// The index-only copy names platforms its repository does not hold: the
	// tag is listed with its digest and platforms, each marked absent, and
	// the registry's problem is reported once; nothing failed to be read.
	mirror := find(t, res, "mirror/alpine", "3.20")
	if len(mirror.Platforms) != 2 || mirror.Digest != e.Tags()["mirror/alpine:3.20"].String() {
		t.Errorf("mirror/alpine:3.20: digest %s, %d platforms, want the index and 2", mirror.Digest, len(mirror.Platforms))
	}
	for _, p := range mirror.Platforms {
		if !p.Absent || p.Platform == "" || p.Digest == "" {
			t.Errorf("mirror/alpine:3.20 platform %+v: want it named and marked absent", p)
		}
	}
	if len(res.Errors) != 0 {
		t.Errorf("errors %+v, want none", res.Errors)
	}
	if len(res.Problems) != 1 || res.Problems[0].Kind != walk.KindChildrenAbsent || res.Problems[0].Repository != "mirror/alpine" ||
		res.Problems[0].Tag != "3.20" || res.Problems[0].Digest != mirror.Digest || !strings.Contains(res.Problems[0].Message, "2 of 2 platform manifests") {
		t.Errorf("problems %+v, want mirror/alpine:3.20's children absent", res.Problems)
	}
}

func TestInventoryDates(t *testing.T) {
	srv, _ := regtest.Seeded(t, embedded.Options{})
	res := run(t, srv.Host, inventory.Options{Repo: regexp.MustCompile(`^team-d/`)})
	// A reproducible build is reported as recorded, 1970 included.
	if got := find(t, res, "team-d/repro", "1.0").Created; got != "1970-01-01T00:00:00Z" {
		t.Errorf("team-d/repro:1.0 created %q, want 1970-01-01T00:00:00Z", got)
	}
	tool := find(t, res, "team-d/tool", "1.0")
	if tool.Created == "" || len(tool.Platforms) != 1 || tool.Platforms[0].Platform != "linux/amd64" {
		t.Errorf("team-d/tool:1.0: created %q platforms %+v", tool.Created, tool.Platforms)
	}
}

func TestInventoryFilters(t *testing.T) {
	srv, _ := regtest.Seeded(t, embedded.Options{})
	res := run(t, srv.Host, inventory.Options{
		Repo: regexp.MustCompile(`^team-a/`),
		Tag:  regexp.MustCompile(`^[0-9.]+$|^latest$`),
	})
	var got []string
	for _, img := range res.Images {
		got = append(got, img.Repository+":"+img.Tag)
	}
	if diff := cmp.Diff([]string{"team-a/api:1.0", "team-a/api:latest"}, got); diff != "" {
		t.Errorf("filtered images (-want +got):\n%s", diff)
	}
}

// A registry whose catalog page limit is 5 rejects go-containerregistry's
// (and crane's) page size of 1000; inventory asks again and follows every
// Link to the last page.
func TestInventoryPagination(t *testing.T) {
	srv, e := regtest.Seeded(t, embedded.Options{CatalogMaxEntries: 5})

	reg, _ := name.NewRegistry(srv.Host, name.Insecure)
	if _, err := remote.Catalog(context.Background(), reg); err == nil || !strings.Contains(err.Error(), "PAGINATION_NUMBER_INVALID") {
		t.Fatalf("remote.Catalog against a page limit of 5: err %v, want PAGINATION_NUMBER_INVALID (the peer failure this test guards against)", err)
	}

	res := run(t, srv.Host, inventory.Options{})
	if diff := cmp.Diff(e.Tags(), tagDigests(res)); diff != "" {
		t.Errorf("tags and digests with a page limit of 5 (-want +got):\n%s", diff)
	}
	repos := map[string]bool{}
	for _, img := range res.Images {
		repos[img.Repository] = true
	}
	if len(repos) != len(e.Repositories()) {
		t.Errorf("%d repositories, want %d", len(repos), len(e.Repositories()))
	}
}

// A manifest corrupted on disk is one problem (distribution answers it with
// a 500 that says it does not parse); every other tag is inventoried.
func TestInventoryCorruptManifest(t *testing.T) {
	srv, e := regtest.Seeded(t, embedded.Options{})
	dg := e.Tags()["team-c/worker:2.3"]
	data := filepath.Join(srv.Root, "docker/registry/v2/blobs/sha256", dg.Hex[:2], dg.Hex, "data")
	if err := os.WriteFile(data, []byte("{not a manifest"), 0o644); err != nil {
		t.Fatal(err)
	}
	res := run(t, srv.Host, inventory.Options{}) // default retries: the 500 is tried twice, not five times

	want := e.Tags()
	delete(want, "team-c/worker:2.3")
	if diff := cmp.Diff(want, tagDigests(res)); diff != "" {
		t.Errorf("the other tags (-want +got):\n%s", diff)
	}
	var hit bool
	for _, p := range res.Problems {
		if p.Repository == "team-c/worker" && p.Tag == "2.3" && p.Kind == walk.KindManifestCorrupt {
			hit = true
		}
	}
	if !hit || len(res.Errors) != 0 {
		t.Errorf("problems %+v, errors %+v; want the corrupt team-c/worker:2.3 among the problems", res.Problems, res.Errors)
	}
}

func TestInventoryCredentials(t *testing.T) {
	srv := regtest.Registry(t, embedded.Options{Username: "ops", Password: "s3cret"})
	auth := authn.FromConfig(authn.AuthConfig{Username: "ops", Password: "s3cret"})
	if _, err := estate.Seed(context.Background(), srv.Host, estate.Options{Insecure: true, Auth: auth}); err != nil {
		t.Fatal(err)
	}
	keychain := func(user, pass string) authn.Keychain {
		return staticKeychain{authn.FromConfig(authn.AuthConfig{Username: user, Password: pass})}
	}

	good := run(t, srv.Host, inventory.Options{Client: client.Options{Insecure: true, Keychain: keychain("ops", "s3cret")}})
	if len(good.Images) == 0 || len(good.Errors) != 0 || len(good.Problems) != 1 { // mirror/alpine's missing children
		t.Errorf("with good credentials: %d images, errors %+v, problems %+v", len(good.Images), good.Errors, good.Problems)
	}

	_, err := inventory.Run(context.Background(), srv.Host, inventory.Options{Client: client.Options{Insecure: true, Keychain: keychain("ops", "wrong")}})
	if err == nil || !client.Unauthorized(err) || !strings.Contains(err.Error(), "authentication failed") {
		t.Errorf("bad credentials: err %v, want an authentication failure", err)
	}
}

func TestInventoryUnreachable(t *testing.T) {
	_, err := inventory.Run(context.Background(), "127.0.0.1:1", inventory.Options{Client: client.Options{Insecure: true, MaxRetries: -1}})
	if err == nil || !strings.Contains(err.Error(), "unreachable") {
		t.Errorf("err %v, want registry unreachable", err)
	}
}

type staticKeychain struct{ a authn.Authenticator }

func (k staticKeychain) Resolve(authn.Resource) (authn.Authenticator, error) { return k.a, nil }
