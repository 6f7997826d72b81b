package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"

	"github.com/regkeeper/regkeeper/gc"
	"github.com/regkeeper/regkeeper/internal/testbed/embedded"
	"github.com/regkeeper/regkeeper/internal/testbed/regtest"
)

func TestGCCommand(t *testing.T) {
	srv, e := regtest.Seeded(t, embedded.Options{})

	code, out, stderr := runCLI(t, "gc", "--config", srv.ConfigFile, "--grace", "0", "--dry-run", "-o", "json")
	if code != 0 {
		t.Fatalf("dry run exit %d: %s", code, stderr)
	}
	var dry gc.Report
	if err := json.Unmarshal([]byte(out), &dry); err != nil {
		t.Fatalf("dry run output is not the report: %v\n%s", err, out)
	}
	if !dry.DryRun || dry.ManifestsDeleted == 0 || dry.BytesReclaimed == 0 || dry.ManifestsKeptAsBase == 0 {
		t.Errorf("dry run report: %+v", dry)
	}
	for _, key := range []string{"dryRun", "manifestsDeleted", "blobsDeleted", "bytesReclaimed", "layerLinksDeleted", "uploadsDeleted", "durationSeconds", "repositories", "manifestsKeptAsBase"} {
		if !strings.Contains(out, `"`+key+`"`) {
			t.Errorf("JSON lacks %q", key)
		}
	}

	code, out, stderr = runCLI(t, "gc", "--root", srv.Root, "--grace", "0", "--jobs", "4", "--settle", "100ms", "-o", "json")
	if code != 0 {
		t.Fatalf("gc exit %d: %s", code, stderr)
	}
	var real gc.Report
	if err := json.Unmarshal([]byte(out), &real); err != nil {
		t.Fatal(err)
	}
	if real.DryRun || real.ManifestsDeleted != dry.ManifestsDeleted || real.BytesReclaimed != dry.BytesReclaimed || real.BlobsDeleted != dry.BlobsDeleted {
		t.Errorf("real run %+v differs from dry run %+v", real, dry)
	}
	regtest.PullAll(t, srv.Host, e)

	code, out, _ = runCLI(t, "gc", "--root", srv.Root)
	if code != 0 || !strings.Contains(out, "TOTAL") || !strings.Contains(out, "deleted: 0 manifests") {
		t.Errorf("table run: exit %d\n%s", code, out)
	}
}

func TestGCCommandErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yml")
	if err := os.WriteFile(bad, []byte("storage: [\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		argv []string
		code int
		msg  string
	}{
		{[]string{"gc"}, 2, "exactly one of --config or --root"},
		{[]string{"gc", "--root", dir, "--config", bad}, 2, "exactly one of"},
		{[]string{"gc", "--root", dir, "--grace", "soon"}, 2, "invalid argument"},
		{[]string{"gc", "--root", dir, "--keep-previous", "-1"}, 2, "must not be negative"},
		{[]string{"gc", "--root", dir, "--settle", "-1s"}, 2, "invalid argument"},
		{[]string{"gc", "--config", bad}, 1, "parsing registry config"},
		{[]string{"gc", "--root", dir}, 1, "not a registry storage"},
		{[]string{"gc", "--root", filepath.Join(dir, "nope")}, 1, "opening storage root"},
	} {
		code, _, stderr := runCLI(t, tc.argv...)
		if code != tc.code || !strings.Contains(stderr, tc.msg) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d mentioning %q", tc.argv, code, stderr, tc.code, tc.msg)
		}
	}
}

// A registry that caches blob descriptors in memory: gc refuses, naming the
// setting and the ways out, and runs when told which one is taken.
func TestGCCommandInMemoryCache(t *testing.T) {
	srv, e := regtest.Seeded(t, embedded.Options{BlobDescriptorCache: gc.CacheInMemory})
	code, _, stderr := runCLI(t, "gc", "--config", srv.ConfigFile, "--grace", "0")
	if code != 1 {
		t.Fatalf("exit %d, want 1: %s", code, stderr)
	}
	for _, want := range []string{"storage.cache.blobdescriptor: inmemory", "--offline", "--blob-cache-dropped", "--restart-after"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("refusal does not mention %q: %s", want, stderr)
		}
	}
	code, out, stderr := runCLI(t, "gc", "--config", srv.ConfigFile, "--grace", "0", "--offline", "-o", "json")
	if code != 0 {
		t.Fatalf("--offline: exit %d: %s", code, stderr)
	}
	var rep gc.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil || rep.BlobsDeleted == 0 {
		t.Errorf("--offline report: %+v (%v)", rep, err)
	}
	regtest.PullAll(t, srv.Host, e)
}

