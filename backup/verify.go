package backup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/regkeeper/regkeeper/internal/client"
	"github.com/regkeeper/regkeeper/internal/progress"
)

// VerifyOptions for Verify.
type VerifyOptions struct {
	// Jobs is the number of blobs hashed at once; 0 means client.DefaultJobs.
	Jobs     int
	Progress *progress.Reporter
	Logger   *slog.Logger
	// Repair, when set, is the registry (host) that every corrupt, missing
	// or mis-sized blob is fetched from again, from a repository of an
	// image that needs it; the backup is then verified again. Client
	// reaches it.
	Repair string
	Client client.Options
}

// Problems found by Verify.
const (
	ProblemCorrupt = "corrupt" // content does not hash to its name
	ProblemMissing = "missing" // referenced, not in blobs/
	ProblemSize    = "size"    // present with another size than referenced
	ProblemInvalid = "invalid" // a manifest that cannot be parsed
	// ProblemUnfinished: the last backup run did not finish (Blob names
	// its snapshot); the backup may hold only part of the registry.
	ProblemUnfinished = "unfinished"
)

// Completeness of a backup, as its snapshots tell it.
const (
	// CompletenessComplete: the last run finished, with everything it
	// selected backed up.
	CompletenessComplete = "complete"
	// CompletenessIncomplete: the last run did not finish.
	CompletenessIncomplete = "incomplete"
	// CompletenessUnknown: no snapshot (a backup written before regkeeper
	// kept them, or by another tool): what index.json holds is checked,
	// but nothing says it is all the registry had.
	CompletenessUnknown = "unknown"
)

// Problem is one blob that is not as it should be.
type Problem struct {
	Blob    string `json:"blob"`
	Problem string `json:"problem"`
	// Detail: what the content hashes to, or which image references it.
	Detail string `json:"detail"`
	// Images are the entries (repo:tag, referrers) that need the blob.
	Images []string `json:"images"`
}

// VerifyResult is what Verify found.
type VerifyResult struct {
	// Completeness is CompletenessComplete, CompletenessIncomplete or
	// CompletenessUnknown; Snapshot is the latest complete run (checked
	// whole), LastRun the latest run of all.
	Completeness string        `json:"completeness"`
	Snapshot     *SnapshotInfo `json:"snapshot"`
	LastRun      *SnapshotInfo `json:"lastRun"`
	// BadBlobs counts the distinct blobs with a problem.
	BadBlobs int `json:"badBlobs"`
	// Repaired lists the blobs verify --repair fetched again.
	Repaired  []string  `json:"repaired,omitempty"`
	Images    int       `json:"images"`
	Referrers int       `json:"referrers"`
	Manifests int       `json:"manifests"`
	Blobs     int       `json:"blobs"`
	Bytes     int64     `json:"bytes"`
	Problems  []Problem `json:"problems"`
}

// OK reports whether nothing is wrong.
func (r *VerifyResult) OK() bool { return len(r.Problems) == 0 }

// Verify re-hashes every blob of the layout at dir and checks that every
// manifest named by index.json has all it references (except index
// children recorded as absent at the source, and non-distributable layers).
// Problems are in the result; an error means dir could not be read at all.
//
// The backup's snapshots say whether it is complete: the latest complete
// snapshot's every tag and referrer is checked too, and a last run that
// did not finish is a problem (ProblemUnfinished). With opts.Repair, bad
// and missing blobs are fetched again from the registry first.
func Verify(ctx context.Context, dir string, opts VerifyOptions) (*VerifyResult, error) {
	return VerifyLayout(ctx, Layout{Root: dir}, opts)
}

// VerifyLayout is Verify of a layout anywhere (OpenTarget).
func VerifyLayout(ctx context.Context, l Layout, opts VerifyOptions) (*VerifyResult, error) {
	if err := l.Check(); err != nil {
		return nil, err
	}
	if opts.Repair == "" {
		return verify(ctx, l, opts)
	}
	unlock, err := l.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := l.mkdirAll(l.TempDir()); err != nil { // another tool's layout has none
		return nil, &WriteError{Path: l.TempDir(), Err: err}
	}
	var repaired []string
	// A repaired index may reveal children it could not name before: a
	// few rounds, while they fetch something.
	for range 4 {
		res, err := verify(ctx, l, opts)
		if err != nil {
			return nil, err
		}
		fixed, err := repair(ctx, l, res, opts)
		repaired = append(repaired, fixed...)
		if err != nil || len(fixed) == 0 {
			res.Repaired = repaired
			return res, err
		}
	}
	res, err := verify(ctx, l, opts)
	if res != nil {
		res.Repaired = repaired
	}
	return res, err
}

