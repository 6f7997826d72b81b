package retain

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"sync"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"golang.org/x/sync/errgroup"

	"github.com/regkeeper/regkeeper/audit"
	"github.com/regkeeper/regkeeper/gc"
	"github.com/regkeeper/regkeeper/internal/client"
	"github.com/regkeeper/regkeeper/internal/walk"
)

// GatherOptions says where Gather reads facts from.
type GatherOptions struct {
	// Storage, when set, is the registry's storage (gc's reader): push
	// times are the modification times of the tags' current links, and
	// digests are read from those links instead of one request per tag.
	Storage storagedriver.StorageDriver
	// Evidence is the usage ledger; nil when none was given.
	Evidence Evidence
	// Policy says which repositories need push times and usage evidence.
	Policy *Policy
	// Jobs: concurrent requests (default client.DefaultJobs).
	Jobs int
	// Now dates the evidence windows and the validity of config dates.
	Now time.Time
	// Logger receives notices; nil discards them.
	Logger *slog.Logger
}

// Gather reads the facts Apply judges: every repository and tag of the
// registry (every repository, not only those a policy covers, because a
// blob is freed only when no kept tag anywhere uses it), each tag's digest
// and push time, each distinct manifest once per repository (index
// children, configs and layers, with sizes), signature tags' subjects, and
// for the repositories whose policy needs it, the usage evidence. Errors
// are the repositories and tags that could not be read; the error is for a
// registry that could not be listed at all.
func Gather(ctx context.Context, w *walk.Walker, opts GatherOptions) (*Facts, []walk.Error, error) {
	if opts.Jobs < 1 {
		opts.Jobs = client.DefaultJobs
	}
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	repos, errs, err := list(ctx, w, opts)
	if err != nil {
		return nil, nil, err
	}
	facts := &Facts{Repositories: make([]RepoFacts, 0, len(repos)), Problems: []walk.Problem{}}
	if opts.Evidence != nil {
		u := &UsageFacts{}
		if ev, run, err := opts.Evidence.Freshness(); err != nil {
			u.Err = err.Error()
		} else {
			u.Events, u.Running = ev, run
		}
		facts.Usage = u
	}
	for _, r := range repos {
		var rp *RepoPolicy
		if opts.Policy != nil {
			if p, ok := opts.Policy.Explain(r.name); ok {
				rp = &p
			}
		}
		g := &repoGatherer{w: w, opts: opts, repo: r.name, covered: rp != nil, manifests: map[string]*manifestFacts{}}
		rf, err := g.gather(ctx, r.tags, r.links)
		if err != nil {
			return nil, nil, err
		}
		if rp != nil && facts.Usage != nil && facts.Usage.Err == "" {
			g.usage(rp, &rf)
		}
		facts.Repositories = append(facts.Repositories, rf)
		facts.Problems = append(facts.Problems, g.problems...)
		errs = append(errs, g.errs...)
	}
	walk.SortProblems(facts.Problems)
	walk.SortErrors(errs)
	return facts, errs, nil
}

// listed is one repository's tags, with their links when storage was read.
type listed struct {
	name  string
	tags  []string
	links map[string]gc.TagLink
}

// list lists every repository and its tags. Without storage, through the
// walker (the catalog and tag lists, page by page as the registry sends
// them). With storage, the catalog through the walker and each
// repository's tags from its _manifests/tags in storage, which is what the
// registry's tag list reads too, once instead of once per page (a
// distribution registry walks the tag directory from its start for every
// page, which for 100,000 tags is most of the time of a plan).
func list(ctx context.Context, w *walk.Walker, opts GatherOptions) ([]listed, []walk.Error, error) {
	if opts.Storage == nil {
		l, err := w.List(ctx)
		if err != nil {
			return nil, nil, err
		}
		out := make([]listed, 0, len(l.Repositories))
		for _, r := range l.Repositories {
			out = append(out, listed{name: r.Name, tags: r.All})
		}
		return out, append([]walk.Error{}, l.Errors...), nil
	}
	names, err := w.Catalog(ctx)
	if err != nil {
		return nil, nil, err
	}
	sort.Strings(names)
	out := make([]listed, 0, len(names))
	for _, n := range names {
		links, err := gc.TagLinks(ctx, opts.Storage, n, opts.Jobs)
		if err != nil {
			return nil, nil, err
		}
		tags := make([]string, 0, len(links))
		for t := range links {
			tags = append(tags, t)
		}
		sort.Strings(tags)
		out = append(out, listed{name: n, tags: tags, links: links})
	}
	return out, []walk.Error{}, nil
}

