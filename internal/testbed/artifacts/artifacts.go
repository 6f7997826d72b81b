// Package artifacts pushes, for tests, what a registry holds besides the
// images docker builds: images with no os in their config (as `crane
// append` without a base makes them), cosign signatures and SBOMs, Helm
// charts and ORAS artifacts.
package artifacts

import (
	"context"
	"fmt"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/regkeeper/regkeeper/internal/testbed/embedded"
	"github.com/regkeeper/regkeeper/internal/testbed/regtest"
)

// OSless builds an image as `crane append` without a base does: layers on
// empty.Image (or on base), whose config has no os and no architecture,
// created at the given time.
func OSless(t testing.TB, base v1.Image, created time.Time, contents ...string) v1.Image {
	t.Helper()
	if base == nil {
		base = empty.Image
	}
	img := base
	for _, c := range contents {
		var err error
		if img, err = mutate.AppendLayers(img, static.NewLayer([]byte(c), types.DockerLayer)); err != nil {
			t.Fatal(err)
		}
	}
	img, err := mutate.CreatedAt(img, v1.Time{Time: created})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// Artifact is a one-layer OCI manifest of the given config and layer media
// types, as cosign, helm and oras push them (an empty configType keeps the
// image config type, as cosign does).
func Artifact(t testing.TB, configType, layerType types.MediaType, body string) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image, static.NewLayer([]byte(body), layerType))
	if err != nil {
		t.Fatal(err)
	}
	img = mutate.MediaType(img, types.OCIManifestSchema1)
	if configType != "" {
		img = mutate.ConfigMediaType(img, configType)
	}
	return img
}

// Push pushes img as ref ("repo:tag") to srv and returns its digest.
func Push(t testing.TB, srv *embedded.Server, ref string, img v1.Image) v1.Hash {
	t.Helper()
	if err := remote.Write(regtest.Ref(t, srv, ref), img, remote.WithContext(context.Background())); err != nil {
		t.Fatalf("pushing %s: %v", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// SeedOSless is issue 24's registry of 8 tags: three images with no os in
// their config (base/centos:7 900 days old, team/app:1.0 built on it,
// team/tool:1.0 from scratch), two cosign signatures, a cosign SBOM, a
// Helm chart and an ORAS artifact.
func SeedOSless(t testing.TB, now time.Time) *embedded.Server {
	t.Helper()
	srv := regtest.Registry(t, embedded.Options{})
	centos := OSless(t, nil, now.AddDate(0, 0, -900), "centos rootfs")
	Push(t, srv, "base/centos:7", centos)
	app := Push(t, srv, "team/app:1.0", OSless(t, centos, now.AddDate(0, 0, -3), "app binary"))
	tool := Push(t, srv, "team/tool:1.0", OSless(t, nil, now.AddDate(0, 0, -3), "tool binary"))
	sig := func(d v1.Hash) string { return fmt.Sprintf("%s-%s", d.Algorithm, d.Hex) }
	const simpleSigning = "application/vnd.dev.cosign.simplesigning.v1+json"
	Push(t, srv, "team/app:"+sig(app)+".sig", Artifact(t, "", simpleSigning, `{"critical":{}}`))
	Push(t, srv, "team/tool:"+sig(tool)+".sig", Artifact(t, "", simpleSigning, `{"critical":{"x":1}}`))
	Push(t, srv, "team/app:"+sig(app)+".sbom", Artifact(t, "", "text/spdx+json", `{"spdxVersion":"SPDX-2.3"}`))
	Push(t, srv, "charts/web:0.1.0", Artifact(t, "application/vnd.cncf.helm.config.v1+json", "application/vnd.cncf.helm.chart.content.v1.tar+gzip", "chart"))
	Push(t, srv, "files/notes:1", Artifact(t, "application/vnd.unknown.config.v1+json", types.OCILayer, "notes"))
	return srv
}

// Annotated returns img with the OCI base annotations naming base (a full
// reference, host included) and baseDigest (omitted when empty).
func Annotated(img v1.Image, base, baseDigest string) v1.Image {
	ann := map[string]string{"org.opencontainers.image.base.name": base}
	if baseDigest != "" {
		ann["org.opencontainers.image.base.digest"] = baseDigest
	}
	return mutate.Annotations(img, ann).(v1.Image)
}

// PushIndex pushes an index of img for linux/amd64 as ref ("repo:tag") to
// srv and returns the index's digest.
func PushIndex(t testing.TB, srv *embedded.Server, ref string, img v1.Image) v1.Hash {
	t.Helper()
	idx := mutate.AppendManifests(empty.Index, mutate.IndexAddendum{Add: img,
		Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}})
	if err := remote.WriteIndex(regtest.Ref(t, srv, ref), idx, remote.WithContext(context.Background())); err != nil {
		t.Fatalf("pushing %s: %v", ref, err)
	}
	d, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}