func verify(ctx context.Context, l Layout, opts VerifyOptions) (*VerifyResult, error) {
	// Every entry a snapshot names is checked too, once per name and digest.
	entries, snaps, err := allEntries(l)
	if err != nil {
		return nil, err
	}
	jobs := opts.Jobs
	if jobs <= 0 {
		jobs = client.DefaultJobs
	}
	res := &VerifyResult{Problems: []Problem{}, Completeness: CompletenessUnknown}
	if len(snaps) > 0 {
		last := snaps[len(snaps)-1]
		in := last.Info()
		res.LastRun = &in
		if lc := latestComplete(snaps); lc != nil {
			ci := lc.Info()
			res.Snapshot = &ci
		}
		if last.Complete() {
			res.Completeness = CompletenessComplete
		} else {
			res.Completeness = CompletenessIncomplete
			detail := fmt.Sprintf("the last backup run (snapshot %s, %s) did not finish", last.ID, last.Time.Format(time.RFC3339))
			if last.Status == SnapshotRunning {
				detail += ": it was killed or is still running"
			} else if last.Reason != "" {
				detail += ": " + last.Reason
			}
			if res.Snapshot != nil {
				detail += fmt.Sprintf("; the latest complete run is snapshot %s (%s)", res.Snapshot.ID, res.Snapshot.Time.Format(time.RFC3339))
			} else {
				detail += "; no run has completed"
			}
			res.Problems = append(res.Problems, Problem{Blob: "snapshot " + last.ID, Problem: ProblemUnfinished, Detail: detail, Images: []string{}})
		}
	}

	// 1. Every blob hashes to its name.
	files, err := l.listBlobs()
	if err != nil {
		return nil, fmt.Errorf("reading blobs: %w", err)
	}
	var total int64
	for _, f := range files {
		total += f.size
	}
	bar := opts.Progress.Bytes(total, "verify")
	defer bar.Done()
	corrupt := map[v1.Hash]bool{}
	var mu sync.Mutex
	forEach(ctx, jobs, files, func(f blobFile) {
		got, err := l.hashBlob(f.path, f.d.Algorithm, bar.Add)
		mu.Lock()
		defer mu.Unlock()
		res.Blobs++
		res.Bytes += f.size
		switch {
		case err != nil:
			corrupt[f.d] = true
			res.Problems = append(res.Problems, Problem{Blob: f.d.String(), Problem: ProblemCorrupt, Detail: err.Error()})
		case got != f.d.Hex:
			corrupt[f.d] = true
			res.Problems = append(res.Problems, Problem{Blob: f.d.String(), Problem: ProblemCorrupt,
				Detail: fmt.Sprintf("content hashes to %s:%s", f.d.Algorithm, got)})
		}
	})
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	// 2. Every manifest has what it references.
	checked := map[v1.Hash]bool{}
	reported := map[string]bool{}
	report := func(p Problem) {
		if k := p.Blob + p.Problem; !reported[k] {
			reported[k] = true
			res.Problems = append(res.Problems, p)
		}
	}
	var walk func(d v1.Descriptor, what string, absent map[v1.Hash]bool)
	walk = func(d v1.Descriptor, what string, absent map[v1.Hash]bool) {
		if !l.HasBlob(d.Digest, -1) {
			report(Problem{Blob: d.Digest.String(), Problem: ProblemMissing, Detail: what})
			return
		}
		if !l.HasBlob(d.Digest, d.Size) {
			report(Problem{Blob: d.Digest.String(), Problem: ProblemSize, Detail: fmt.Sprintf("%s: want %d bytes", what, d.Size)})
		}
		if checked[d.Digest] || corrupt[d.Digest] {
			return
		}
		checked[d.Digest] = true
		res.Manifests++
		raw, err := l.readFile(l.Blob(d.Digest))
		if err != nil {
			report(Problem{Blob: d.Digest.String(), Problem: ProblemMissing, Detail: what + ": " + err.Error()})
			return
		}
		rf, err := parseRefs(d.MediaType, raw)
		if err != nil {
			report(Problem{Blob: d.Digest.String(), Problem: ProblemInvalid, Detail: what + ": " + err.Error()})
			return
		}
		for _, c := range rf.Children {
			if absent[c.Digest] {
				continue
			}
			walk(c, fmt.Sprintf("%s > child %s", what, c.Digest), nil)
		}
		for _, b := range rf.Blobs {
			if !distributable(b) {
				continue
			}
			if !l.HasBlob(b.Digest, -1) {
				report(Problem{Blob: b.Digest.String(), Problem: ProblemMissing, Detail: fmt.Sprintf("%s > %s", what, b.MediaType)})
			} else if !l.HasBlob(b.Digest, b.Size) {
				report(Problem{Blob: b.Digest.String(), Problem: ProblemSize, Detail: fmt.Sprintf("%s > %s: want %d bytes", what, b.MediaType, b.Size)})
			}
		}
	}
	countedEntry := map[string]bool{}
	for _, e := range entries {
		if k := describeEntry(e); !countedEntry[k] {
			countedEntry[k] = true
			switch e.Kind() {
			case KindReferrer:
				res.Referrers++
			case KindTag:
				res.Images++
			}
		}
		walk(e.Descriptor, describeEntry(e), e.Absent())
	}
	// Which images each bad blob breaks.
	bad := map[string]bool{}
	for _, p := range res.Problems {
		if p.Problem != ProblemUnfinished {
			bad[p.Blob] = true
		}
	}
	res.BadBlobs = len(bad)
	if len(bad) > 0 {
		users := imagesNeeding(&manifestCache{l: l}, entries, bad)
		for i, p := range res.Problems {
			if p.Problem != ProblemUnfinished {
				res.Problems[i].Images = users[p.Blob]
				if res.Problems[i].Images == nil {
					res.Problems[i].Images = []string{}
				}
			}
		}
	}
	sort.Slice(res.Problems, func(i, j int) bool {
		if res.Problems[i].Blob != res.Problems[j].Blob {
			return res.Problems[i].Blob < res.Problems[j].Blob
		}
		return res.Problems[i].Problem < res.Problems[j].Problem
	})
	return res, nil
}

