package inventory

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sync/errgroup"

	"github.com/regkeeper/regkeeper/internal/client"
	"github.com/regkeeper/regkeeper/internal/walk"
)

// Run walks the registry at host (internal/walk): every repository of its
// catalog, every tag of each, and each tag's manifest, platform manifests
// and image configs. What is broken in the registry is in Result.Problems
// and the tag is still listed as far as it could be read; a repository or
// tag that could not be read is in Result.Errors. Either way the walk goes
// on; the returned error is for a registry that cannot be walked at all
// (unreachable, credentials refused, no catalog).
func Run(ctx context.Context, host string, opts Options) (*Result, error) {
	w, err := walk.New(ctx, host, walk.Options{Client: opts.Client, Repo: opts.Repo, Tag: opts.Tag, Logger: opts.Logger})
	if err != nil {
		return nil, err
	}
	l, err := w.List(ctx)
	if err != nil {
		return nil, err
	}
	res := &Result{Registry: w.Registry().RegistryStr(), Images: []Image{}, Problems: []walk.Problem{}, Errors: l.Errors,
		Selection: l.Selection, Listed: map[string][]string{}}
	for _, r := range l.Repositories {
		res.Listed[r.Name] = r.All
	}
	refs := l.Refs()
	bar := opts.Progress.Count(int64(len(refs)), "tags")
	defer bar.Done()

	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(opts.Client.JobCount())
	for _, ref := range refs {
		g.Go(func() error {
			wi, problems, err := w.Read(gctx, ref.Repository, ref.Tag)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			mu.Lock()
			defer mu.Unlock()
			if wi != nil {
				res.Images = append(res.Images, image(wi))
			}
			res.Problems = append(res.Problems, problems...)
			if err != nil {
				res.Errors = append(res.Errors, Error{Repository: ref.Repository, Tag: ref.Tag, Error: client.Describe(err)})
			}
			bar.Add(1)
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	sort.Slice(res.Images, func(i, j int) bool {
		a, b := res.Images[i], res.Images[j]
		return a.Repository < b.Repository || a.Repository == b.Repository && a.Tag < b.Tag
	})
	walk.SortErrors(res.Errors)
	walk.SortProblems(res.Problems)
	if opts.Usage != nil {
		for i := range res.Images {
			img := &res.Images[i]
			u, err := opts.Usage(img.Repository, img.Tag, img.Digest)
			if err != nil {
				return nil, fmt.Errorf("reading the usage of %s:%s: %w", img.Repository, img.Tag, err)
			}
			img.Usage = u
		}
	}
	return res, nil
}

// image turns what the walker read of a tag into its Image record.
func image(wi *walk.Image) Image {
	img := Image{
		Repository: wi.Repository, Tag: wi.Tag,
		Digest: wi.Descriptor.Digest.String(), MediaType: string(wi.Descriptor.MediaType),
		Platforms: []Platform{}, Labels: map[string]string{}, Annotations: map[string]string{},
	}
	seen := map[v1.Hash]bool{wi.Descriptor.Digest: true}
	img.Size = wi.Descriptor.Size
	add := func(ds ...v1.Descriptor) {
		for _, d := range ds {
			if !seen[d.Digest] {
				seen[d.Digest] = true
				img.Size += d.Size
			}
		}
	}
	if wi.Index != nil {
		mergeInto(img.Annotations, wi.Index.Annotations)
	} else if wi.Manifest != nil {
		mergeInto(img.Annotations, wi.Manifest.Annotations)
	}
	var newest time.Time
	for _, wp := range wi.Platforms {
		p := Platform{Digest: wp.Descriptor.Digest.String(), Size: wp.Descriptor.Size, Absent: wp.Absent,
			Manifest: wp.Manifest, Config: wp.Config}
		if wp.Descriptor.Platform != nil {
			p.Platform = wp.Descriptor.Platform.String()
		}
		if wi.Index != nil {
			add(wp.Descriptor)
		}
		if m := wp.Manifest; m != nil {
			blobs := append([]v1.Descriptor{m.Config}, m.Layers...)
			add(blobs...)
			own := map[v1.Hash]bool{}
			for _, b := range blobs {
				if !own[b.Digest] {
					own[b.Digest] = true
					p.Size += b.Size
				}
			}
		}
		if cf := wp.Config; cf != nil {
			if p.Platform == "" {
				if pl := cf.Platform(); pl != nil && pl.OS != "" {
					p.Platform = pl.String()
				}
			}
			p.Created = formatTime(cf.Created.Time)
			if c := cf.Created.Time; c.After(newest) {
				newest = c
			}
			if len(img.Labels) == 0 {
				mergeInto(img.Labels, cf.Config.Labels)
			}
		}
		img.Platforms = append(img.Platforms, p)
	}
	img.Created = formatTime(newest)
	return img
}

func mergeInto(dst, src map[string]string) {
	for k, v := range src {
		dst[k] = v
	}
}

// formatTime renders a config time as recorded; the zero time (absent)
// renders empty.
func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}