// A storage with repositories missing (a partial mount, a half-done
// restore) looks like a registry whose images all died: gc refuses with the
// default --max-delete-ratio, says by how much and what to pass, exits 1
// and deletes nothing; the dry run says the share, in the table and JSON.
func TestGCRefusesMissingRepositories(t *testing.T) {
	srv, _ := regtest.Seeded(t, embedded.Options{})

	// The estate whole: a collection deletes well under the default.
	code, out, stderr := runCLI(t, "gc", "--config", srv.ConfigFile, "--grace", "0", "--dry-run", "-o", "json")
	if code != 0 {
		t.Fatalf("dry run exit %d: %s", code, stderr)
	}
	var whole gc.Report
	if err := json.Unmarshal([]byte(out), &whole); err != nil {
		t.Fatal(err)
	}
	t.Logf("demo estate: the plan deletes %.3f of %d bytes", whole.DeleteRatio, whole.BytesStored)
	if whole.BytesStored == 0 || whole.DeleteRatio <= 0 || whole.DeleteRatio >= gc.DefaultMaxDeleteRatio || whole.MaxDeleteRatio != gc.DefaultMaxDeleteRatio {
		t.Errorf("whole estate: stored %d, ratio %v, limit %v", whole.BytesStored, whole.DeleteRatio, whole.MaxDeleteRatio)
	}
	code, out, _ = runCLI(t, "gc", "--config", srv.ConfigFile, "--grace", "0", "--dry-run")
	if code != 0 || !strings.Contains(out, "the plan deletes ") || !strings.Contains(out, "limit --max-delete-ratio 0.5") {
		t.Errorf("dry run table: exit %d\n%s", code, out)
	}

	// Half the repositories gone from the storage.
	repos := filepath.Join(srv.Root, "docker/registry/v2/repositories")
	for _, r := range []string{"base", "team-a", "team-c", "team-e"} {
		if err := os.RemoveAll(filepath.Join(repos, r)); err != nil {
			t.Fatal(err)
		}
	}
	before := storageFiles(t, srv.Root)
	code, out, stderr = runCLI(t, "gc", "--config", srv.ConfigFile, "--grace", "0", "--settle", "100ms")
	if code != 1 || !strings.Contains(stderr, "more than --max-delete-ratio 0.5 (the default)") ||
		!strings.Contains(stderr, "run once with --max-delete-ratio 0.") || !strings.Contains(stderr, "repositories missing") {
		t.Errorf("gc on a storage missing repositories: exit %d\n%s\n%s", code, out, stderr)
	}
	if after := storageFiles(t, srv.Root); after != before {
		t.Errorf("gc refused but the storage changed: %d files before, %d after", before, after)
	}
	code, out, _ = runCLI(t, "gc", "--config", srv.ConfigFile, "--grace", "0", "--dry-run", "-o", "json")
	var partial gc.Report
	if err := json.Unmarshal([]byte(out), &partial); err != nil {
		t.Fatal(err)
	}
	if code != 1 || partial.DeleteRatio <= gc.DefaultMaxDeleteRatio {
		t.Errorf("dry run on the partial storage: exit %d, ratio %v", code, partial.DeleteRatio)
	}
	// Passing what the message says carries the plan out.
	code, _, stderr = runCLI(t, "gc", "--config", srv.ConfigFile, "--grace", "0", "--settle", "100ms", "--max-delete-ratio", "1")
	if code != 0 {
		t.Errorf("--max-delete-ratio 1: exit %d: %s", code, stderr)
	}
}

// storageFiles counts the files under root.
// storageFiles counts the registry's files, not gc's own (its mark cache
// is written by every run that marks, a refused one included).
func storageFiles(t *testing.T, root string) int {
	t.Helper()
	n := 0
	filepath.WalkDir(root, func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && !strings.HasPrefix(d.Name(), "regkeeper-") {
			n++
		}
		return nil
	})
	return n
}

