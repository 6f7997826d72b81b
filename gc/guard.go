// Guards: plans gc refuses to carry out unless told to.

package gc

import (
	"fmt"

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
	var bytes int64
	for _, b := range p.Blobs {
		bytes += b.Size
	}
	size := func(n int, b int64) string { return fmt.Sprintf("%d blobs (%s)", n, output.Bytes(b)) }
	if !p.opts.AllowDeleteAll && s.blobs > 0 {
		switch {
		case len(p.Blobs) == s.blobs:
			return fmt.Errorf("%w: the plan deletes all %s of the storage, which has %d repositories and %d tags: is this the registry's storage root? (--allow-delete-all if this is meant)",
				ErrDeleteAll, size(s.blobs, s.bytes), s.repositories, s.tags)
		case s.tags == 0 && (len(p.Blobs) > 0 || len(p.Manifests) > 0):
			return fmt.Errorf("%w: the storage holds %s in %d repositories and not one tag; the plan deletes %d manifests and %s: is this the registry's storage root? (--allow-delete-all if this is meant)",
				ErrNoTags, size(s.blobs, s.bytes), s.repositories, len(p.Manifests), size(len(p.Blobs), bytes))
		}
	}
	if r := p.opts.MaxDeleteRatio; r > 0 && s.bytes > 0 && float64(bytes) > r*float64(s.bytes) {
		return fmt.Errorf("%w: the plan deletes %s, %.1f%% of the %s in storage, more than --max-delete-ratio %g",
			ErrDeleteRatio, size(len(p.Blobs), bytes), 100*float64(bytes)/float64(s.bytes), output.Bytes(s.bytes), r)
	}
	return nil
}
