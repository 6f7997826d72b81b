package inventory

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sync/errgroup"

	"github.com/regkeeper/regkeeper/internal/client"
)

// pageSizes are the page sizes asked of the catalog and tag lists, in order:
// a registry that rejects one (PAGINATION_NUMBER_INVALID, or a bare 400) is
// asked again with the next; 0 leaves n out and takes the registry's default.
// Later pages follow the Link header exactly as the registry sent it.
var pageSizes = []int{1000, 100, 0}

// maxConfigSize bounds an image config read into memory.
const maxConfigSize = 32 << 20

// Run walks the registry at host: every repository of its catalog (following
// every page), every tag of each, and each tag's manifest, platform manifests
// and image configs. A repository or tag that cannot be read is recorded in
// Result.Errors and the walk goes on; the returned error is for a registry
// that cannot be walked at all (unreachable, credentials refused, no
// catalog).
func Run(ctx context.Context, host string, opts Options) (*Result, error) {
	reg, err := opts.Client.Registry(host)
	if err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w := &walker{opts: opts, log: log, ropts: opts.Client.Remote(ctx)}
	if w.puller, err = remote.NewPuller(append(w.ropts, remote.WithPageSize(pageSizes[0]))...); err != nil {
		return nil, err
	}

	all, err := w.catalog(ctx, reg)
	if err != nil {
		return nil, fmt.Errorf("listing repositories of %s: %w", reg, client.Explain(err))
	}
	var repos []string
	for _, r := range all {
		if opts.Repo == nil || opts.Repo.MatchString(r) {
			repos = append(repos, r)
		}
	}
	res := &Result{Registry: reg.RegistryStr(), Images: []Image{}, Errors: []Error{}}
	bar := opts.Progress.Count(int64(len(repos)), "repositories")
	defer bar.Done()

	// Stage 1: the tags of every repository, jobs at a time.
	type repoTags struct {
		repo name.Repository
		tags []string
		left atomic.Int64 // tags not yet walked, for the progress bar
	}
	listed := make([]*repoTags, len(repos))
	var mu sync.Mutex
	fail := func(e Error) {
		mu.Lock()
		res.Errors = append(res.Errors, e)
		mu.Unlock()
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(opts.Client.JobCount())
	for i, r := range repos {
		g.Go(func() error {
			repo := reg.Repo(r)
			tags, err := w.tags(gctx, repo)
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				fail(Error{Repository: r, Error: "listing tags: " + client.Describe(err)})
				bar.Add(1)
				return nil
			}
			rt := &repoTags{repo: repo}
			for _, t := range tags {
				if opts.Tag == nil || opts.Tag.MatchString(t) {
					rt.tags = append(rt.tags, t)
				}
			}
			rt.left.Store(int64(len(rt.tags)))
			if len(rt.tags) == 0 {
				bar.Add(1)
			}
			listed[i] = rt
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}

	// Stage 2: every selected tag, jobs at a time.
	g, gctx = errgroup.WithContext(ctx)
	g.SetLimit(opts.Client.JobCount())
	for _, rt := range listed {
		if rt == nil {
			continue
		}
		for _, tag := range rt.tags {
			g.Go(func() error {
				img, errs := w.image(gctx, rt.repo, tag)
				if ctx.Err() != nil {
					return ctx.Err()
				}
				mu.Lock()
				if img != nil {
					res.Images = append(res.Images, *img)
				}
				res.Errors = append(res.Errors, errs...)
				mu.Unlock()
				if rt.left.Add(-1) == 0 {
					bar.Add(1)
				}
				return nil
			})
		}
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	sort.Slice(res.Images, func(i, j int) bool {
		a, b := res.Images[i], res.Images[j]
		return a.Repository < b.Repository || a.Repository == b.Repository && a.Tag < b.Tag
	})
	sort.SliceStable(res.Errors, func(i, j int) bool {
		a, b := res.Errors[i], res.Errors[j]
		return a.Repository < b.Repository || a.Repository == b.Repository && a.Tag < b.Tag
	})
	return res, nil
}

type walker struct {
	opts   Options
	log    *slog.Logger
	ropts  []remote.Option
	puller *remote.Puller

	configs   sync.Map // v1.Hash -> *configEntry, shared by every repository (content-addressed)
	manifests sync.Map // repository@digest -> *manifestEntry
}

type configEntry struct {
	once sync.Once
	cf   *v1.ConfigFile
	err  error
}

type manifestEntry struct {
	once sync.Once
	desc *remote.Descriptor
	err  error
}

// catalog lists every repository, following the Link header page by page.
func (w *walker) catalog(ctx context.Context, reg name.Registry) ([]string, error) {
	return withPageSizes(w, "catalog", func(p *remote.Puller) ([]string, error) {
		c, err := p.Catalogger(ctx, reg)
		if err != nil {
			return nil, err
		}
		var out []string
		for c.HasNext() {
			page, err := c.Next(ctx)
			if err != nil {
				return nil, err
			}
			out = append(out, page.Repos...)
		}
		return out, nil
	})
}

// tags lists every tag of repo, following the Link header page by page.
func (w *walker) tags(ctx context.Context, repo name.Repository) ([]string, error) {
	return withPageSizes(w, repo.RepositoryStr(), func(p *remote.Puller) ([]string, error) {
		l, err := p.Lister(ctx, repo)
		if err != nil {
			return nil, err
		}
		var out []string
		for l.HasNext() {
			page, err := l.Next(ctx)
			if err != nil {
				return nil, err
			}
			out = append(out, page.Tags...)
		}
		return out, nil
	})
}

// withPageSizes runs list with each page size of pageSizes until the
// registry accepts one. The first size uses the shared puller, built with
// it (its authentication is reused by the manifest requests that follow).
func withPageSizes(w *walker, what string, list func(*remote.Puller) ([]string, error)) ([]string, error) {
	var err error
	for i, n := range pageSizes {
		p := w.puller
		if i > 0 {
			if p, err = remote.NewPuller(append(w.ropts[:len(w.ropts):len(w.ropts)], remote.WithPageSize(n))...); err != nil {
				return nil, err
			}
		}
		var out []string
		out, err = list(p)
		if err == nil || !paginationRejected(err) {
			return out, err
		}
		w.log.Info("registry rejected the page size; asking again with a smaller one", "list", what, "n", n)
	}
	return nil, err
}

// paginationRejected reports whether the registry refused the page size.
func paginationRejected(err error) bool {
	var terr *transport.Error
	if !errors.As(err, &terr) {
		return false
	}
	for _, d := range terr.Errors {
		if d.Code == "PAGINATION_NUMBER_INVALID" {
			return true
		}
	}
	return terr.StatusCode == http.StatusBadRequest && len(terr.Errors) == 0
}

func isNotFound(err error) bool {
	var terr *transport.Error
	return errors.As(err, &terr) && terr.StatusCode == http.StatusNotFound
}

// image reads one tag: its manifest and, per platform, the platform
// manifest and config.
func (w *walker) image(ctx context.Context, repo name.Repository, tag string) (*Image, []Error) {
	r := repo.RepositoryStr()
	desc, err := w.puller.Get(ctx, repo.Tag(tag))
	if err != nil {
		return nil, []Error{{Repository: r, Tag: tag, Error: "reading manifest: " + client.Describe(err)}}
	}
	img := &Image{
		Repository: r, Tag: tag,
		Digest: desc.Digest.String(), MediaType: string(desc.MediaType),
		Platforms: []Platform{}, Labels: map[string]string{}, Annotations: map[string]string{},
	}
	seen := map[v1.Hash]bool{desc.Digest: true}
	img.Size = desc.Size
	add := func(ds ...v1.Descriptor) {
		for _, d := range ds {
			if !seen[d.Digest] {
				seen[d.Digest] = true
				img.Size += d.Size
			}
		}
	}
	var errs []Error
	switch {
	case desc.MediaType.IsIndex():
		im, err := v1.ParseIndexManifest(bytes.NewReader(desc.Manifest))
		if err != nil {
			return nil, []Error{{Repository: r, Tag: tag, Error: fmt.Sprintf("parsing index %s: %v", desc.Digest, err)}}
		}
		mergeInto(img.Annotations, im.Annotations)
		for _, child := range im.Manifests {
			p, blobs, err := w.platform(ctx, repo, child)
			if err != nil {
				errs = append(errs, Error{Repository: r, Tag: tag, Error: err.Error()})
			}
			add(child)
			add(blobs...)
			img.Platforms = append(img.Platforms, p)
		}
	case isImageManifest(desc.MediaType, desc.Manifest):
		p, blobs, err := w.platform(ctx, repo, desc.Descriptor)
		if err != nil {
			errs = append(errs, Error{Repository: r, Tag: tag, Error: err.Error()})
		}
		add(blobs...)
		if p.Manifest != nil {
			mergeInto(img.Annotations, p.Manifest.Annotations)
		}
		img.Platforms = append(img.Platforms, p)
	default:
		errs = append(errs, Error{Repository: r, Tag: tag, Error: fmt.Sprintf("manifest %s has media type %q, which regkeeper does not read", desc.Digest, desc.MediaType)})
	}
	var newest time.Time
	for _, p := range img.Platforms {
		if p.Config == nil {
			continue
		}
		if c := p.Config.Created.Time; c.After(newest) {
			newest = c
		}
		if len(img.Labels) == 0 {
			mergeInto(img.Labels, p.Config.Config.Labels)
		}
	}
	img.Created = formatTime(newest)
	return img, errs
}

// platform reads one platform manifest (fetched by digest in repo, once per
// repository) and its config (once per registry). It returns what it could
// read, the blobs it references (config and layers), and what went wrong.
func (w *walker) platform(ctx context.Context, repo name.Repository, d v1.Descriptor) (Platform, []v1.Descriptor, error) {
	p := Platform{Digest: d.Digest.String(), Size: d.Size}
	if d.Platform != nil {
		p.Platform = d.Platform.String()
	}
	v, _ := w.manifests.LoadOrStore(repo.String()+"@"+d.Digest.String(), &manifestEntry{})
	me := v.(*manifestEntry)
	me.once.Do(func() {
		me.desc, me.err = w.puller.Get(ctx, repo.Digest(d.Digest.String()))
	})
	if isNotFound(me.err) {
		return p, nil, fmt.Errorf("platform %s: manifest %s is not in this repository (an index copied without its children?)", orUnknown(p.Platform), d.Digest)
	}
	if me.err != nil {
		return p, nil, fmt.Errorf("platform %s: reading manifest %s: %s", orUnknown(p.Platform), d.Digest, client.Describe(me.err))
	}
	if !isImageManifest(me.desc.MediaType, me.desc.Manifest) {
		return p, nil, nil // a nested index or an artifact: counted by its own size
	}
	m, err := v1.ParseManifest(bytes.NewReader(me.desc.Manifest))
	if err != nil {
		return p, nil, fmt.Errorf("platform %s: parsing manifest %s: %v", orUnknown(p.Platform), d.Digest, err)
	}
	p.Manifest = m
	blobs := append([]v1.Descriptor{m.Config}, m.Layers...)
	seen := map[v1.Hash]bool{}
	for _, b := range blobs {
		if !seen[b.Digest] {
			seen[b.Digest] = true
			p.Size += b.Size
		}
	}
	if !isImageConfig(m.Config.MediaType) {
		return p, blobs, nil // signatures, SBOMs and other artifacts have no image config
	}
	cf, err := w.config(ctx, repo, m.Config.Digest)
	if err != nil {
		return p, blobs, fmt.Errorf("platform %s: reading config %s: %s", orUnknown(p.Platform), m.Config.Digest, client.Describe(err))
	}
	p.Config = cf
	if p.Platform == "" {
		if pl := cf.Platform(); pl != nil && pl.OS != "" {
			p.Platform = pl.String()
		}
	}
	p.Created = formatTime(cf.Created.Time)
	return p, blobs, nil
}

// config fetches and parses an image config, once per digest.
func (w *walker) config(ctx context.Context, repo name.Repository, dg v1.Hash) (*v1.ConfigFile, error) {
	v, _ := w.configs.LoadOrStore(dg, &configEntry{})
	ce := v.(*configEntry)
	ce.once.Do(func() {
		l, err := w.puller.Layer(ctx, repo.Digest(dg.String()))
		if err != nil {
			ce.err = err
			return
		}
		rc, err := l.Compressed() // verified against dg while reading
		if err != nil {
			ce.err = err
			return
		}
		defer rc.Close()
		raw, err := io.ReadAll(io.LimitReader(rc, maxConfigSize))
		if err == nil {
			err = rc.Close()
		}
		if err != nil {
			ce.err = err
			return
		}
		ce.cf, ce.err = v1.ParseConfigFile(bytes.NewReader(raw))
	})
	if ce.err != nil {
		// A failure in one repository (a missing blob link, say) must not
		// stand for the digest in others: forget it.
		w.configs.CompareAndDelete(dg, ce)
	}
	return ce.cf, ce.err
}

// isImageManifest reports whether a manifest is a single-platform image
// manifest. Some registries serve OCI manifests without a media type, so the
// body is consulted when the type says nothing.
func isImageManifest(mt types.MediaType, raw []byte) bool {
	if mt.IsImage() {
		return true
	}
	if mt != "" && mt != "application/json" {
		return false
	}
	m, err := v1.ParseManifest(bytes.NewReader(raw))
	return err == nil && m.Config.Digest.Hex != ""
}

func isImageConfig(mt types.MediaType) bool {
	return mt == types.DockerConfigJSON || mt == types.OCIConfigJSON
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

func orUnknown(s string) string {
	if s == "" {
		return "(unknown)"
	}
	return s
}
