// Package report renders the audit report of a registry: totals, storage by
// repository (unique and shared bytes), what gc would reclaim, the audit
// findings worst first, and the base-image lineage. HTML is one
// self-contained file (styles and inline SVG charts, no scripts, no network);
// Markdown carries the same tables.
package report

import (
	"cmp"
	"slices"
	"time"

	"github.com/regkeeper/regkeeper/audit"
	"github.com/regkeeper/regkeeper/gc"
	"github.com/regkeeper/regkeeper/internal/walk"
	"github.com/regkeeper/regkeeper/inventory"
	"github.com/regkeeper/regkeeper/retain"
)

// Data is what a report is made of. GC may be nil (no --config given).
type Data struct {
	Registry  string
	Generated time.Time
	Inventory *inventory.Result
	Audit     *audit.Result
	GC        *gc.Report
	// Retain is a retention plan, when the cycle ran one: what it removes
	// and the bytes gc then frees.
	Retain *retain.Plan
}

// Totals of a registry.
type Totals struct {
	Repositories, Tags, Images int
	// PulledBytes is the sum over tags of what a pull transfers; StoredBytes
	// counts every distinct config and layer once.
	PulledBytes, StoredBytes int64
	Findings                 int
	Reclaimable              int64 // -1 when unknown (no gc plan)
}

// RepoStorage is one repository's storage: bytes of blobs no other
// repository references, and bytes of blobs shared with others.
type RepoStorage struct {
	Repository     string
	Tags           int
	Unique, Shared int64
	Reclaimable    int64 // -1 when unknown
}

// Storage computes storage by repository, largest first, and the totals.
// Each distinct blob (config or layer) of a repository's tags counts once per
// repository; manifests, a few KiB each, are left out.
func (d *Data) Storage() ([]RepoStorage, Totals) {
	type blobUse struct {
		size  int64
		repos map[string]bool
	}
	blobs := map[string]*blobUse{}
	tags := map[string]int{}
	t := Totals{Reclaimable: -1}
	use := func(repo, dg string, size int64) {
		b := blobs[dg]
		if b == nil {
			b = &blobUse{size: size, repos: map[string]bool{}}
			blobs[dg] = b
		}
		b.repos[repo] = true
	}
	for _, img := range d.Inventory.Images {
		tags[img.Repository]++
		t.Tags++
		t.PulledBytes += img.Size
		for _, p := range img.Platforms {
			if p.Manifest == nil {
				continue
			}
			use(img.Repository, p.Manifest.Config.Digest.String(), p.Manifest.Config.Size)
			for _, l := range p.Manifest.Layers {
				use(img.Repository, l.Digest.String(), l.Size)
			}
		}
	}
	per := map[string]*RepoStorage{}
	for repo, n := range tags {
		per[repo] = &RepoStorage{Repository: repo, Tags: n, Reclaimable: -1}
	}
	for _, b := range blobs {
		t.StoredBytes += b.size
		for repo := range b.repos {
			if len(b.repos) == 1 {
				per[repo].Unique += b.size
			} else {
				per[repo].Shared += b.size
			}
		}
	}
	if d.GC != nil {
		t.Reclaimable = d.GC.BytesReclaimed
		for _, r := range d.GC.Repositories {
			if per[r.Name] == nil {
				per[r.Name] = &RepoStorage{Repository: r.Name}
			}
			per[r.Name].Reclaimable = r.BytesReclaimed
		}
		for _, p := range per {
			if p.Reclaimable < 0 {
				p.Reclaimable = 0
			}
		}
	}
	t.Repositories = len(per)
	if d.Audit != nil {
		t.Images = len(d.Audit.Images)
		_, t.Findings = d.Audit.Counts()
	}
	out := make([]RepoStorage, 0, len(per))
	for _, p := range per {
		out = append(out, *p)
	}
	slices.SortFunc(out, func(a, b RepoStorage) int {
		if c := cmp.Compare(b.Unique+b.Shared, a.Unique+a.Shared); c != 0 {
			return c
		}
		return cmp.Compare(a.Repository, b.Repository)
	})
	return out, t
}

// Problems lists what is broken in the registry, of what the audit
// selected (or, without an audit, of the whole inventory).
func (d *Data) Problems() []walk.Problem {
	if d.Audit != nil {
		return d.Audit.Problems
	}
	if d.Inventory != nil {
		return d.Inventory.Problems
	}
	return nil
}

// Findings lists the audit's findings, worst first, the most used first
// within a reason when the audit read a usage ledger (none without an audit).
func (d *Data) Findings() []audit.Finding {
	if d.Audit == nil {
		return nil
	}
	return d.Audit.FindingsByUse()
}
