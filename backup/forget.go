package backup

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"sort"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sync/errgroup"

	"github.com/regkeeper/regkeeper/gc"
	"github.com/regkeeper/regkeeper/internal/client"
)

// ExpirePolicy says which snapshots forget keeps, as restic's forget does:
// the Last newest, and the newest of each of the Daily latest days, Weekly
// latest ISO weeks and Monthly latest months (UTC) that have one. A
// snapshot kept by any rule is kept. Only complete snapshots count; an
// unfinished run's snapshot is kept while it is newer than the latest
// complete one, and dropped once a complete run supersedes it.
type ExpirePolicy struct {
	Last, Daily, Weekly, Monthly int
}

// Empty reports whether the policy keeps nothing: forget refuses it.
func (p ExpirePolicy) Empty() bool {
	return p.Last <= 0 && p.Daily <= 0 && p.Weekly <= 0 && p.Monthly <= 0
}

// Decision is what the policy did with one snapshot, and why.
type Decision struct {
	SnapshotInfo
	Keep bool `json:"keep"`
	// Reasons: the rules that keep it ("last", "daily 2026-12-05",
	// "weekly 2026-W49", "monthly 2026-12", "unfinished, newer than the
	// latest complete"), or why it goes.
	Reasons []string `json:"reasons"`
}

// ApplyPolicy judges snaps (any order) by p and returns a decision for
// each, newest first. It does no I/O.
func ApplyPolicy(snaps []*Snapshot, p ExpirePolicy) []Decision {
	sorted := append([]*Snapshot(nil), snaps...)
	sort.SliceStable(sorted, func(i, j int) bool {
		if sorted[i].Seq != sorted[j].Seq {
			return sorted[i].Seq > sorted[j].Seq
		}
		return sorted[i].Time.After(sorted[j].Time)
	})
	type rule struct {
		name  string
		left  int
		key   func(time.Time) string
		lastK string
	}
	rules := []*rule{
		{name: "last", left: p.Last, key: func(t time.Time) string { return "" }},
		{name: "daily", left: p.Daily, key: func(t time.Time) string { return t.UTC().Format("2006-01-02") }},
		{name: "weekly", left: p.Weekly, key: func(t time.Time) string {
			y, w := t.UTC().ISOWeek()
			return fmt.Sprintf("%04d-W%02d", y, w)
		}},
		{name: "monthly", left: p.Monthly, key: func(t time.Time) string { return t.UTC().Format("2006-01") }},
	}
	out := make([]Decision, 0, len(sorted))
	seenComplete := false
	for _, s := range sorted {
		d := Decision{SnapshotInfo: s.Info(), Reasons: []string{}}
		if !s.Complete() {
			if seenComplete {
				d.Reasons = append(d.Reasons, "unfinished run, superseded by a later complete one")
			} else {
				d.Keep = true
				d.Reasons = append(d.Reasons, "unfinished run, newer than the latest complete")
			}
			out = append(out, d)
			continue
		}
		seenComplete = true
		for _, r := range rules {
			if r.left <= 0 {
				continue
			}
			k := r.key(s.Time)
			if r.name == "last" || k != r.lastK {
				r.lastK = k
				r.left--
				d.Keep = true
				if k == "" {
					d.Reasons = append(d.Reasons, r.name)
				} else {
					d.Reasons = append(d.Reasons, r.name+" "+k)
				}
			}
		}
		if !d.Keep {
			d.Reasons = append(d.Reasons, "no rule keeps it")
		}
		out = append(out, d)
	}
	return out
}

// ForgetOptions for Forget.
type ForgetOptions struct {
	Policy ExpirePolicy
	// Prune deletes the blobs no kept snapshot needs, and the index.json
	// entries of no kept snapshot.
	Prune bool
	// DryRun plans and changes nothing.
	DryRun bool
	// Jobs is the number of delete requests at once; 0 means
	// client.DefaultJobs.
	Jobs   int
	Logger *slog.Logger
}

// ForgetResult is the plan, and with DryRun unset what was done.
type ForgetResult struct {
	DryRun    bool       `json:"dryRun"`
	Snapshots []Decision `json:"snapshots"`
	Kept      int        `json:"kept"`
	Removed   int        `json:"removed"`
	// Prune is nil without --prune.
	Prune *PrunePlan `json:"prune"`
}

// PrunePlan is what prune deletes and keeps.
type PrunePlan struct {
	// Blobs and Bytes are deleted: no kept snapshot needs them.
	Blobs int   `json:"blobs"`
	Bytes int64 `json:"bytes"`
	// KeptBlobs and KeptBytes stay.
	KeptBlobs int   `json:"keptBlobs"`
	KeptBytes int64 `json:"keptBytes"`
	// EntriesDropped are the index.json entries (repo:tag, history,
	// referrers) of no kept snapshot, removed from index.json.
	EntriesDropped []string `json:"entriesDropped"`

	deleteBlobs []v1.Hash
	newIndex    []v1.Descriptor
}

// Forget applies opts.Policy to the snapshots of the backup at dir and
// deletes those it does not keep; with opts.Prune it then rewrites
// index.json to the entries of the kept snapshots and deletes every blob
// none of them needs. Plan first: a kept manifest that cannot be read
// stops the prune before anything is deleted. Holds the backup's lock.
func Forget(ctx context.Context, dir string, opts ForgetOptions) (*ForgetResult, error) {
	return ForgetLayout(ctx, Layout{Root: dir}, opts)
}

