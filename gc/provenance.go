// Provenance: an untagged manifest a live image names as its base is live.

package gc

import (
	"context"
	"strings"

	"github.com/opencontainers/go-digest"
)

// Annotations of the OCI image spec naming an image's base. audit reads
// them from the platform manifest, or from the index holding it; it does
// not read them from config labels, so neither does gc.
const (
	annotationBaseName   = "org.opencontainers.image.base.name"
	annotationBaseDigest = "org.opencontainers.image.base.digest"
)

// baseAnnotations are the only annotations gc reads from a manifest (the
// JSON decoder drops the others, so they cost no memory).
type baseAnnotations struct {
	Name   string        `json:"org.opencontainers.image.base.name"`
	Digest digest.Digest `json:"org.opencontainers.image.base.digest"`
}

// baseRepositories are the repository paths an annotation's base name can
// mean on this storage: the name without its tag or digest, without its
// registry host when it has one, and with it ("registry.example.com/base/debian:12"
// is base/debian, or registry.example.com/base/debian in a storage that
// keeps hosts in paths); a one-part name is also library/NAME, as Docker
// Hub's official images.
func baseRepositories(name string) []string {
	name, _, _ = strings.Cut(name, "@")
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		name = name[:i]
	}
	name = strings.Trim(name, "/")
	if name == "" {
		return nil
	}
	out := []string{name}
	host, rest, ok := strings.Cut(name, "/")
	if ok && (strings.ContainsAny(host, ".:") || host == "localhost") {
		out = []string{rest, name}
	} else {
		host, rest = "", name
	}
	// Docker Hub's official images: "debian" is library/debian (as a
	// pull-through cache stores it).
	if !strings.Contains(rest, "/") && (host == "" || host == "docker.io" || host == "index.docker.io" || host == "registry-1.docker.io") {
		out = append(out, "library/"+rest)
	}
	return out
}

// markRepo marks one repository, pruning orphan signature tags (when
// asked) until nothing changes: pruning can unroot manifests, which can
// orphan more tags.
func markRepo(ctx context.Context, cache *manifestCache, r *repoState, pruned map[string]bool, opts Options, young func(int64) bool) {
	for {
		mark(ctx, cache, r, pruned, opts, young)
		if !opts.PruneOrphanSignatures {
			return
		}
		more := false
		for tag := range r.tags {
			if pruned[tag] {
				continue
			}
			if subj, ok := signatureSubject(tag); ok && !markedDigest(cache.ids, r, subj) {
				pruned[tag] = true
				more = true
			}
		}
		if !more {
			return
		}
	}
}

// markAll marks every repository (markRepo), then, unless opts.NoKeepBases,
// keeps the bases of live images: an untagged manifest that a marked
// manifest names by org.opencontainers.image.base.digest, in a repository
// whose path matches its org.opencontainers.image.base.name, becomes a
// root of that repository, which is marked again (with its config, its
// layers, its children and its referrers). A kept base may name a base of
// its own: repeat until nothing changes. It returns the tags pruned per
// repository and the manifests kept only because of the bases rule.
func markAll(ctx context.Context, cache *manifestCache, repos []*repoState, opts Options, young func(int64) bool) (map[string]map[string]bool, []BlobRef) {
	pruned := map[string]map[string]bool{}
	byName := map[string]*repoState{}
	for _, r := range repos {
		byName[r.name] = r
		pruned[r.name] = map[string]bool{}
		markRepo(ctx, cache, r, pruned[r.name], opts, young)
	}
	if opts.NoKeepBases {
		return pruned, nil
	}
	before := map[string]idSet{} // marks before the rule, per repository it touched
	for {
		touched := map[*repoState]bool{}
		for _, r := range repos {
			for _, id := range r.marked {
				mi := r.revisions.get(id)
				if mi == nil || mi.node == nil || mi.node.base() == nil {
					continue
				}
				ann := mi.node.base()
				for _, name := range baseRepositories(ann.name) {
					br := byName[name]
					if br == nil || br.isMarked(ann.digest) || br.revisions.get(ann.digest) == nil {
						continue
					}
					if br.baseRoots == nil {
						br.baseRoots = map[uint32]struct{}{}
					}
					br.baseRoots[ann.digest] = struct{}{}
					touched[br] = true
				}
			}
		}
		if len(touched) == 0 {
			break
		}
		for _, r := range repos { // in order, so that runs agree
			if !touched[r] {
				continue
			}
			if _, ok := before[r.name]; !ok {
				before[r.name] = r.marked // mark makes a new slice
			}
			// More roots can only save signature tags pruned before.
			pruned[r.name] = map[string]bool{}
			markRepo(ctx, cache, r, pruned[r.name], opts, young)
		}
	}
	var kept []BlobRef
	for _, r := range repos {
		b, ok := before[r.name]
		if !ok {
			continue
		}
		var added []uint32
		for _, id := range r.marked {
			if !b.has(id) {
				added = append(added, id)
			}
		}
		cache.ids.sortBySum(added)
		for _, id := range added {
			kept = append(kept, BlobRef{r.name, cache.ids.digest(id)})
			opts.Logger.Info("gc: kept as the base of a live image", "repository", r.name, "digest", kept[len(kept)-1].Digest)
		}
	}
	return pruned, kept
}

// markedDigest: is the manifest dg marked in r (false for a digest that
// is not sha256, which r cannot hold)?
func markedDigest(ids *idTable, r *repoState, dg digest.Digest) bool {
	id, ok := ids.lookupDigest(dg)
	return ok && r.isMarked(id)
}

// annotate adds to a report what the plan kept and why: the facts of the
// plan that a dry run and a real run report alike.
func (p *Plan) annotate(r *Report) {
	if r == nil {
		return
	}
	r.ManifestsKeptAsBase, r.KeptAsBase = len(p.keptAsBase), p.keptAsBase
	r.ManifestsSparedByGrace, r.BlobsSparedByGrace, r.BytesSparedByGrace = p.spared.manifests, p.spared.blobs, p.spared.bytes
	r.Grace = p.opts.Grace
}
