// The re-scan: after the settle, every push written since the run began is
// made whole (sweep.go says why this is enough).

package gc

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
)

// rescan reads every repository (those created during the run too) for
// links written at or after the quarantine's since time, and repairs what
// they name: blobs back from the quarantine, revision and layer links
// written again.
func (s *sweep) rescan(ctx context.Context) error {
	if !s.q.active() || removed.rescan || (!s.sweptAnything() && !s.q.leftover) {
		return nil
	}
	names, err := listRepositories(ctx, s.d, s.opts.Jobs)
	if err != nil {
		return fmt.Errorf("re-scan: %w", err)
	}
	scans := make([]*repoScan, len(names))
	err = forEach(ctx, s.opts.Jobs, len(names), func(i int) error {
		sc, err := scanRepository(ctx, s.d, nil, names[i], false)
		if err != nil {
			return fmt.Errorf("re-scan of %s: %w", names[i], err)
		}
		scans[i] = sc
		return nil
	})
	if err != nil {
		return err
	}
	s.pause("rescan")
	r := &repairer{s: s}
	return forEach(ctx, s.opts.Jobs, len(names), func(i int) error {
		return r.repo(ctx, names[i], scans[i])
	})
}

// repairer makes young references whole.
type repairer struct {
	s  *sweep
	mu sync.Mutex // serialises restores, so that two repositories needing one blob move it once
}

// rescanItem is a manifest a young reference needs in a repository.
type rescanItem struct {
	dg digest.Digest
	// tagged: a young tag link names it, so its revision link must exist.
	tagged bool
	// child of a needed index.
	child bool
}

// repo repairs one repository.
func (r *repairer) repo(ctx context.Context, repo string, sc *repoScan) error {
	s := r.s
	since := s.q.since
	young := func(t time.Time) bool { return !t.Before(since) }
	var work []rescanItem
	for tag, mt := range sc.current {
		if !young(mt) {
			continue
		}
		b, err := s.d.GetContent(ctx, pathFor(tagCurrentSpec{repo, tag}))
		if err != nil {
			if isNotFound(err) {
				continue
			}
			return fmt.Errorf("re-scan: reading tag %s of %s: %w", tag, repo, err)
		}
		if dg, err := digest.Parse(strings.TrimSpace(string(b))); err == nil {
			work = append(work, rescanItem{dg: dg, tagged: true})
		}
	}
	for _, hist := range sc.history {
		for dg, mt := range hist {
			if young(mt) {
				work = append(work, rescanItem{dg: dg})
			}
		}
	}
	for dg, mt := range sc.revisions {
		if young(mt) {
			work = append(work, rescanItem{dg: dg})
		}
	}
	for dg, mt := range sc.layers {
		if young(mt) {
			if _, err := r.need(ctx, dg); err != nil {
				return err
			}
		}
	}
	seen := map[digest.Digest]bool{}
	for len(work) > 0 {
		it := work[0]
		work = work[1:]
		if seen[it.dg] {
			continue
		}
		seen[it.dg] = true
		_, linked := sc.revisions[it.dg]
		s.mu.Lock()
		deletedHere := s.deleted[repo][it.dg]
		s.mu.Unlock()
		// A manifest named only by a young history entry, or a child the
		// repository never had (an index-only copy), is not made to exist.
		if !linked && !it.tagged && !deletedHere && !(it.child && s.q.leftover) {
			continue
		}
		present, err := r.need(ctx, it.dg)
		if err != nil {
			return err
		}
		if !present {
			s.opts.Logger.Warn("gc: re-scan: a young reference names a manifest absent from storage", "repository", repo, "digest", it.dg)
			continue
		}
		if !linked {
			if err := r.link(ctx, pathFor(revisionLinkSpec{repo, it.dg}), it.dg); err != nil {
				return err
			}
			sc.revisions[it.dg] = since
		}
		pm, _, err := readManifest(ctx, s.d, nil, it.dg)
		if err != nil && !isNotFound(err) {
			return fmt.Errorf("re-scan: reading manifest %s of %s: %w", it.dg, repo, err)
		}
		if pm == nil {
			continue
		}
		for _, b := range pm.blobs() {
			present, err := r.need(ctx, b)
			if err != nil {
				return err
			}
			if _, ok := sc.layers[b]; ok || !present {
				continue
			}
			// The registry accepted this manifest in this repository, so
			// the blob was linked here when it checked.
			if err := r.link(ctx, pathFor(layerLinkSpec{repo, b}), b); err != nil {
				return err
			}
			sc.layers[b] = since
		}
		for _, c := range pm.Manifests {
			work = append(work, rescanItem{dg: c.Digest, child: true})
		}
	}
	return nil
}

// need makes dg's data present in blobs/ if the quarantine holds it, and
// tells whether it is present.
func (r *repairer) need(ctx context.Context, dg digest.Digest) (bool, error) {
	s := r.s
	if s.q.holds(dg) {
		r.mu.Lock()
		ok, err := s.q.restore(ctx, dg)
		r.mu.Unlock()
		if err != nil {
			return false, err
		}
		if ok {
			s.count(func() { s.r.BlobsRestored++ })
		}
	}
	_, err := s.d.Stat(ctx, pathFor(blobDataSpec{dg}))
	switch {
	case err == nil:
		return true, nil
	case isNotFound(err):
		return false, nil
	}
	return false, fmt.Errorf("re-scan: %w", err)
}

// link writes a link as the registry writes it: the digest, nothing else.
func (r *repairer) link(ctx context.Context, p string, dg digest.Digest) error {
	if err := r.s.d.PutContent(ctx, p, []byte(dg.String())); err != nil {
		return fmt.Errorf("re-scan: writing %s: %w", p, err)
	}
	r.s.count(func() { r.s.r.LinksRestored++ })
	r.s.opts.Logger.Info("gc: link written again for a push during the run", "path", p)
	return nil
}
