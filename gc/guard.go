// Guards: plans gc refuses to carry out unless told to.

package gc

import (
	"fmt"
	"math"
	"strconv"

	"github.com/regkeeper/regkeeper/internal/output"
)

// storageSize is what the storage holds when the plan is made.
type storageSize struct {
	repositories, tags, blobs int
	bytes                     int64
}

func storageTotals(repos []*repoState, blobs blobList) storageSize {
	s := storageSize{repositories: len(repos), blobs: blobs.len()}
	for _, r := range repos {
		s.tags += len(r.tags)
	}
	blobs.each(func(b *blobInfo) { s.bytes += b.size })
	return s
}

// guard refuses a plan that deletes every blob of the storage, or that
// deletes anything from a storage with blobs but no tag (what a --root
// that is not the registry's root, or a lost repositories/ directory,
// looks like), unless opts.AllowDeleteAll; and, with opts.MaxDeleteRatio,
// a plan that deletes a larger share of the bytes.
func (p *Plan) guard() error {
	s := p.storage
	bytes, blobs := p.blobBytes(), p.blobCount()
	size := func(n int, b int64) string { return fmt.Sprintf("%d blobs (%s)", n, output.Bytes(b)) }
	if !p.opts.AllowDeleteAll && s.blobs > 0 {
		switch {
		case blobs == s.blobs:
			return fmt.Errorf("%w: the plan deletes all %s of the storage, which has %d repositories and %d tags: is this the registry's storage root? (--allow-delete-all if this is meant)",
				ErrDeleteAll, size(s.blobs, s.bytes), s.repositories, s.tags)
		case s.tags == 0 && (blobs > 0 || len(p.Manifests) > 0):
			return fmt.Errorf("%w: the storage holds %s in %d repositories and not one tag; the plan deletes %d manifests and %s: is this the registry's storage root? (--allow-delete-all if this is meant)",
				ErrNoTags, size(s.blobs, s.bytes), s.repositories, len(p.Manifests), size(blobs, bytes))
		}
	}
	if r, share := p.opts.maxDeleteRatio(), p.deleteRatio(); r > 0 && share > r {
		return fmt.Errorf("%w: the plan deletes %s, %.1f%% of the %s in storage, more than --max-delete-ratio %g%s. "+
			"A weekly run on a healthy registry stays far below that; this much is either a first collection of a registry "+
			"never collected (then run once with --max-delete-ratio %s) or repositories missing from the storage "+
			"(a partial mount, a half-done restore: mend the storage first). Nothing was deleted",
			ErrDeleteRatio, size(blobs, bytes), 100*share, output.Bytes(s.bytes), r, defaultNote(r), ratioAbove(share))
	}
	return nil
}

// maxDeleteRatio is the limit of Options.MaxDeleteRatio: 0 (none) for 0,
// or for 1 and above.
func (o Options) maxDeleteRatio() float64 {
	if o.MaxDeleteRatio <= 0 || o.MaxDeleteRatio >= 1 {
		return 0
	}
	return o.MaxDeleteRatio
}

func defaultNote(r float64) string {
	if r == DefaultMaxDeleteRatio {
		return " (the default)"
	}
	return ""
}

// ratioAbove is the smallest limit in steps of 0.05 that lets a plan
// deleting this share pass: what to pass when the plan is meant.
func ratioAbove(share float64) string {
	r := math.Ceil(share*20) / 20
	if r >= 1 {
		return "1"
	}
	return strconv.FormatFloat(r, 'f', -1, 64)
}