// describeEntry names an index.json entry for messages.
func describeEntry(e Entry) string {
	if n := e.Annotations[AnnotationRefName]; n != "" {
		return n
	}
	if e.Kind() == KindReferrer {
		return fmt.Sprintf("%s@%s (referrer of %s)", e.Repository(), e.Digest, e.Annotations[AnnotationSubject])
	}
	return e.Digest.String()
}

// need is what a bad blob is to the entries of a backup: the entries
// that reach it, and whether it is a manifest (an entry, or an index's
// child) with its descriptor.
type need struct {
	entries  []Entry
	manifest bool
	desc     v1.Descriptor
}

// needing finds, for each bad blob, the entries that reach it.
func needing(c *manifestCache, entries []Entry, bad map[string]bool) map[string]*need {
	type reached struct {
		desc     v1.Descriptor
		manifest bool
	}
	closure := map[v1.Hash][]reached{}
	var reach func(d v1.Descriptor, absent map[v1.Hash]bool) []reached
	reach = func(d v1.Descriptor, absent map[v1.Hash]bool) []reached {
		if out, ok := closure[d.Digest]; ok && len(absent) == 0 {
			return out
		}
		out := []reached{{d, true}}
		m := c.get(d)
		if m.err == nil {
			for _, ch := range m.refs.Children {
				if !absent[ch.Digest] {
					out = append(out, reach(ch, nil)...)
				}
			}
			for _, b := range m.refs.Blobs {
				if distributable(b) {
					out = append(out, reached{b, false})
				}
			}
		}
		if len(absent) == 0 {
			closure[d.Digest] = out
		}
		return out
	}
	out := map[string]*need{}
	for _, e := range entries {
		seen := map[string]bool{}
		for _, r := range reach(e.Descriptor, e.Absent()) {
			k := r.desc.Digest.String()
			if !bad[k] || seen[k] {
				continue
			}
			seen[k] = true
			n := out[k]
			if n == nil {
				n = &need{manifest: r.manifest, desc: r.desc}
				out[k] = n
			}
			n.entries = append(n.entries, e)
		}
	}
	return out
}

