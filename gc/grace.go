// What the grace spared: the manifests and blobs a run with no grace would
// have deleted beyond this plan.

package gc

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regkeeper/regkeeper/internal/output"
)

// spared is what the grace kept that a run with no grace would delete.
type spared struct {
	manifests, blobs int
	bytes            int64
}

// graceSpared marks again, in memory, as if there were no grace, and
// counts what that plan would delete beyond p: manifests, and blobs with
// their bytes. Nothing is read from storage (absent children come from the
// cache). Grace only adds roots, so the no-grace plan deletes a superset.
func (p *Plan) graceSpared(ctx context.Context, cache *manifestCache, repos []*repoState, blobs []blobInfo, young func(time.Time) bool) spared {
	if p.opts.Grace <= 0 || !anythingYoung(repos, blobs, young) {
		return spared{}
	}
	shadow := make([]*repoState, len(repos))
	for i, r := range repos {
		c := *r // mark replaces marked, markedBlob and kept; baseRoots start over
		c.baseRoots = nil
		shadow[i] = &c
	}
	quiet := p.opts
	quiet.Logger = slog.New(slog.DiscardHandler)
	markAll(ctx, cache, shadow, quiet, func(time.Time) bool { return false })

	var s spared
	planned := map[string]bool{}
	for _, m := range p.Manifests {
		planned[m.Repository+"@"+m.Digest.String()] = true
	}
	live := map[digest.Digest]bool{}
	for _, r := range shadow {
		for dg := range r.markedBlob {
			live[dg] = true
		}
		for dg := range r.revisions {
			if !r.marked[dg] && !planned[r.name+"@"+dg.String()] {
				s.manifests++
			}
		}
	}
	deleted := make(map[digest.Digest]bool, len(p.Blobs))
	for _, b := range p.Blobs {
		deleted[b.Digest] = true
	}
	for _, b := range blobs {
		if !live[b.digest] && !deleted[b.digest] {
			s.blobs++
			s.bytes += b.size
		}
	}
	return s
}

func anythingYoung(repos []*repoState, blobs []blobInfo, young func(time.Time) bool) bool {
	for _, b := range blobs {
		if young(b.modTime) {
			return true
		}
	}
	for _, r := range repos {
		if anyYoung(r.layers, young) {
			return true
		}
		for _, mi := range r.revisions {
			if young(mi.modTime) {
				return true
			}
		}
	}
	return false
}

// GraceNote is one line on what the grace spared, "" when it spared
// nothing; when the grace is why nothing was deleted, the line says so.
func (r *Report) GraceNote() string {
	if r.ManifestsSparedByGrace == 0 && r.BlobsSparedByGrace == 0 {
		return ""
	}
	what := fmt.Sprintf("%d manifests and %d blobs (%s)", r.ManifestsSparedByGrace, r.BlobsSparedByGrace, output.Bytes(r.BytesSparedByGrace))
	grace := "the grace"
	if r.Grace > 0 {
		grace = "the " + r.Grace.String() + " grace"
	}
	if r.ManifestsDeleted == 0 && r.BlobsDeleted == 0 {
		verb := "nothing deleted"
		if r.DryRun {
			verb = "nothing would be deleted"
		}
		return fmt.Sprintf("%s: %s that nothing references are younger than %s (--grace); a later run collects them", verb, what, grace)
	}
	return fmt.Sprintf("spared by %s (--grace): %s written too recently", grace, what)
}
