//go:build linux

package gc

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/opencontainers/go-digest"
)

// The direct filesystem reader sees exactly what the driver's Walk sees,
// on the estate a real registry wrote (with an upload in progress and a
// stray file added).
func TestFSReadMatchesDriver(t *testing.T) {
	ctx := context.Background()
	srv, _, d := seeded(t)
	f := fsReaderFor(d)
	if f == nil {
		t.Fatal("no direct reader for the filesystem driver")
	}
	up := pathFor(startedAtSpec{"team-a/api", "0b6b4b8e-upload"})
	if err := d.PutContent(ctx, up, []byte("2020-01-01T00:00:00Z")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(srv.Root, "docker/registry/v2/repositories/team-a/api/_layers/sha256/stray"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	names, err := listRepositories(ctx, d, 2)
	if err != nil || len(names) < 3 {
		t.Fatalf("repositories %v, %v", names, err)
	}
	opt := cmp.AllowUnexported(repoScan{}, blobInfo{})
	for _, name := range names {
		for _, tagsOnly := range []bool{false, true} {
			want, err := walkRepository(ctx, d, nil, name, tagsOnly)
			if err != nil {
				t.Fatal(err)
			}
			got, err := f.scanRepository(ctx, newInterner(), name, tagsOnly)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got, opt); diff != "" {
				t.Errorf("%s (tagsOnly %v) (-walk +direct):\n%s", name, tagsOnly, diff)
			}
		}
	}
	want, err := walkBlobs(ctx, d, newInterner(), Options{Jobs: 2})
	if err != nil {
		t.Fatal(err)
	}
	got, err := f.listBlobs(ctx, nil, Options{Jobs: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(want) == 0 {
		t.Fatal("no blobs")
	}
	if diff := cmp.Diff(want, got, opt); diff != "" {
		t.Errorf("blobs (-walk +direct):\n%s", diff)
	}
	for _, p := range []string{pathFor(blobDataSpec{want[0][0].s.digest()}), up, "/nothing/here"} {
		wb, werr := d.GetContent(ctx, p)
		gb, gerr := f.readFile(p)
		if string(wb) != string(gb) || isNotFound(werr) != isNotFound(gerr) || (werr == nil) != (gerr == nil) {
			t.Errorf("readFile %s = %d bytes, %v; driver %d bytes, %v", p, len(gb), gerr, len(wb), werr)
		}
	}
}

// The filesystem remover deletes blobs and links with their directories,
// removes a blob prefix or a _layers/sha256 only when it became empty,
// leaves other parents, and refuses to delete a directory it took for a
// file.
func TestFSRemoverShapes(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	d, err := OpenRoot(ctx, root)
	if err != nil {
		t.Fatal(err)
	}
	put := func(p string) {
		t.Helper()
		if err := d.PutContent(ctx, p, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	there := func(p string) bool {
		_, err := os.Stat(filepath.Join(root, filepath.FromSlash(p)))
		return err == nil
	}
	hex := func(prefix string, i int) digest.Digest {
		return digest.NewDigestFromEncoded(digest.SHA256, fmt.Sprintf("%s%062x", prefix, i))
	}
	alone, b1, b2 := hex("aa", 1), hex("bb", 1), hex("bb", 2)
	for _, b := range []digest.Digest{alone, b1, b2} {
		put(pathFor(blobDataSpec{b}))
	}
	put(pathFor(layerLinkSpec{"r", alone}))
	put(pathFor(revisionLinkSpec{"r", alone}))
	rm := newFSRemover(d, Options{Jobs: 4})
	if rm == nil {
		t.Fatal("no filesystem remover")
	}
	err = rm.remove(ctx, []string{pathFor(blobDataSpec{alone}), pathFor(blobDataSpec{b1}), pathFor(layerLinkSpec{"r", alone}),
		pathFor(revisionLinkSpec{"r", alone}), pathFor(blobDataSpec{hex("cc", 1)})})
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]bool{
		"/docker/registry/v2/blobs/sha256/aa":        false, // became empty
		pathFor(blobSpec{b1}):                        false,
		pathFor(blobDataSpec{b2}):                    true,
		pathFor(layersSpec{"r", "sha256"}):           false, // became empty
		pathFor(revisionSpec{"r", alone}):            false,
		pathFor(revisionsSpec{"r", "sha256"}):        true, // not a parent gc removes
		"/docker/registry/v2/repositories/r/_layers": true,
		"/docker/registry/v2/blobs/sha256":           true,
	} {
		if got := there(p); got != want {
			t.Errorf("%s exists %v, want %v", p, got, want)
		}
	}
	// A directory where a file should be is an error, and stays.
	odd := hex("dd", 1)
	put(pathFor(blobDataSpec{odd}) + "/inside")
	if err := rm.remove(ctx, []string{pathFor(blobDataSpec{odd})}); err == nil || !there(pathFor(blobDataSpec{odd})+"/inside") {
		t.Errorf("removing a directory as a file: %v", err)
	}
}

// The filesystem quarantine renames each blob's data into its prefix in the
// quarantine and removes the blob's directory, leaving blobs/' prefix
// directory; a blob gone already is skipped, a stray file beside a blob's
// data stays in blobs/, and a blob of an unexpected shape is handed back for
// the driver.
func TestFSQuarantineShapes(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	d, err := OpenRoot(ctx, root)
	if err != nil {
		t.Fatal(err)
	}
	there := func(p string) bool {
		_, err := os.Stat(filepath.Join(root, filepath.FromSlash(p)))
		return err == nil
	}
	hex := func(prefix string, i int) digest.Digest {
		return digest.NewDigestFromEncoded(digest.SHA256, fmt.Sprintf("%s%062x", prefix, i))
	}
	var blobs []BlobDeletion
	for _, prefix := range []string{"aa", "bb", "cc"} {
		for i := range 3 {
			b := BlobDeletion{Digest: hex(prefix, i), Size: 1}
			if err := d.PutContent(ctx, pathFor(blobDataSpec{b.Digest}), []byte("x")); err != nil {
				t.Fatal(err)
			}
			blobs = append(blobs, b)
		}
	}
	gone, odd := BlobDeletion{Digest: hex("dd", 1)}, BlobDeletion{Digest: hex("aa", 9)}
	if err := d.PutContent(ctx, pathFor(blobSpec{odd.Digest}), []byte("a file where a directory should be")); err != nil {
		t.Fatal(err)
	}
	stray := pathFor(blobSpec{blobs[4].Digest}) + "/stray"
	if err := d.PutContent(ctx, stray, nil); err != nil {
		t.Fatal(err)
	}
	f := newFSQuarantine(d)
	if f == nil {
		t.Fatal("no filesystem quarantine")
	}
	var hooked, held int
	rest, err := f.put(ctx, append(blobs, gone, odd), 4,
		func(string) error { hooked++; return nil }, func(BlobDeletion) { held++ })
	if err != nil {
		t.Fatal(err)
	}
	if len(rest) != 1 || rest[0] != odd {
		t.Errorf("handed back %v, want only the odd one", rest)
	}
	if held != len(blobs) || hooked != len(blobs)+1 {
		t.Errorf("held %d, hooked %d; want %d, %d", held, hooked, len(blobs), len(blobs)+1)
	}
	for i, b := range blobs {
		if there(pathFor(blobDataSpec{b.Digest})) || there(pathFor(blobSpec{b.Digest})) != (i == 4) || !there(pathFor(quarantineDataSpec{b.Digest})) {
			t.Errorf("%s: still in blobs/ or not in the quarantine", b.Digest)
		}
	}
	if !there(stray) || !there(pathFor(blobSpec{odd.Digest})) {
		t.Error("gc moved or removed what is not a blob's data")
	}
	if !there("/docker/registry/v2/blobs/sha256/bb") {
		t.Error("a prefix directory of blobs/ was removed during an online run")
	}
}
