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

// Option changes what Pull accepts.
type Option func(*options)

type options struct {
	absent map[v1.Hash]bool
}

// Absent names index children that are absent from the repository by
// design (an index-only copy, as a mirror of one platform keeps): Pull
// skips them. Any other absent child fails the pull.
func Absent(children ...v1.Hash) Option {
	return func(o *options) {
		for _, c := range children {
			o.absent[c] = true
		}
	}
}

// Pull fetches ref completely: an index and each of its children, an
// image's config and every layer, each verified against its digest while
// reading. A child absent from the repository fails the pull unless
// Absent names it.
func Pull(ctx context.Context, ref name.Reference, opts ...Option) error {
	o := options{absent: map[v1.Hash]bool{}}
	for _, f := range opts {
		f(&o)
	}
	return pull(ctx, ref, o)
}

func pull(ctx context.Context, ref name.Reference, o options) error {
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
			if o.absent[child.Digest] {
				continue
			}
			cref := ref.Context().Digest(child.Digest.String())
			if err := pull(ctx, cref, o); err != nil {
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
