package audit

import (
	"bytes"
	"context"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/regkeeper/regkeeper/internal/walk"
	"github.com/regkeeper/regkeeper/inventory"
)

// registryFetcher reads bases by digest through the registry walker.
type registryFetcher struct {
	w *walk.Walker
}

func newFetcher(ctx context.Context, host string, o inventory.Options) (*registryFetcher, error) {
	w, err := walk.New(ctx, host, walk.Options{Client: o.Client, Logger: o.Logger})
	if err != nil {
		return nil, err
	}
	return &registryFetcher{w: w}, nil
}

// Platform reads the manifest digest in repo; an index resolves to its
// child for want (or its only child).
func (f *registryFetcher) Platform(ctx context.Context, repo, digest string, want *v1.Platform) (*inventory.Platform, error) {
	desc, err := f.w.Manifest(ctx, repo, digest)
	if err != nil {
		return nil, err
	}
	if desc.MediaType.IsIndex() {
		im, err := v1.ParseIndexManifest(bytes.NewReader(desc.Manifest))
		if err != nil {
			return nil, err
		}
		var child *v1.Descriptor
		for i, c := range im.Manifests {
			if len(im.Manifests) == 1 || want != nil && c.Platform != nil && c.Platform.Satisfies(*want) {
				child = &im.Manifests[i]
				break
			}
		}
		if child == nil {
			return nil, fmt.Errorf("index %s has no manifest for %v", digest, want)
		}
		if desc, err = f.w.Manifest(ctx, repo, child.Digest.String()); err != nil {
			return nil, err
		}
	}
	m, err := v1.ParseManifest(bytes.NewReader(desc.Manifest))
	if err != nil {
		return nil, err
	}
	cf, err := f.w.Config(ctx, repo, m.Config.Digest)
	if err != nil {
		return nil, err
	}
	p := &inventory.Platform{Digest: desc.Digest.String(), Size: desc.Size, Manifest: m, Config: cf}
	if pl := cf.Platform(); pl != nil {
		p.Platform = pl.String()
	}
	return p, nil
}