// imagesNeeding maps each bad blob to the names of the entries that reach
// it, sorted.
func imagesNeeding(c *manifestCache, entries []Entry, bad map[string]bool) map[string][]string {
	out := map[string][]string{}
	for b, n := range needing(c, entries, bad) {
		names := map[string]bool{}
		for _, e := range n.entries {
			names[describeEntry(e)] = true
		}
		for nm := range names {
			out[b] = append(out[b], nm)
		}
		sort.Strings(out[b])
	}
	return out
}

// repair fetches every bad or missing blob of res again from the registry
// opts.Repair, from the repository of an entry that needs it, and returns
// the blobs it wrote. Blobs it could not fetch stay problems.
func repair(ctx context.Context, l Layout, res *VerifyResult, opts VerifyOptions) ([]string, error) {
	bad := map[string]bool{}
	for _, p := range res.Problems {
		if p.Problem != ProblemUnfinished {
			bad[p.Blob] = true
		}
	}
	if len(bad) == 0 {
		return nil, nil
	}
	reg, err := opts.Client.Registry(opts.Repair)
	if err != nil {
		return nil, err
	}
	puller, err := remote.NewPuller(opts.Client.Remote(ctx)...)
	if err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	entries, _, err := allEntries(l)
	if err != nil {
		return nil, err
	}
	needs := needing(&manifestCache{l: l}, entries, bad)
	keys := make([]string, 0, len(needs))
	for k := range needs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var fixed []string
	for _, k := range keys {
		if err := ctx.Err(); err != nil {
			return fixed, err
		}
		n := needs[k]
		var errs []error
		done := false
		tried := map[string]bool{}
		for _, e := range n.entries {
			if done || tried[e.Repository()] || e.Repository() == "" {
				continue
			}
			tried[e.Repository()] = true
			ref := reg.Repo(e.Repository()).Digest(k)
			err := fetchInto(ctx, l, puller, ref, n)
			if err == nil {
				done = true
				break
			}
			var we *WriteError
			if errors.As(err, &we) {
				return fixed, err
			}
			errs = append(errs, fmt.Errorf("from %s: %w", e.Repository(), err))
		}
		if done {
			fixed = append(fixed, k)
			log.Info("blob fetched again from the registry", "digest", k)
			continue
		}
		if len(tried) == 0 {
			errs = append(errs, errors.New("no image of the backup names a repository it could come from"))
		}
		log.Warn("blob could not be fetched again", "digest", k, "error", errors.Join(errs...))
	}
	return fixed, nil
}

// fetchInto writes blob or manifest ref into the layout, checked.
func fetchInto(ctx context.Context, l Layout, puller *remote.Puller, ref name.Digest, n *need) error {
	d := n.desc.Digest
	if n.manifest {
		got, err := puller.Get(ctx, ref)
		if err != nil {
			return err
		}
		return l.WriteBlob(d, int64(len(got.Manifest)), bytes.NewReader(got.Manifest), nil)
	}
	layer, err := puller.Layer(ctx, ref)
	if err != nil {
		return err
	}
	rc, err := layer.Compressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	return l.WriteBlob(d, n.desc.Size, rc, nil)
}

// allEntries are the entries of index.json and those the snapshots add
// (a tag at another digest than index.json's), each once.
func allEntries(l Layout) ([]Entry, []*Snapshot, error) {
	entries, err := l.ReadIndex()
	if err != nil {
		return nil, nil, err
	}
	snaps, err := l.ReadSnapshots()
	if err != nil {
		return nil, nil, err
	}
	seen := map[string]bool{}
	for _, e := range entries {
		seen[describeEntry(e)+"="+e.Digest.String()] = true
	}
	for _, sn := range snaps {
		for _, e := range sn.Entries() {
			if k := describeEntry(e) + "=" + e.Digest.String(); !seen[k] {
				seen[k] = true
				entries = append(entries, e)
			}
		}
	}
	return entries, snaps, nil
}
