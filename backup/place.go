package backup

import (
	"fmt"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// KindUntagged is a restore entry pushed by digest only: an index.json
// entry with no name at all, restored into RestoreOptions.Repository.
const KindUntagged = "untagged"

// Mapping moves a repository prefix on restore: Old "team-a" with New
// "archive/team-a" restores team-a/api as archive/team-a/api. A prefix
// matches whole path components only.
type Mapping struct {
	Old, New string
}

// ParseMapping reads OLD=NEW.
func ParseMapping(s string) (Mapping, error) {
	oldp, newp, ok := strings.Cut(s, "=")
	oldp, newp = strings.Trim(oldp, "/"), strings.Trim(newp, "/")
	if !ok || oldp == "" || newp == "" {
		return Mapping{}, fmt.Errorf("%q: want OLD=NEW, two repository prefixes", s)
	}
	for _, p := range []string{oldp, newp} {
		if _, err := name.NewRepository("example.invalid/"+p, name.StrictValidation); err != nil {
			return Mapping{}, fmt.Errorf("%q: %q is not a repository name", s, p)
		}
	}
	return Mapping{Old: oldp, New: newp}, nil
}

// mapRepository applies the mapping with the longest matching prefix.
func mapRepository(maps []Mapping, repo string) string {
	best := -1
	for i, m := range maps {
		if (repo == m.Old || strings.HasPrefix(repo, m.Old+"/")) && (best < 0 || len(m.Old) > len(maps[best].Old)) {
			best = i
		}
	}
	if best < 0 {
		return repo
	}
	return maps[best].New + strings.TrimPrefix(repo, maps[best].Old)
}

// parseRefName splits an org.opencontainers.image.ref.name as OCI layout
// writers set it: "host/repo:tag" (crane pull --annotate-ref), "repo:tag"
// (skopeo, regkeeper) or a bare "tag" (regctl, oras, skopeo); repo is ""
// for a bare tag. A leading component that is a host (it has a "." or a
// ":", or is localhost, as in Docker's reference grammar) is dropped: the
// image goes to the registry restore is given.
func parseRefName(s string) (repo, tag string, err error) {
	if strings.Contains(s, "@") {
		return "", "", fmt.Errorf("ref.name %q names a digest, not a tag", s)
	}
	slash, colon := strings.LastIndex(s, "/"), strings.LastIndex(s, ":")
	switch {
	case colon > slash:
		repo, tag = s[:colon], s[colon+1:]
	case slash < 0:
		tag = s
	default:
		return "", "", fmt.Errorf("ref.name %q has no tag", s)
	}
	if first, rest, ok := strings.Cut(repo, "/"); ok && (strings.ContainsAny(first, ".:") || first == "localhost") {
		repo = rest
	}
	check := repo
	if check == "" {
		check = "x"
	}
	if _, err := name.NewTag("example.invalid/"+check+":"+tag, name.StrictValidation); err != nil {
		return "", "", fmt.Errorf("ref.name %q is not a repository and tag: %v", s, err)
	}
	return repo, tag, nil
}

// placed is an index.json entry and where restore puts it.
type placed struct {
	Entry
	// source is the repository the layout names (before --map), which
	// --repo selects; repo is where it goes.
	source, repo, tag, kind string
	// subject of a referrer.
	subject v1.Hash
}

// manifestCache reads each manifest of a layout once.
type manifestCache struct {
	l Layout
	m map[v1.Hash]cachedManifest
}

type cachedManifest struct {
	raw  []byte
	refs refs
	err  error
}

func (c *manifestCache) get(d v1.Descriptor) cachedManifest {
	if m, ok := c.m[d.Digest]; ok {
		return m
	}
	if c.m == nil {
		c.m = map[v1.Hash]cachedManifest{}
	}
	var m cachedManifest
	m.raw, m.err = c.l.ReadBlob(d.Digest)
	if m.err == nil {
		m.refs, m.err = parseRefs(d.MediaType, m.raw)
	}
	if m.err != nil {
		m.err = fmt.Errorf("manifest %s: %w", d.Digest, m.err)
	}
	c.m[d.Digest] = m
	return m
}

// reach calls fn for d and every manifest below it (index children), each
// once; absent children are skipped.
func (c *manifestCache) reach(d v1.Descriptor, absent map[v1.Hash]bool, fn func(v1.Hash)) {
	seen := map[v1.Hash]bool{}
	var walk func(d v1.Descriptor)
	walk = func(d v1.Descriptor) {
		if seen[d.Digest] || absent[d.Digest] {
			return
		}
		seen[d.Digest] = true
		fn(d.Digest)
		for _, ch := range c.get(d).refs.Children {
			walk(ch)
		}
	}
	walk(d)
}

// placeEntries decides where each index.json entry is restored:
//
//  1. regkeeper's own annotations (io.regkeeper.repository, .tag,
//     .subject), when present;
//  2. else org.opencontainers.image.ref.name, a full reference or a
//     repo:tag, or a bare tag that goes to opts.Repository;
//  3. else (no name at all) a manifest already reached from a named entry
//     (an index child that oras lists) is restored with it; one whose
//     subject is restored is a referrer, restored beside its subject (all
//     of them, if the subject goes to several repositories); anything else
//     is pushed by digest into opts.Repository, or, without it, reported.
//
// Names from the layout go through opts.Map.
func placeEntries(c *manifestCache, entries []Entry, opts RestoreOptions) ([]placed, []Error) {
	var out []placed
	var errs []Error
	var unnamed, unplaced []Entry
	for _, e := range entries {
		p := placed{Entry: e}
		refName := e.Annotations[AnnotationRefName]
		switch {
		case e.Repository() != "":
			p.source, p.tag, p.kind = e.Repository(), e.Tag(), e.Kind()
			if p.kind == KindReferrer {
				s, err := v1.NewHash(e.Annotations[AnnotationSubject])
				if err != nil {
					errs = append(errs, Error{Repository: p.source, Digest: e.Digest.String(), Error: fmt.Sprintf("referrer with an invalid %s annotation: %v", AnnotationSubject, err)})
					continue
				}
				p.subject = s
			}
			p.repo = mapRepository(opts.Map, p.source)
		case refName != "":
			repo, tag, err := parseRefName(refName)
			if err != nil {
				errs = append(errs, Error{Digest: e.Digest.String(), Error: err.Error()})
				unplaced = append(unplaced, e)
				continue
			}
			p.tag, p.kind = tag, KindTag
			if repo == "" {
				if opts.Repository == "" {
					errs = append(errs, Error{Digest: e.Digest.String(),
						Error: fmt.Sprintf("entry %q is a bare tag: give --repository to say which repository it belongs to", refName)})
					unplaced = append(unplaced, e)
					continue
				}
				p.source, p.repo = opts.Repository, opts.Repository
			} else {
				p.source, p.repo = repo, mapRepository(opts.Map, repo)
			}
		default:
			unnamed = append(unnamed, e)
			continue
		}
		out = append(out, p)
	}
	if len(unnamed) == 0 {
		return out, errs
	}

	// Where each manifest reached from a placed entry goes.
	where := map[v1.Hash]map[string]bool{}
	mark := func(p placed) {
		c.reach(p.Descriptor, p.Absent(), func(d v1.Hash) {
			if where[d] == nil {
				where[d] = map[string]bool{}
			}
			where[d][p.repo] = true
		})
	}
	for _, p := range out {
		mark(p)
	}
	// What only reported entries reach is not reported again.
	reported := map[v1.Hash]bool{}
	for _, e := range unplaced {
		c.reach(e.Descriptor, nil, func(d v1.Hash) { reported[d] = true })
	}
	// Referrers of referrers: place level by level until nothing moves.
	pending := unnamed
	for {
		var rest []Entry
		moved := false
		for _, e := range pending {
			if len(where[e.Digest]) > 0 || reported[e.Digest] {
				moved = true // restored (or reported) with the entry that reaches it
				continue
			}
			m := c.get(e.Descriptor)
			if m.err != nil {
				errs = append(errs, Error{Digest: e.Digest.String(), Error: m.err.Error()})
				moved = true
				continue
			}
			ri, ok := parseReferrer(e.Descriptor, m.raw)
			if ok && len(where[ri.Subject]) == 0 && reported[ri.Subject] {
				// A referrer of a reported entry goes (or not) with it.
				c.reach(e.Descriptor, nil, func(d v1.Hash) { reported[d] = true })
				moved = true
				continue
			}
			if !ok || len(where[ri.Subject]) == 0 {
				rest = append(rest, e)
				continue
			}
			repos := make([]string, 0, len(where[ri.Subject]))
			for r := range where[ri.Subject] {
				repos = append(repos, r)
			}
			sort.Strings(repos)
			for _, r := range repos {
				p := placed{Entry: e, source: r, repo: r, kind: KindReferrer, subject: ri.Subject}
				out = append(out, p)
				mark(p)
			}
			moved = true
		}
		pending = rest
		if !moved || len(pending) == 0 {
			break
		}
	}
	for _, e := range pending {
		if opts.Repository == "" {
			errs = append(errs, Error{Digest: e.Digest.String(),
				Error: fmt.Sprintf("entry %s has no name (neither %s nor %s) and is not part of a named image: not restored; --repository REPO pushes it there by digest", e.Digest, AnnotationRepository, AnnotationRefName)})
			continue
		}
		p := placed{Entry: e, source: opts.Repository, repo: opts.Repository, kind: KindUntagged}
		if ri, ok := parseReferrer(e.Descriptor, c.get(e.Descriptor).raw); ok {
			p.kind, p.subject = KindReferrer, ri.Subject
		}
		out = append(out, p)
	}
	return out, errs
}
