// What the grace spared: the manifests and blobs a run with no grace would
// have deleted beyond this plan.

package gc

import (
	"context"
	"fmt"
	"log/slog"

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
// PlanGC calls it only when something was young.
func (p *Plan) graceSpared(ctx context.Context, cache *manifestCache, repos []*repoState, blobs blobList) spared {
	if p.opts.Grace <= 0 {
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
	markAll(ctx, cache, shadow, quiet, func(int64) bool { return false })

	var s spared
	ids := cache.ids
	live := newIDBits(ids.len())
	for _, r := range shadow {
		for _, id := range r.markedBlob {
			live.add(id)
		}
		r.markedBlob = nil
		planned := make(map[uint32]struct{}, len(r.deleted))
		for _, id := range r.deleted {
			planned[id] = struct{}{}
		}
		for _, rv := range r.revisions {
			if _, ok := planned[rv.id]; !r.isMarked(rv.id) && !ok {
				s.manifests++
			}
		}
	}
	i := -1
	blobs.each(func(b *blobInfo) {
		i++
		isLive := ids.isLive(live, i, b.s)
		isDeleted := p.blobs.state != nil && p.blobs.state[i] != keptBlob
		if !isLive && !isDeleted {
			s.blobs++
			s.bytes += b.size
		}
	})
	return s
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
