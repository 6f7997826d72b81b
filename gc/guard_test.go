package gc

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestGuard(t *testing.T) {
	blobs := func(sizes ...int64) []BlobDeletion {
		var out []BlobDeletion
		for _, s := range sizes {
			out = append(out, BlobDeletion{Size: s})
		}
		return out
	}
	storage := storageSize{repositories: 3, tags: 5, blobs: 4, bytes: 1000}
	untagged := storageSize{repositories: 3, tags: 0, blobs: 4, bytes: 1000}
	for _, tc := range []struct {
		name    string
		storage storageSize
		plan    Plan
		want    error
		msg     string
	}{
		{"some blobs", storage, Plan{Blobs: blobs(100, 200)}, nil, ""},
		{"nothing", storage, Plan{}, nil, ""},
		{"every blob", storage, Plan{Blobs: blobs(1, 2, 3, 4)}, ErrDeleteAll, "deletes all 4 blobs (1000 B) of the storage, which has 3 repositories and 5 tags"},
		{"every blob, allowed", storage, Plan{Blobs: blobs(1, 2, 3, 4), opts: Options{AllowDeleteAll: true}}, nil, ""},
		{"no tag", untagged, Plan{Blobs: blobs(100)}, ErrNoTags, "holds 4 blobs (1000 B) in 3 repositories and not one tag; the plan deletes 0 manifests and 1 blobs (100 B)"},
		{"no tag, manifests only", untagged, Plan{Manifests: []ManifestDeletion{{}}}, ErrNoTags, "deletes 1 manifests"},
		{"no tag, nothing to delete", untagged, Plan{}, nil, ""},
		{"no tag, allowed", untagged, Plan{Blobs: blobs(100), opts: Options{AllowDeleteAll: true}}, nil, ""},
		{"empty storage", storageSize{}, Plan{}, nil, ""},
		{"under the ratio", storage, Plan{Blobs: blobs(500), opts: Options{MaxDeleteRatio: 0.5}}, nil, ""},
		{"over the ratio", storage, Plan{Blobs: blobs(501), opts: Options{MaxDeleteRatio: 0.5}}, ErrDeleteRatio, "deletes 1 blobs (501 B), 50.1% of the 1000 B in storage, more than --max-delete-ratio 0.5"},
		{"every blob allowed, over the ratio", storage, Plan{Blobs: blobs(1, 2, 3, 4), opts: Options{AllowDeleteAll: true, MaxDeleteRatio: 0.001}}, ErrDeleteRatio, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.plan
			p.storage = tc.storage
			err := p.guard()
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("guard: %v, want %v", err, tc.want)
			}
			if err != nil && !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("message %q lacks %q", err, tc.msg)
			}
		})
	}
}

// gc --root on a tree with blobs but no repositories/ deletes nothing,
// dry run or not, and says why; --allow-delete-all deletes every blob.
func TestGCWrongRoot(t *testing.T) {
	ctx := context.Background()
	srv, _, d := seeded(t)
	if err := os.RemoveAll(filepath.Join(srv.Root, filepath.FromSlash(pathFor(repositoriesSpec{})))); err != nil {
		t.Fatal(err)
	}
	before := blobSizes(t, srv)
	dry := noGrace()
	dry.DryRun = true
	rep, err := Run(ctx, d, dry)
	if !errors.Is(err, ErrDeleteAll) || rep == nil || rep.BlobsDeleted != len(before) {
		t.Errorf("dry run: %v, report %+v; want ErrDeleteAll with the plan", err, rep)
	}
	if _, err := Run(ctx, d, noGrace()); !errors.Is(err, ErrDeleteAll) {
		t.Fatalf("run: %v, want ErrDeleteAll", err)
	}
	if got := blobSizes(t, srv); len(got) != len(before) {
		t.Errorf("a refused run deleted blobs: %d -> %d", len(before), len(got))
	}
	if exists(t, srv, pathFor(lockSpec{})) {
		t.Error("lock left behind")
	}
	all := noGrace()
	all.AllowDeleteAll = true
	rep, err = Run(ctx, d, all)
	if err != nil {
		t.Fatal(err)
	}
	if got := blobSizes(t, srv); len(got) != 0 || rep.BlobsDeleted != len(before) {
		t.Errorf("--allow-delete-all: %d blobs left, %d deleted of %d", len(got), rep.BlobsDeleted, len(before))
	}
}

func TestGCMaxDeleteRatio(t *testing.T) {
	ctx := context.Background()
	srv, _, d := seeded(t)
	before := blobSizes(t, srv)
	opts := noGrace()
	opts.MaxDeleteRatio = 0.01
	if _, err := Run(ctx, d, opts); !errors.Is(err, ErrDeleteRatio) {
		t.Fatalf("run: %v, want ErrDeleteRatio", err)
	}
	if got := blobSizes(t, srv); len(got) != len(before) {
		t.Errorf("a refused run deleted blobs: %d -> %d", len(before), len(got))
	}
	opts.MaxDeleteRatio = 0.99
	if rep, err := Run(ctx, d, opts); err != nil || rep.BlobsDeleted == 0 {
		t.Fatalf("run under the ratio: %v, %+v", err, rep)
	}
}
