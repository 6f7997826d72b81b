// Package walk is the one place that lists a registry and reads what its
// tags point at. inventory, audit, backup, report and cycle all walk through
// it; none lists a catalog or a tag list on its own.
//
// It owns:
//   - catalog and tag pages: the first page size asked, the page sizes a
//     registry rejects (PAGINATION_NUMBER_INVALID or a bare 400: asked
//     again with n=100, then without n), and every later page through the
//     Link header exactly as the registry sent it;
//   - the --repo and --tag filters, and what they selected (Selection);
//   - concurrency, retries and credentials (through internal/client);
//   - reading a tag's manifest, an index's children and image configs
//     (Read), each manifest once per repository and each config once per
//     registry. Listing alone (List) reads no manifest, so a backup pays
//     one HEAD per unchanged tag and nothing more.
//
// What it finds is sorted in two: a Problem is a fact about the registry
// (an index whose children are absent from its repository, a manifest that
// does not parse, a tag whose manifest is missing), reported and walked
// past; an Error is a part of the registry that could not be read
// (unreachable, credentials refused, a page that failed after retries), for
// which a run fails.
package walk

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"golang.org/x/sync/errgroup"

	"github.com/regkeeper/regkeeper/internal/client"
)

// PageSizes are the page sizes asked of the catalog and tag lists, in
// order: a registry that rejects one (PAGINATION_NUMBER_INVALID, or a bare
// 400 to a list request) is asked again with the next; 0 leaves n out and
// takes the registry's default.
var PageSizes = []int{1000, 100, 0}

// Options for New. The zero value walks every repository and tag with
// client.DefaultJobs concurrent requests.
type Options struct {
	Client client.Options
	// Repo and Tag, when set, select repositories and tags by regular
	// expression.
	Repo, Tag *regexp.Regexp
	// Logger receives notices (a page size rejected, a repository without
	// tags); nil discards them.
	Logger *slog.Logger
}

// Walker walks one registry. It is safe for concurrent use.
type Walker struct {
	opts   Options
	reg    name.Registry
	log    *slog.Logger
	ropts  []remote.Option
	puller *remote.Puller

	manifests sync.Map // repository@digest -> *once[*remote.Descriptor]
	configs   sync.Map // digest -> *once[*v1.ConfigFile]
}

// New returns a walker of the registry at host. Requests made through it
// end with ctx.
func New(ctx context.Context, host string, opts Options) (*Walker, error) {
	reg, err := opts.Client.Registry(host)
	if err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w := &Walker{opts: opts, reg: reg, log: log, ropts: opts.Client.Remote(ctx)}
	if w.puller, err = remote.NewPuller(append(w.ropts[:len(w.ropts):len(w.ropts)], remote.WithPageSize(PageSizes[0]))...); err != nil {
		return nil, err
	}
	return w, nil
}

// Registry is the registry walked.
func (w *Walker) Registry() name.Registry { return w.reg }

// Puller is the walker's puller, for callers that go on to fetch blobs:
// it reuses the walker's authentication.
func (w *Walker) Puller() *remote.Puller { return w.puller }

// Repository is one selected repository of a listing.
type Repository struct {
	Name string
	// Tags are the tags the tag filter selects, sorted; All is every tag.
	Tags, All []string
}

// Listing is what List found.
type Listing struct {
	// Repositories selected by the repository filter whose tags could be
	// listed, sorted by name.
	Repositories []Repository
	// Errors are the repositories whose tags could not be listed.
	Errors    []Error
	Selection Selection
}

// Selection counts what the filters selected, so that a filter that
// matches nothing can be told from an empty registry.
type Selection struct {
	// Repositories in the catalog, and of those, the ones --repo matched.
	Repositories        int `json:"repositories"`
	MatchedRepositories int `json:"matchedRepositories"`
	// Tags in the matched repositories, and of those, the ones --tag
	// matched.
	Tags        int `json:"tags"`
	MatchedTags int `json:"matchedTags"`
}

// Refs returns every selected repository:tag of the listing, in order.
func (l *Listing) Refs() []Ref {
	var out []Ref
	for _, r := range l.Repositories {
		for _, t := range r.Tags {
			out = append(out, Ref{Repository: r.Name, Tag: t})
		}
	}
	return out
}

// Ref names one tag of one repository.
type Ref struct{ Repository, Tag string }

