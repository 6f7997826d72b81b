package audit

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/regkeeper/regkeeper/internal/client"
	"github.com/regkeeper/regkeeper/internal/walk"
	"github.com/regkeeper/regkeeper/inventory"
)

// registryFetcher reads bases by digest through the registry walker.
type registryFetcher struct {
	w    *walk.Walker
	opts client.Options
	host string

	mu      sync.Mutex
	clients map[string]*http.Client // per repository, authorised to pull
}

func newFetcher(ctx context.Context, host string, o inventory.Options) (*registryFetcher, error) {
	w, err := walk.New(ctx, host, walk.Options{Client: o.Client, Logger: o.Logger})
	if err != nil {
		return nil, err
	}
	return &registryFetcher{w: w, opts: o.Client, host: host}, nil
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

// Referrers lists the referrers of digest in repo through the referrers API
// alone (the inventory already has the fallback tags), and says whether the
// registry has one.
func (f *registryFetcher) Referrers(ctx context.Context, repo, digest string) ([]v1.Descriptor, bool, error) {
	reg, err := f.opts.Registry(f.host)
	if err != nil {
		return nil, false, err
	}
	hc, err := f.client(ctx, reg.Repo(repo))
	if err != nil {
		return nil, false, err
	}
	return client.Referrers(ctx, hc, reg.Repo(repo), digest)
}

// client returns an HTTP client authorised to pull from r, made once per
// repository (the token exchange is not repeated for each manifest).
func (f *registryFetcher) client(ctx context.Context, r name.Repository) (*http.Client, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c := f.clients[r.String()]; c != nil {
		return c, nil
	}
	c, err := f.opts.HTTPClient(ctx, r, transport.PullScope)
	if err != nil {
		return nil, err
	}
	if f.clients == nil {
		f.clients = map[string]*http.Client{}
	}
	f.clients[r.String()] = c
	return c, nil
}
