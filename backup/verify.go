package backup

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/regkeeper/regkeeper/internal/client"
	"github.com/regkeeper/regkeeper/internal/progress"
)

// VerifyOptions for Verify.
type VerifyOptions struct {
	// Jobs is the number of blobs hashed at once; 0 means client.DefaultJobs.
	Jobs     int
	Progress *progress.Reporter
	Logger   *slog.Logger
}

// Problems found by Verify.
const (
	ProblemCorrupt = "corrupt" // content does not hash to its name
	ProblemMissing = "missing" // referenced, not in blobs/
	ProblemSize    = "size"    // present with another size than referenced
	ProblemInvalid = "invalid" // a manifest that cannot be parsed
)

// Problem is one blob that is not as it should be.
type Problem struct {
	Blob    string `json:"blob"`
	Problem string `json:"problem"`
	// Detail: what the content hashes to, or which image references it.
	Detail string `json:"detail"`
}

// VerifyResult is what Verify found.
type VerifyResult struct {
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
func Verify(ctx context.Context, dir string, opts VerifyOptions) (*VerifyResult, error) {
	l := Layout{Root: dir}
	if err := l.Check(); err != nil {
		return nil, err
	}
	entries, err := l.ReadIndex()
	if err != nil {
		return nil, err
	}
	jobs := opts.Jobs
	if jobs <= 0 {
		jobs = client.DefaultJobs
	}
	res := &VerifyResult{Problems: []Problem{}}

	// 1. Every blob hashes to its name.
	type file struct {
		d    v1.Hash
		path string
		size int64
	}
	var files []file
	var total int64
	algs, err := os.ReadDir(l.BlobsDir())
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("reading blobs: %w", err)
	}
	for _, a := range algs {
		if !a.IsDir() {
			continue
		}
		names, err := os.ReadDir(l.AlgorithmDir(a.Name()))
		if err != nil {
			return nil, fmt.Errorf("reading blobs: %w", err)
		}
		for _, n := range names {
			info, err := n.Info()
			if err != nil || !info.Mode().IsRegular() {
				continue
			}
			d := v1.Hash{Algorithm: a.Name(), Hex: n.Name()}
			files = append(files, file{d, filepath.Join(l.AlgorithmDir(a.Name()), n.Name()), info.Size()})
			total += info.Size()
		}
	}
	bar := opts.Progress.Bytes(total, "verify")
	defer bar.Done()
	corrupt := map[v1.Hash]bool{}
	var mu sync.Mutex
	forEach(ctx, jobs, files, func(f file) {
		got, err := hashFile(f.path, f.d.Algorithm, bar.Add)
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
		raw, err := os.ReadFile(l.Blob(d.Digest))
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
	for _, e := range entries {
		switch e.Kind() {
		case KindReferrer:
			res.Referrers++
		case KindTag:
			res.Images++
		}
		walk(e.Descriptor, describeEntry(e), e.Absent())
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

func hashFile(path, algorithm string, progress func(int64)) (string, error) {
	h, err := newHash(algorithm)
	if err != nil {
		return "", err
	}
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if _, err := io.Copy(io.MultiWriter(h, progressWriter(progress)), f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
