package usage

import (
	"context"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/regkeeper/regkeeper/internal/client"
)

// RegistryIndexes reads indexes from the registry at host, with
// regkeeper's user agent (so the registry's pull events for these reads
// are ignored by the ledger).
func RegistryIndexes(host string, opts client.Options) IndexReader {
	return func(ctx context.Context, repo, dgst string) (string, []string, error) {
		ref, err := name.NewDigest(host+"/"+repo+"@"+dgst, opts.NameOptions()...)
		if err != nil {
			return "", nil, fmt.Errorf("reading index %s@%s: %w", repo, dgst, err)
		}
		desc, err := remote.Get(ref, opts.Remote(ctx)...)
		if err != nil {
			return "", nil, fmt.Errorf("reading index %s@%s: %w", repo, dgst, err)
		}
		if !desc.MediaType.IsIndex() {
			return string(desc.MediaType), nil, nil
		}
		idx, err := desc.ImageIndex()
		if err != nil {
			return "", nil, fmt.Errorf("reading index %s@%s: %w", repo, dgst, err)
		}
		im, err := idx.IndexManifest()
		if err != nil {
			return "", nil, fmt.Errorf("reading index %s@%s: %w", repo, dgst, err)
		}
		var children []string
		for _, m := range im.Manifests {
			children = append(children, m.Digest.String())
		}
		return string(desc.MediaType), children, nil
	}
}