// List lists the catalog (every page) and the tags of every selected
// repository (jobs at a time). The error is for a registry that cannot be
// listed at all: unreachable, credentials refused, a catalog page that
// could not be read; a repository whose tags cannot be listed is in
// Listing.Errors.
func (w *Walker) List(ctx context.Context) (*Listing, error) {
	all, err := w.Catalog(ctx)
	if err != nil {
		return nil, err
	}
	l := &Listing{Errors: []Error{}}
	l.Selection.Repositories = len(all)
	var names []string
	for _, r := range all {
		if w.opts.Repo == nil || w.opts.Repo.MatchString(r) {
			names = append(names, r)
		}
	}
	sort.Strings(names)
	l.Selection.MatchedRepositories = len(names)
	repos := make([]*Repository, len(names))
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(w.opts.Client.JobCount())
	for i, r := range names {
		g.Go(func() error {
			tags, err := w.Tags(gctx, r)
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				mu.Lock()
				l.Errors = append(l.Errors, Error{Repository: r, Error: "listing tags: " + client.Describe(err)})
				mu.Unlock()
				return nil
			}
			rp := &Repository{Name: r, All: tags}
			for _, t := range tags {
				if w.opts.Tag == nil || w.opts.Tag.MatchString(t) {
					rp.Tags = append(rp.Tags, t)
				}
			}
			repos[i] = rp
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	for _, r := range repos {
		if r != nil {
			l.Repositories = append(l.Repositories, *r)
			l.Selection.Tags += len(r.All)
			l.Selection.MatchedTags += len(r.Tags)
		}
	}
	SortErrors(l.Errors)
	return l, nil
}

// Catalog lists every repository of the registry, following the Link
// header page by page.
func (w *Walker) Catalog(ctx context.Context) ([]string, error) {
	out, err := w.pages(ctx, "catalog", func(p *remote.Puller) ([]string, error) {
		c, err := p.Catalogger(ctx, w.reg)
		if err != nil {
			return nil, err
		}
		return drain(ctx, c.HasNext, c.Next, func(page *remote.Catalogs) []string { return page.Repos })
	})
	if err != nil {
		return nil, fmt.Errorf("listing repositories of %s: %w", w.reg.RegistryStr(), client.Explain(err))
	}
	return out, nil
}

// Tags lists every tag of repository repo, sorted, following the Link
// header page by page. A repository the catalog names but that has no tag
// (the registry answers NAME_UNKNOWN) has none.
func (w *Walker) Tags(ctx context.Context, repo string) ([]string, error) {
	r := w.reg.Repo(repo)
	out, err := w.pages(ctx, repo, func(p *remote.Puller) ([]string, error) {
		l, err := p.Lister(ctx, r)
		if err != nil {
			return nil, err
		}
		return drain(ctx, l.HasNext, l.Next, func(page *remote.Tags) []string { return page.Tags })
	})
	if isNotFound(err) {
		w.log.Info("repository in the catalog has no tags", "repository", repo)
		return nil, nil
	}
	slices.Sort(out)
	return slices.Compact(out), err
}

// drain reads every page of a list, following the Link header.
func drain[P any](ctx context.Context, hasNext func() bool, next func(context.Context) (P, error), items func(P) []string) ([]string, error) {
	var out []string
	for hasNext() {
		page, err := next(ctx)
		if err != nil {
			return nil, err
		}
		out = append(out, items(page)...)
	}
	return out, nil
}

// pages runs list with each page size of PageSizes until the registry
// accepts one. The first size uses the shared puller (its authentication
// is reused by the manifest requests that follow).
func (w *Walker) pages(ctx context.Context, what string, list func(*remote.Puller) ([]string, error)) ([]string, error) {
	var err error
	for i, n := range PageSizes {
		p := w.puller
		if i > 0 {
			if p, err = remote.NewPuller(append(w.ropts[:len(w.ropts):len(w.ropts)], remote.WithPageSize(n))...); err != nil {
				return nil, err
			}
		}
		var out []string
		out, err = list(p)
		if err == nil || !PageSizeRejected(err) || ctx.Err() != nil {
			return out, err
		}
		next := "none (the registry's default)"
		if i+1 < len(PageSizes) && PageSizes[i+1] > 0 {
			next = fmt.Sprint(PageSizes[i+1])
		}
		w.log.Info("registry rejected the page size; asking again", "list", what, "n", n, "next", next, "answer", err.Error())
	}
	return nil, err
}

// PageSizeRejected reports whether err is a registry's refusal of the
// page size of a catalog or tag list request: PAGINATION_NUMBER_INVALID,
// or a bare 400 to such a request. A TLS or connection failure, or a 400
// to anything else (an HTTP request sent to an HTTPS port answers one), is
// not.
func PageSizeRejected(err error) bool {
	if client.IsTLS(err) {
		return false
	}
	var terr *transport.Error
	if !errors.As(err, &terr) {
		return false
	}
	for _, d := range terr.Errors {
		if d.Code == "PAGINATION_NUMBER_INVALID" {
			return true
		}
	}
	if terr.StatusCode != http.StatusBadRequest || len(terr.Errors) != 0 || terr.Request == nil {
		return false
	}
	p := terr.Request.URL.Path
	return strings.HasSuffix(p, "/_catalog") || strings.HasSuffix(p, "/tags/list")
}

func isNotFound(err error) bool {
	var terr *transport.Error
	return errors.As(err, &terr) && terr.StatusCode == http.StatusNotFound
}

// Error is a repository, tag or manifest the walk could not read. Its JSON
// field names are a contract (the README).
type Error struct {
	Repository string `json:"repository"`
	Tag        string `json:"tag,omitempty"`
	Error      string `json:"error"`
}

// Where names the repository, and the tag when there is one.
func (e Error) Where() string { return where(e.Repository, e.Tag) }

// SortErrors sorts errors by repository, then tag.
func SortErrors(errs []Error) {
	sort.SliceStable(errs, func(i, j int) bool {
		a, b := errs[i], errs[j]
		return a.Repository < b.Repository || a.Repository == b.Repository && a.Tag < b.Tag
	})
}

func where(repo, tag string) string {
	if tag == "" {
		return repo
	}
	return repo + ":" + tag
}
