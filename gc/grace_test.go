package gc

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/regkeeper/regkeeper/internal/testbed/estate"
)

// totals are the counts the grace moves from deleted to spared.
type totals struct {
	Manifests, Blobs int
	Bytes            int64
}

func deletedOf(r *Report) totals { return totals{r.ManifestsDeleted, r.BlobsDeleted, r.BytesReclaimed} }
func sparedOf(r *Report) totals {
	return totals{r.ManifestsSparedByGrace, r.BlobsSparedByGrace, r.BytesSparedByGrace}
}
func sum(a, b totals) totals {
	return totals{a.Manifests + b.Manifests, a.Blobs + b.Blobs, a.Bytes + b.Bytes}
}

// What the grace spares plus what the run deletes is what a run with no
// grace deletes: on a fresh estate (everything spared, and the note says
// that is why nothing was deleted), and with one dead manifest young.
func TestGCGraceSpared(t *testing.T) {
	ctx := context.Background()
	srv, e, d := seeded(t)
	plan := func(grace time.Duration) *Report {
		t.Helper()
		o := noGrace()
		o.Grace, o.DryRun = grace, true
		r, err := Run(ctx, d, o)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	all := deletedOf(plan(0))
	if all.Manifests == 0 || all.Blobs == 0 {
		t.Fatalf("no-grace plan deletes nothing: %+v", all)
	}
	if s := sparedOf(plan(0)); s != (totals{}) {
		t.Errorf("grace 0 spared %+v", s)
	}

	rep := plan(time.Hour)
	if diff := cmp.Diff(all, sparedOf(rep)); diff != "" {
		t.Errorf("fresh estate, 1h grace: spared (-no-grace deletions +spared):\n%s", diff)
	}
	if n := rep.GraceNote(); !strings.HasPrefix(n, "nothing would be deleted") || !strings.Contains(n, "1h0m0s") {
		t.Errorf("note: %q", n)
	}

	// Everything two hours old but one dead manifest, pushed (again) now.
	old := time.Now().Add(-2 * time.Hour)
	err := filepath.Walk(srv.Root, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Chtimes(p, old, old)
	})
	if err != nil {
		t.Fatal(err)
	}
	var young estate.Manifest
	for _, m := range e.Manifests {
		if m.Repository == "team-a/api" && !m.Live && m.Role == estate.RoleImage {
			young = m
			break
		}
	}
	rev := filepath.Join(srv.Root, filepath.FromSlash(pathFor(revisionSpec{young.Repository, dg(young.Digest)})))
	now := time.Now()
	for _, p := range []string{rev, filepath.Join(rev, "link")} {
		if err := os.Chtimes(p, now, now); err != nil {
			t.Fatal(err)
		}
	}
	rep = plan(time.Hour)
	s := sparedOf(rep)
	if s.Manifests < 1 || s.Blobs < 1 || s.Bytes <= 0 {
		t.Errorf("one young dead manifest: spared %+v", s)
	}
	if diff := cmp.Diff(all, sum(deletedOf(rep), s)); diff != "" {
		t.Errorf("deleted + spared differs from a run with no grace (-no-grace +deleted+spared):\n%s", diff)
	}
	if n := rep.GraceNote(); !strings.HasPrefix(n, "spared by the 1h0m0s grace") {
		t.Errorf("note: %q", n)
	}
}