// ForgetLayout is Forget on a layout anywhere (OpenTarget).
func ForgetLayout(ctx context.Context, l Layout, opts ForgetOptions) (*ForgetResult, error) {
	if opts.Policy.Empty() {
		return nil, errors.New("forget needs a policy: at least one of keep-last, keep-daily, keep-weekly, keep-monthly")
	}
	if err := l.Check(); err != nil {
		return nil, err
	}
	unlock, err := l.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	snaps, err := l.ReadSnapshots()
	if err != nil {
		return nil, err
	}
	if len(snaps) == 0 {
		return nil, fmt.Errorf("%w: %s has no snapshots (a backup made before regkeeper recorded its runs?); run a backup first", ErrNoSnapshot, l)
	}
	res := &ForgetResult{DryRun: opts.DryRun, Snapshots: ApplyPolicy(snaps, opts.Policy)}
	byID := map[string]*Snapshot{}
	for _, s := range snaps {
		byID[s.ID] = s
	}
	var kept []*Snapshot
	for _, d := range res.Snapshots {
		if d.Keep {
			res.Kept++
			kept = append(kept, byID[d.ID])
		} else {
			res.Removed++
		}
	}
	if opts.Prune {
		if res.Prune, err = planPrune(ctx, l, kept); err != nil {
			return nil, err
		}
	}
	if opts.DryRun {
		return res, nil
	}
	// Snapshots first, then index.json, then blobs: a run killed between
	// two steps leaves a valid layout, and blobs that the next prune
	// deletes.
	for _, d := range res.Snapshots {
		if !d.Keep {
			if err := l.remove(l.SnapshotFile(d.ID)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return res, fmt.Errorf("removing snapshot %s: %w", d.ID, err)
			}
		}
	}
	if err := l.syncDir(l.SnapshotsDir()); err != nil {
		return res, fmt.Errorf("syncing %s: %w", l.SnapshotsDir(), err)
	}
	if res.Prune == nil {
		return res, nil
	}
	idx := &index{entries: res.Prune.newIndex}
	if err := idx.write(l); err != nil {
		return res, err
	}
	return res, deleteBlobs(ctx, l, res.Prune.deleteBlobs, opts.Jobs)
}

// deleteBlobs deletes the blobs ds of the layout, jobs requests at a time:
// on object storage through gc.DeleteFiles (on S3 up to 1,000 a
// DeleteObjects request, on Azure up to 256 a Blob Batch request, where
// the drivers' Delete lists the path too; elsewhere one driver delete a
// blob); in a local directory one unlink a blob. A blob already gone is
// not an error.
func deleteBlobs(ctx context.Context, l Layout, ds []v1.Hash, jobs int) error {
	if jobs <= 0 {
		jobs = client.DefaultJobs
	}
	if l.driver != nil {
		paths := make([]string, len(ds))
		for i, d := range ds {
			paths[i] = l.Blob(d)
		}
		if err := gc.DeleteFiles(ctx, l.driver, paths, jobs); err != nil {
			return fmt.Errorf("deleting %d blobs: %w", len(ds), err)
		}
		return nil
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(jobs)
	for _, d := range ds {
		if gctx.Err() != nil {
			break
		}
		g.Go(func() error {
			if err := l.withContext(gctx).remove(l.Blob(d)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("deleting blob %s: %w", d, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	return ctx.Err()
}

// planPrune finds what the kept snapshots need (every manifest, child and
// blob they reach) and what the layout holds beyond it.
func planPrune(ctx context.Context, l Layout, kept []*Snapshot) (*PrunePlan, error) {
	c := &manifestCache{l: l}
	need := map[v1.Hash]bool{}
	keepEntry := map[string]bool{}
	var walkErr error
	var walk func(d v1.Descriptor, absent map[v1.Hash]bool)
	walk = func(d v1.Descriptor, absent map[v1.Hash]bool) {
		if need[d.Digest] || walkErr != nil {
			return
		}
		need[d.Digest] = true
		m := c.get(d)
		if m.err != nil {
			walkErr = fmt.Errorf("reading %w: what it needs is unknown, nothing is pruned (regkeeper verify --repair REGISTRY fetches it again)", m.err)
			return
		}
		for _, ch := range m.refs.Children {
			if !absent[ch.Digest] {
				walk(ch, nil)
			}
		}
		for _, b := range m.refs.Blobs {
			need[b.Digest] = true
		}
	}
	for _, s := range kept {
		for _, e := range s.Entries() {
			keepEntry[entryKey(e)] = true
			walk(e.Descriptor, e.Absent())
		}
	}
	if walkErr != nil {
		return nil, walkErr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p := &PrunePlan{EntriesDropped: []string{}}
	entries, err := l.ReadIndex()
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if keepEntry[entryKey(e)] {
			p.newIndex = append(p.newIndex, e.Descriptor)
		} else {
			p.EntriesDropped = append(p.EntriesDropped, describeEntry(e)+"@"+e.Digest.String())
		}
	}
	if p.newIndex == nil {
		p.newIndex = []v1.Descriptor{}
	}
	blobs, err := l.listBlobs()
	if err != nil {
		return nil, fmt.Errorf("reading blobs: %w", err)
	}
	for _, b := range blobs {
		if need[b.d] {
			p.KeptBlobs++
			p.KeptBytes += b.size
			continue
		}
		p.Blobs++
		p.Bytes += b.size
		p.deleteBlobs = append(p.deleteBlobs, b.d)
	}
	return p, nil
}

// entryKey names an entry by what it is and its digest: a tag at another
// digest is another entry.
func entryKey(e Entry) string {
	return e.Kind() + " " + describeEntry(e) + " " + e.Digest.String()
}
