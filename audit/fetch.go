package audit

import (
	"bytes"
	"context"
	"fmt"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/regkeeper/regkeeper/internal/client"
	"github.com/regkeeper/regkeeper/inventory"
)

// registryFetcher reads bases by digest over the registry API.
type registryFetcher struct {
	opts   client.Options
	host   string
	puller *remote.Puller
}

func newFetcher(ctx context.Context, host string, o inventory.Options) (*registryFetcher, error) {
	p, err := remote.NewPuller(o.Client.Remote(ctx)...)
	if err != nil {
		return nil, err
	}
	return &registryFetcher{opts: o.Client, host: host, puller: p}, nil
}

// Platform reads the manifest digest in repo; an index resolves to its
// child for want (or its only child).
func (f *registryFetcher) Platform(ctx context.Context, repo, digest string, want *v1.Platform) (*inventory.Platform, error) {
	reg, err := f.opts.Registry(f.host)
	if err != nil {
		return nil, err
	}
	r := reg.Repo(repo)
	desc, err := f.puller.Get(ctx, r.Digest(digest))
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
		if desc, err = f.puller.Get(ctx, r.Digest(child.Digest.String())); err != nil {
			return nil, err
		}
	}
	m, err := v1.ParseManifest(bytes.NewReader(desc.Manifest))
	if err != nil {
		return nil, err
	}
	l, err := f.puller.Layer(ctx, r.Digest(m.Config.Digest.String()))
	if err != nil {
		return nil, err
	}
	rc, err := l.Compressed()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	raw, err := io.ReadAll(io.LimitReader(rc, 32<<20))
	if err != nil {
		return nil, err
	}
	cf, err := v1.ParseConfigFile(bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	p := &inventory.Platform{Digest: desc.Digest.String(), Size: desc.Size, Manifest: m, Config: cf}
	if pl := cf.Platform(); pl != nil {
		p.Platform = pl.String()
	}
	return p, nil
}