type repoGatherer struct {
	w       *walk.Walker
	opts    GatherOptions
	repo    string
	covered bool

	mu        sync.Mutex
	manifests map[string]*manifestFacts
	problems  []walk.Problem
	errs      []walk.Error
}

// manifestFacts is what one manifest (by digest) holds on to.
type manifestFacts struct {
	once     sync.Once
	ok       bool
	blobs    []Blob
	children []string
	created  time.Time
	from     string
}

func (g *repoGatherer) problem(p walk.Problem) {
	g.mu.Lock()
	g.problems = append(g.problems, p)
	g.mu.Unlock()
}

func (g *repoGatherer) fail(tag string, err error) {
	g.mu.Lock()
	g.errs = append(g.errs, walk.Error{Repository: g.repo, Tag: tag, Error: client.Describe(err)})
	g.mu.Unlock()
}

func (g *repoGatherer) gather(ctx context.Context, tags []string, links map[string]gc.TagLink) (RepoFacts, error) {
	rf := RepoFacts{Name: g.repo, Tags: make([]TagFacts, len(tags))}
	eg, ectx := errgroup.WithContext(ctx)
	eg.SetLimit(g.opts.Jobs)
	for i, tag := range tags {
		eg.Go(func() error {
			t := &rf.Tags[i]
			t.Tag = tag
			if l, ok := links[tag]; ok {
				t.Digest, t.Pushed, t.PushedFrom = l.Digest, l.Modified, FromStorage
			} else {
				d, err := g.w.Puller().Head(ectx, g.w.Registry().Repo(g.repo).Tag(tag))
				if err != nil {
					if ectx.Err() != nil {
						return ectx.Err()
					}
					if notFound(err) {
						g.problem(walk.Problem{Repository: g.repo, Tag: tag, Kind: walk.KindManifestMissing,
							Message: "the tag is listed but its manifest is not in the registry; not judged: " + client.Describe(err)})
					} else {
						g.fail(tag, fmt.Errorf("reading the digest of the tag: %w", client.Explain(err)))
					}
					return nil
				}
				t.Digest = d.Digest.String()
			}
			if s, ok := gc.SignatureSubject(tag); ok {
				t.Subject = s
			}
			m := g.manifest(ectx, tag, t.Digest, g.covered && t.PushedFrom == "")
			if !m.ok {
				return nil
			}
			t.Blobs, t.Children = m.blobs, m.children
			if t.PushedFrom == "" && !m.created.IsZero() {
				t.Pushed, t.PushedFrom = m.created, m.from
			}
			return ectx.Err()
		})
	}
	if err := eg.Wait(); err != nil {
		return rf, err
	}
	// Tags that could not be read are not judged (they are in problems or
	// errors).
	out := rf.Tags[:0]
	for _, t := range rf.Tags {
		if t.Digest != "" && t.Blobs != nil {
			out = append(out, t)
		}
	}
	rf.Tags = out
	return rf, nil
}

// manifest reads a manifest once per repository: its blobs (itself, an
// index's children, configs and layers) and, when dated, the date its
// config gives.
func (g *repoGatherer) manifest(ctx context.Context, tag, dg string, dated bool) *manifestFacts {
	g.mu.Lock()
	m := g.manifests[dg]
	if m == nil {
		m = &manifestFacts{}
		g.manifests[dg] = m
	}
	g.mu.Unlock()
	m.once.Do(func() {
		desc, err := g.w.Manifest(ctx, g.repo, dg)
		if err != nil {
			g.readFailed(tag, dg, err)
			return
		}
		m.blobs = []Blob{{dg, desc.Size}}
		if desc.MediaType.IsIndex() {
			im, err := v1.ParseIndexManifest(bytes.NewReader(desc.Manifest))
			if err != nil {
				g.problem(walk.Problem{Repository: g.repo, Tag: tag, Digest: dg, Kind: walk.KindManifestCorrupt, Message: "index does not parse; not judged: " + err.Error()})
				return
			}
			for _, c := range im.Manifests {
				m.children = append(m.children, c.Digest.String())
				cd, err := g.w.Manifest(ctx, g.repo, c.Digest.String())
				if notFound(err) {
					continue // children-absent: inventory and audit report it
				}
				if err != nil {
					g.readFailed(tag, c.Digest.String(), err)
					return
				}
				m.blobs = append(m.blobs, Blob{c.Digest.String(), cd.Size})
				g.image(ctx, m, cd.Manifest, dated)
			}
		} else {
			g.image(ctx, m, desc.Manifest, dated)
		}
		m.ok = true
	})
	return m
}

