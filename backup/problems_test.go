package backup

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/regkeeper/regkeeper/internal/testbed/embedded"
	"github.com/regkeeper/regkeeper/internal/testbed/regtest"
	"github.com/regkeeper/regkeeper/internal/walk"
)

// On a registry that pages its catalog by 5 and its tag lists by 2, with an
// index-only copy and a manifest corrupted on disk, the backup lists every
// repository, backs up every readable tag, and reports the two broken ones
// as problems; nothing failed.
func TestBackupProblems(t *testing.T) {
	srv, e := regtest.Seeded(t, embedded.Options{CatalogMaxEntries: 5, TagsMaxTags: 2})
	dg := e.Tags()["team-c/worker:2.3"]
	data := filepath.Join(srv.Root, "docker/registry/v2/blobs/sha256", dg.Hex[:2], dg.Hex, "data")
	if err := os.WriteFile(data, []byte("{not a manifest"), 0o644); err != nil {
		t.Fatal(err)
	}
	res := backup(t, srv.Host, filepath.Join(t.TempDir(), "backup"), testOptions())
	if res.Images != len(e.Tags())-1 || res.Selection.MatchedRepositories != len(e.Repositories()) {
		t.Errorf("%d images (want %d), selection %+v", res.Images, len(e.Tags())-1, res.Selection)
	}
	kinds := map[string]string{}
	for _, p := range res.Problems {
		kinds[p.Where()] = p.Kind
	}
	if len(res.Problems) != 2 || kinds["team-c/worker:2.3"] != walk.KindManifestCorrupt || kinds["mirror/alpine:3.20"] != walk.KindChildrenAbsent {
		t.Errorf("problems %+v", res.Problems)
	}
}