// --prune-orphan-signatures names what it pruned, in the table and in the
// JSON, dry run and real run alike.
func TestGCPruneOrphanSignaturesNamed(t *testing.T) {
	srv := regtest.Registry(t, embedded.Options{})
	img, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	sig, _ := random.Image(128, 1)
	dgst, _ := img.Digest()
	app := regtest.Ref(t, srv, "team-z/app:1")
	sigTag := "sha256-" + dgst.Hex + ".sig"
	for ref, im := range map[name.Reference]v1.Image{app: img, regtest.Ref(t, srv, "team-z/app:"+sigTag): sig, regtest.Ref(t, srv, "team-z/app:2"): sig} {
		if err := remote.Write(ref, im); err != nil {
			t.Fatal(err)
		}
	}
	// The subject's tag removed: its signature tag is an orphan.
	if err := os.RemoveAll(filepath.Join(srv.Root, "docker/registry/v2/repositories/team-z/app/_manifests/tags/1")); err != nil {
		t.Fatal(err)
	}
	want := "team-z/app:" + sigTag
	code, out, stderr := runCLI(t, "gc", "--config", srv.ConfigFile, "--grace", "0", "--prune-orphan-signatures", "--max-delete-ratio", "1", "--dry-run")
	if code != 0 || !strings.Contains(out, "would delete (dry run) orphan signature tag "+want) {
		t.Errorf("dry run table: exit %d: %s\n%s", code, stderr, out)
	}
	code, out, stderr = runCLI(t, "gc", "--config", srv.ConfigFile, "--grace", "0", "--settle", "100ms", "--prune-orphan-signatures", "--max-delete-ratio", "1", "-o", "json")
	var rep struct {
		TagsDeleted         int
		OrphanSignatureTags []struct{ Repository, Tag string }
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 0 {
		t.Fatalf("gc: exit %d, %v: %s\n%s", code, err, stderr, out)
	}
	if rep.TagsDeleted != 1 || len(rep.OrphanSignatureTags) != 1 || rep.OrphanSignatureTags[0].Repository+":"+rep.OrphanSignatureTags[0].Tag != want {
		t.Errorf("JSON: %+v\n%s", rep, out)
	}
	if _, err := remote.Head(regtest.Ref(t, srv, want)); err == nil {
		t.Errorf("%s still there", want)
	}
}

// What a crashed or interrupted run left in the quarantine, and a gc
// running at the same time, are in the report: a dry run shows both, and
// the run that resolves the quarantine reports it empty.
func TestGCReportsQuarantineAndLock(t *testing.T) {
	srv, _ := regtest.Seeded(t, embedded.Options{})
	// A blob set aside by a run that crashed after its quarantine, in the
	// layout gc keeps (regkeeper-quarantine/sha256/<xx>/<hex>, since file).
	data := []byte(strings.Repeat("set aside by a crashed run\n", 6000))
	dg := digest.FromBytes(data)
	q := filepath.Join(srv.Root, "docker/registry/v2/regkeeper-quarantine")
	os.MkdirAll(filepath.Join(q, "sha256", dg.Encoded()[:2]), 0o755)
	os.WriteFile(filepath.Join(q, "sha256", dg.Encoded()[:2], dg.Encoded()), data, 0o644)
	os.WriteFile(filepath.Join(q, "since"), []byte(time.Now().UTC().Format(time.RFC3339Nano)), 0o644)
	// And a gc holding the storage's lock (this process: alive).
	d, err := gc.OpenRoot(context.Background(), srv.Root)
	if err != nil {
		t.Fatal(err)
	}
	unlock, err := gc.Lock(context.Background(), d, gc.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}

	code, out, stderr := runCLI(t, "gc", "--config", srv.ConfigFile, "--grace", "0", "--dry-run", "-o", "json")
	var rep gc.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 0 {
		t.Fatalf("dry run: exit %d, %v: %s", code, err, stderr)
	}
	if rep.QuarantineBlobs != 1 || rep.QuarantineBytes != int64(len(data)) || rep.LockHeldBy == "" {
		t.Errorf("dry run: quarantine %d blobs %d bytes, lock %q; want 1, %d, the holder", rep.QuarantineBlobs, rep.QuarantineBytes, rep.LockHeldBy, len(data))
	}
	code, out, _ = runCLI(t, "gc", "--config", srv.ConfigFile, "--grace", "0", "--dry-run")
	if code != 0 || !strings.Contains(out, "in the quarantine: 1 blob (158.2 KiB) set aside by a run that did not finish") || !strings.Contains(out, "another gc is running on this storage") {
		t.Errorf("dry run table: exit %d\n%s", code, out)
	}
	unlock()

	code, out, stderr = runCLI(t, "gc", "--config", srv.ConfigFile, "--grace", "0", "--settle", "100ms", "-o", "json")
	rep = gc.Report{}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 0 {
		t.Fatalf("gc: exit %d, %v: %s", code, err, stderr)
	}
	if rep.QuarantineBlobs != 0 || rep.LockHeldBy != "" {
		t.Errorf("after the run that resolved it: %+v", rep)
	}
}