// image adds an image manifest's config and layers (and date) to m.
func (g *repoGatherer) image(ctx context.Context, m *manifestFacts, raw []byte, dated bool) {
	im, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil || im.Config.Digest.Hex == "" {
		return // a nested index or an unknown artifact: its own bytes only
	}
	m.blobs = append(m.blobs, Blob{im.Config.Digest.String(), im.Config.Size})
	for _, l := range im.Layers {
		m.blobs = append(m.blobs, Blob{l.Digest.String(), l.Size})
	}
	if !dated || (im.Config.MediaType != "application/vnd.oci.image.config.v1+json" && im.Config.MediaType != "application/vnd.docker.container.image.v1+json") {
		return
	}
	cf, err := g.w.Config(ctx, g.repo, im.Config.Digest)
	if err != nil || cf == nil {
		return // the tag is then undated, which keeps it
	}
	t, from := configTime(cf, g.opts.Now)
	if t.After(m.created) {
		m.created, m.from = t, from
	}
}

// configTime is an image's date: its config's created when that is a
// date (audit.ValidTime: not 1970, 1980 or 0001), else the newest dated
// entry of its history; zero when neither.
func configTime(cf *v1.ConfigFile, now time.Time) (time.Time, string) {
	if audit.ValidTime(cf.Created.Time, now) {
		return cf.Created.Time, FromCreated
	}
	var newest time.Time
	for _, h := range cf.History {
		if audit.ValidTime(h.Created.Time, now) && h.Created.Time.After(newest) {
			newest = h.Created.Time
		}
	}
	if newest.IsZero() {
		return newest, ""
	}
	return newest, FromHistory
}

func (g *repoGatherer) readFailed(tag, dg string, err error) {
	switch {
	case notFound(err):
		g.problem(walk.Problem{Repository: g.repo, Tag: tag, Digest: dg, Kind: walk.KindManifestMissing, Message: "manifest " + dg + " is not in the registry; not judged"})
	case walk.StoredCorrupt(err):
		g.problem(walk.Problem{Repository: g.repo, Tag: tag, Digest: dg, Kind: walk.KindManifestCorrupt, Message: "the registry cannot parse manifest " + dg + "; not judged"})
	default:
		g.fail(tag, fmt.Errorf("reading manifest %s: %w", dg, client.Explain(err)))
	}
}

// usage asks the ledger about every tag of a repository whose policy has
// a rule that needs it. A tag the ledger cannot answer for stays unknown,
// which keeps it.
func (g *repoGatherer) usage(rp *RepoPolicy, rf *RepoFacts) {
	var pulls, inUse bool
	var since time.Time
	counted := false
	for _, k := range rp.Keep {
		switch k.Kind {
		case KindMostRecentlyPulled:
			pulls, counted = true, true
		case KindPulledWithin:
			pulls = true
			if s := g.opts.Now.Add(-k.Within); since.IsZero() || s.Before(since) {
				since = s
			}
		case KindInUse:
			inUse = true
		}
	}
	if counted {
		since = time.Time{}
	}
	var failed []string
	for i := range rf.Tags {
		t := &rf.Tags[i]
		if pulls {
			last, known, err := g.opts.Evidence.LastPull(g.repo, t.Tag, since)
			if err != nil {
				failed = append(failed, t.Tag)
				known = false
			}
			t.LastPull, t.PullKnown = last, known
		}
		if inUse {
			in, where, err := g.opts.Evidence.InUse(g.repo, t.Tag, t.Digest)
			if err != nil {
				failed = append(failed, t.Tag)
				continue
			}
			t.InUse, t.InUseWhere, t.InUseKnown = in, where, true
		}
	}
	if len(failed) > 0 {
		g.problem(walk.Problem{Repository: g.repo, Kind: KindUsageUnread,
			Message: fmt.Sprintf("the usage ledger could not answer for %d tags (kept as unknown), first %s", len(failed), failed[0])})
	}
}

func notFound(err error) bool {
	var terr *transport.Error
	return errors.As(err, &terr) && terr.StatusCode == http.StatusNotFound
}
