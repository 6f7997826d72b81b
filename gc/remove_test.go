package gc

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
)

// The remover deletes files, removes the directory that held one only when
// it is left empty, and takes a path already gone or a directory that
// gained an entry (a push writing into it) in its stride.
func TestRemoverToleratesPushes(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	d, err := OpenRoot(ctx, root)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := fsRoot(d); !ok || got != root {
		t.Fatalf("fsRoot = %q, %v; want %s", got, ok, root)
	}
	if _, ok := fsRoot(inmemory.New()); ok {
		t.Error("fsRoot found a root in the inmemory driver")
	}
	write := func(p string) {
		if err := d.PutContent(ctx, p, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	exists := func(p string) bool {
		_, err := os.Stat(filepath.Join(root, filepath.FromSlash(p)))
		return err == nil
	}
	write("/r/alone/link")
	write("/r/shared/link")
	write("/r/shared/pushed") // written by a push into the directory gc empties
	rm := newRemover(d, Options{Jobs: 2})
	if err := rm.remove(ctx, []string{"/r/alone/link", "/r/shared/link", "/r/gone/link"}); err != nil {
		t.Fatal(err)
	}
	if exists("/r/alone") || exists("/r/shared/link") || !exists("/r/shared/pushed") {
		t.Errorf("after remove: alone %v, shared/link %v, shared/pushed %v", exists("/r/alone"), exists("/r/shared/link"), exists("/r/shared/pushed"))
	}

	// removeTree keeps what keep keeps, and the directories holding it.
	write("/t/a/old")
	write("/t/b/new")
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(filepath.Join(root, "t/a/old"), old, old); err != nil {
		t.Fatal(err)
	}
	young := func(fi storagedriver.FileInfo) bool { return fi.ModTime().After(old.Add(time.Minute)) }
	gone, err := removeTree(ctx, d, rm, newDirRemover(d), "/t", young)
	if err != nil {
		t.Fatal(err)
	}
	if gone || exists("/t/a") || !exists("/t/b/new") {
		t.Errorf("removeTree: gone %v, /t/a %v, /t/b/new %v", gone, exists("/t/a"), exists("/t/b/new"))
	}
}
