package demo

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/regkeeper/regkeeper/internal/testbed/embedded"
	"github.com/regkeeper/regkeeper/retain"
)

// CIRepository is the demo's repository of CI builds and releases, beside
// the sample estate (which the tests count, so it stays as it is).
const CIRepository = "ci/app"

// Policy is the demo's retention policy: it covers only ci/**.
const Policy = `# the demo's retention policy (regkeeper retain --policy)
policies:
  - repositories: ["ci/**"]
    keep:
      - tags: ['^latest$']
      - mostRecentlyPushed: 2
        tags: ['^main-', '^feat-']
        groupBy: '^(.+)-[0-9]+$'
      - pushedWithin: 7d
      - semver: {majors: 1, minorsPerMajor: 2, patchesPerMinor: 1}
`

// ciTags are the tags of ci/app and how many days ago each was pushed;
// latest is main-6.
var ciTags = []struct {
	tag  string
	days int
}{
	{"main-1", 60}, {"main-2", 50}, {"main-3", 40}, {"main-4", 30}, {"main-5", 20}, {"main-6", 1},
	{"feat-x-1", 45}, {"feat-x-2", 35}, {"feat-x-3", 25},
	{"1.0.0", 300}, {"1.1.0", 200}, {"1.1.1", 150}, {"2.0.0", 100}, {"2.1.0", 50}, {"2.1.1", 40},
	{"2.1.0-rc.1", 60}, {"2.2.0-rc.1", 5},
}

// seedCI pushes ci/app (one small image per tag, deterministic) and dates
// each push by its current link's modification time, relative to now, as
// retention reads it from storage; it writes the policy to Dir/retain.yml.
func seedCI(ctx context.Context, srv *embedded.Server, dir string, now time.Time) error {
	var main6 v1.Image
	for _, t := range ciTags {
		img, err := ciImage(t.tag)
		if err != nil {
			return err
		}
		if t.tag == "main-6" {
			main6 = img
		}
		if err := pushCI(ctx, srv, t.tag, img); err != nil {
			return err
		}
	}
	if err := pushCI(ctx, srv, "latest", main6); err != nil {
		return err
	}
	for _, t := range append(ciTags, struct {
		tag  string
		days int
	}{"latest", 1}) {
		at := now.Add(-time.Duration(t.days) * 24 * time.Hour)
		link := filepath.Join(srv.Root, "docker/registry/v2/repositories", CIRepository, "_manifests/tags", t.tag, "current/link")
		if err := os.Chtimes(link, at, at); err != nil {
			return fmt.Errorf("dating %s:%s: %w", CIRepository, t.tag, err)
		}
	}
	return os.WriteFile(filepath.Join(dir, "retain.yml"), []byte(Policy), 0o644)
}

func ciImage(tag string) (v1.Image, error) {
	l := static.NewLayer([]byte("regkeeper demo "+CIRepository+":"+tag+"\n"), types.OCILayer)
	img, err := mutate.AppendLayers(mutate.MediaType(mutate.ConfigMediaType(empty.Image, types.OCIConfigJSON), types.OCIManifestSchema1), l)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS = "amd64", "linux"
	cf.Created = v1.Time{Time: time.Unix(0, 0).UTC()} // a reproducible build: the push time comes from storage
	return mutate.ConfigFile(img, cf)
}

func pushCI(ctx context.Context, srv *embedded.Server, tag string, img v1.Image) error {
	ref, err := name.ParseReference(srv.Host+"/"+CIRepository+":"+tag, name.Insecure)
	if err != nil {
		return err
	}
	if err := remote.Write(ref, img, remote.WithContext(ctx)); err != nil {
		return fmt.Errorf("pushing %s:%s: %w", CIRepository, tag, err)
	}
	return nil
}

// retainOptions is the retain step of the demo's cycle.
func retainOptions() (*retain.Options, error) {
	pol, err := retain.Parse([]byte(Policy))
	if err != nil {
		return nil, err
	}
	return &retain.Options{Policy: pol}, nil
}
