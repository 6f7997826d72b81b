package gc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"

	"github.com/regkeeper/regkeeper/internal/testbed/embedded"
	"github.com/regkeeper/regkeeper/internal/testbed/estate"
	"github.com/regkeeper/regkeeper/internal/testbed/regtest"
)

func seeded(t *testing.T) (*embedded.Server, *estate.Estate, storagedriver.StorageDriver) {
	t.Helper()
	srv, e := regtest.Seeded(t, embedded.Options{})
	d, err := Open(context.Background(), srv.ConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	return srv, e, d
}

// noGrace are the options of a run right after seeding.
func noGrace() Options {
	o := DefaultOptions()
	o.Grace = 0
	o.Jobs = 4
	o.Settle = 50 * time.Millisecond
	return o
}

func dg(h v1.Hash) digest.Digest { return digest.Digest(h.String()) }

func exists(t *testing.T, srv *embedded.Server, p string) bool {
	t.Helper()
	_, err := os.Stat(filepath.Join(srv.Root, filepath.FromSlash(p)))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return err == nil
}

// blobSizes returns the data size of every blob on disk.
func blobSizes(t *testing.T, srv *embedded.Server) map[digest.Digest]int64 {
	t.Helper()
	out := map[digest.Digest]int64{}
	root := filepath.Join(srv.Root, "docker/registry/v2/blobs/sha256")
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if fi.Name() == "data" {
			out[digest.NewDigestFromEncoded(digest.SHA256, filepath.Base(filepath.Dir(p)))] = fi.Size()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// baseManifests are the untagged manifests (repository@digest) that live
// images of the estate name as their base by annotation: gc keeps them.
func baseManifests(e *estate.Estate) map[string]bool {
	out := map[string]bool{}
	for _, b := range e.Builds {
		if !b.Annotated {
			continue
		}
		if m, ok := e.Find(b.BaseRepository, b.BaseDigest); ok && !m.Live {
			out[m.Repository+"@"+m.Digest.String()] = true
		}
	}
	return out
}

func TestGCEstate(t *testing.T) {
	srv, e, d := seeded(t)
	checkGCEstate(t, srv.Host, e, d,
		func(p string) bool { return exists(t, srv, p) },
		func() map[digest.Digest]int64 { return blobSizes(t, srv) })
}

// checkGCEstate runs gc on a freshly seeded estate (a dry run, a real run,
// a second run) and checks the outcome against the estate and against the
// storage as seen outside the driver (exists, blobSizes), then pulls every
// tag through the registry at host.
func checkGCEstate(t *testing.T, host string, e *estate.Estate, d storagedriver.StorageDriver,
	exists func(path string) bool, blobSizes func() map[digest.Digest]int64) {
	t.Helper()
	checkGCEstateWith(t, noGrace(), host, e, d, exists, blobSizes)
}

// checkGCEstateWith is checkGCEstate with the runs' options (online or
// offline).
func checkGCEstateWith(t *testing.T, opts Options, host string, e *estate.Estate, d storagedriver.StorageDriver,
	exists func(path string) bool, blobSizes func() map[digest.Digest]int64) {
	t.Helper()
	ctx := context.Background()
	before := blobSizes()

	dry := opts
	dry.DryRun = true
	plan, err := Run(ctx, d, dry)
	if err != nil {
		t.Fatal(err)
	}
	if got := blobSizes(); len(got) != len(before) {
		t.Fatalf("dry run deleted blobs: %d -> %d", len(before), len(got))
	}

	rep, err := Run(ctx, d, opts)
	if err != nil {
		t.Fatal(err)
	}
	after := blobSizes()

	// Dead manifests gone, live manifests and the bases of live images
	// kept, in each repository.
	bases := baseManifests(e)
	wantDeleted := 0
	for _, m := range e.Manifests {
		rev := pathFor(revisionSpec{m.Repository, dg(m.Digest)})
		live := m.Live || bases[m.Repository+"@"+m.Digest.String()]
		if got := exists(rev); got != live {
			t.Errorf("%s@%s (%s, live=%v): revision exists=%v", m.Repository, m.Digest, m.Role, live, got)
		}
		if !live {
			wantDeleted++
		}
	}
	if rep.ManifestsDeleted != wantDeleted {
		t.Errorf("manifestsDeleted = %d, want %d", rep.ManifestsDeleted, wantDeleted)
	}
	if rep.ManifestsKeptAsBase != len(bases) {
		t.Errorf("manifestsKeptAsBase = %d, want %d", rep.ManifestsKeptAsBase, len(bases))
	}
	// Live blobs kept, dead blobs gone.
	liveBlobs := e.LiveBlobs()
	for _, m := range e.Manifests {
		if bases[m.Repository+"@"+m.Digest.String()] {
			liveBlobs[m.Digest] = true
			for _, b := range m.Blobs {
				liveBlobs[b] = true
			}
		}
	}
	for b := range liveBlobs {
		if _, ok := after[dg(b)]; !ok {
			t.Errorf("live blob %s deleted", b)
		}
	}
	for b := range e.DeadBlobs() {
		if _, ok := after[dg(b)]; ok && !liveBlobs[b] {
			t.Errorf("dead blob %s kept", b)
		}
	}
	// Bytes reclaimed are the deleted blob files.
	var want int64
	var n int
	for b, size := range before {
		if _, ok := after[b]; !ok {
			want += size
			n++
		}
	}
	if rep.BytesReclaimed != want || rep.BlobsDeleted != n {
		t.Errorf("reclaimed %d bytes in %d blobs, disk says %d in %d", rep.BytesReclaimed, rep.BlobsDeleted, want, n)
	}
	if rep.LayerLinksDeleted == 0 {
		t.Error("no layer links deleted")
	}
	// The dry run said exactly this.
	rep.DryRun = true
	ignore := func(r *Report) *Report { c := *r; c.DurationSeconds = 0; return &c }
	if diff := cmp.Diff(ignore(plan), ignore(rep)); diff != "" {
		t.Errorf("dry run differs from the real run (-dry +real):\n%s", diff)
	}
	// The index-only mirror survived.
	for _, m := range e.Manifests {
		if m.Repository == "mirror/alpine" && !exists(pathFor(revisionSpec{m.Repository, dg(m.Digest)})) {
			t.Errorf("mirror index %s deleted", m.Digest)
		}
	}
	if exists(pathFor(lockSpec{})) {
		t.Error("lock left behind")
	}
	regtest.PullAll(t, host, e)

	// A second run finds nothing.
	again, err := Run(ctx, d, opts)
	if err != nil {
		t.Fatal(err)
	}
	if again.ManifestsDeleted+again.BlobsDeleted+again.LayerLinksDeleted != 0 {
		t.Errorf("second run deleted more: %+v", again)
	}
	t.Logf("estate: %d manifests, %d blobs, %d bytes, %d layer links in %.2fs",
		rep.ManifestsDeleted, rep.BlobsDeleted, rep.BytesReclaimed, rep.LayerLinksDeleted, rep.DurationSeconds)
}

func TestGCReferrers(t *testing.T) {
	srv, e, d := seeded(t)
	if _, err := Run(context.Background(), d, noGrace()); err != nil {
		t.Fatal(err)
	}
	var live, dead int
	for _, m := range e.Manifests {
		if m.Role != estate.RoleReferrer || len(m.Tags) > 0 {
			continue
		}
		if m.Live {
			live++
		} else {
			dead++
		}
		if got := exists(t, srv, pathFor(revisionSpec{m.Repository, dg(m.Digest)})); got != m.Live {
			t.Errorf("tagless referrer %s (subject %s, live=%v): exists=%v", m.Digest, m.Subject, m.Live, got)
		}
	}
	if live == 0 || dead == 0 {
		t.Fatalf("estate has %d live and %d dead tagless referrers; want some of each", live, dead)
	}
}

func TestGCDefaultGraceDeletesNothing(t *testing.T) {
	srv, _, d := seeded(t)
	before := blobSizes(t, srv)
	rep, err := Run(context.Background(), d, DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	if rep.ManifestsDeleted+rep.BlobsDeleted+rep.LayerLinksDeleted != 0 || rep.BytesReclaimed != 0 {
		t.Errorf("fresh estate within grace: %+v", rep)
	}
	if got := blobSizes(t, srv); len(got) != len(before) {
		t.Errorf("blobs %d -> %d", len(before), len(got))
	}
}

var errCrash = errors.New("simulated crash")

func TestGCCrashResumes(t *testing.T) {
	_, _, clean := seeded(t)
	deletions := 0
	count := noGrace()
	count.beforeDelete = func(string) error { deletions++; return nil }
	want, err := Run(context.Background(), clean, count)
	if err != nil {
		t.Fatal(err)
	}
	for _, budget := range []int{3, deletions / 2, deletions - 1} {
		t.Run(fmt.Sprintf("after %d deletions", budget), func(t *testing.T) {
			srv, e, d := seeded(t)
			opts := noGrace()
			n := 0
			opts.beforeDelete = func(string) error {
				if n++; n > budget {
					return errCrash
				}
				return nil
			}
			first, err := Run(context.Background(), d, opts)
			if !errors.Is(err, errCrash) {
				t.Fatalf("first run: %v, want the crash", err)
			}
			regtest.PullAll(t, srv.Host, e)
			second, err := Run(context.Background(), d, noGrace())
			if err != nil {
				t.Fatal(err)
			}
			got := Report{
				ManifestsDeleted:  first.ManifestsDeleted + second.ManifestsDeleted,
				BlobsDeleted:      first.BlobsDeleted + second.BlobsDeleted,
				BytesReclaimed:    first.BytesReclaimed + second.BytesReclaimed,
				LayerLinksDeleted: first.LayerLinksDeleted + second.LayerLinksDeleted,
			}
			w := Report{ManifestsDeleted: want.ManifestsDeleted, BlobsDeleted: want.BlobsDeleted,
				BytesReclaimed: want.BytesReclaimed, LayerLinksDeleted: want.LayerLinksDeleted}
			if diff := cmp.Diff(w, got); diff != "" {
				t.Errorf("crash + re-run totals differ from a clean run (-clean +crash):\n%s", diff)
			}
			regtest.PullAll(t, srv.Host, e)
		})
	}
}

func TestGCLock(t *testing.T) {
	_, _, d := seeded(t)
	ctx := context.Background()
	unlock, err := Lock(ctx, d, noGrace())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Run(ctx, d, noGrace()); !errors.Is(err, ErrLocked) {
		t.Fatalf("second run: %v, want ErrLocked", err)
	}
	// A stale lock is taken over.
	stale := noGrace()
	stale.Now = func() time.Time { return time.Now().Add(7 * time.Hour) }
	if _, err := Run(ctx, d, stale); err != nil {
		t.Fatalf("stale lock not taken over: %v", err)
	}
	unlock()
}

func TestGCKeepUntagged(t *testing.T) {
	srv, e, d := seeded(t)
	opts := noGrace()
	opts.KeepUntagged = true
	rep, err := Run(context.Background(), d, opts)
	if err != nil {
		t.Fatal(err)
	}
	if rep.ManifestsDeleted != 0 {
		t.Errorf("manifestsDeleted = %d with --keep-untagged", rep.ManifestsDeleted)
	}
	for _, m := range e.Manifests {
		if !exists(t, srv, pathFor(revisionSpec{m.Repository, dg(m.Digest)})) {
			t.Errorf("%s@%s deleted", m.Repository, m.Digest)
		}
	}
	regtest.PullAll(t, srv.Host, e)
}

func TestGCKeepPrevious(t *testing.T) {
	srv, e, d := seeded(t)
	opts := noGrace()
	opts.KeepPrevious = 1
	opts.NoKeepBases = true // the first debian is team-b/web's base
	if _, err := Run(context.Background(), d, opts); err != nil {
		t.Fatal(err)
	}
	// base/debian:12 was pushed three times: the current one and the one
	// before survive, the first goes.
	var debian []estate.Manifest
	for _, m := range e.Manifests {
		if m.Repository == "base/debian" && m.Role == estate.RoleImage {
			debian = append(debian, m)
		}
	}
	if len(debian) != 3 {
		t.Fatalf("estate has %d base/debian images, want 3", len(debian))
	}
	var kept []bool
	for _, m := range debian {
		kept = append(kept, exists(t, srv, pathFor(revisionSpec{m.Repository, dg(m.Digest)})))
	}
	if diff := cmp.Diff([]bool{false, true, true}, kept); diff != "" {
		t.Errorf("base/debian revisions kept, in push order (-want +got):\n%s", diff)
	}
	regtest.PullAll(t, srv.Host, e)
}

func TestGCBadInput(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct{ name, config, want string }{
		{"unparsable", write("bad.yml", "version: 0.1\nstorage: [\n"), "parsing registry config"},
		{"no driver", write("nodriver.yml", "version: 0.1\nstorage:\n  delete:\n    enabled: true\n"), "storage"},
		{"missing", filepath.Join(dir, "nope.yml"), "reading registry config"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Open(ctx, tc.config)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Open: %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
	// A storage: section alone (backup's --target-config, as the README
	// shows it) opens: there is only one version to assume.
	bare := write("storage.yml", "storage:\n  filesystem:\n    rootdirectory: "+filepath.Join(dir, "root")+"\n")
	if d, err := Open(ctx, bare); err != nil || d.Name() != "filesystem" {
		t.Errorf("a storage section without version: %v", err)
	}
	if _, err := Open(ctx, write("v2.yml", "version: 0.2\nstorage:\n  inmemory: {}\n")); err == nil || !strings.Contains(err.Error(), "version") {
		t.Errorf("version 0.2: %v, want distribution's refusal", err)
	}
	empty := t.TempDir()
	d, err := OpenRoot(ctx, empty)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Run(ctx, d, noGrace()); !errors.Is(err, ErrNotRegistry) {
		t.Errorf("empty root: %v, want ErrNotRegistry", err)
	}
	if entries, _ := os.ReadDir(empty); len(entries) != 0 {
		t.Errorf("gc wrote into a non-registry root: %v", entries)
	}
}

// A push during the run that revives a planned manifest under a new tag
// (its blobs already present, so nothing is uploaded again) survives, and
// pulls afterwards.
func TestGCPushDuringRun(t *testing.T) {
	srv, e, d := seeded(t)
	var dead estate.Manifest
	for _, m := range e.Manifests {
		if m.Repository == "base/debian" && !m.Live && m.Role == estate.RoleImage {
			dead = m
			break
		}
	}
	if dead.Repository == "" {
		t.Fatal("no dead base/debian image in the estate")
	}
	pushed := false
	opts := noGrace()
	var mu sync.Mutex
	opts.beforeDelete = func(p string) error {
		// At base/debian's first deletion (repositories are swept
		// concurrently: another's may come first, when the dead manifest
		// can already be gone).
		mu.Lock()
		defer mu.Unlock()
		if pushed || !strings.Contains(p, "/repositories/base/debian/") {
			return nil
		}
		pushed = true
		img, err := remote.Image(regtest.Ref(t, srv, "base/debian@"+dead.Digest.String()))
		if err != nil {
			return err
		}
		return remote.Write(regtest.Ref(t, srv, "base/debian:revived"), img)
	}
	if _, err := Run(context.Background(), d, opts); err != nil {
		t.Fatal(err)
	}
	if !pushed {
		t.Fatal("nothing was deleted, so nothing was pushed")
	}
	if err := regtest.Pull(context.Background(), regtest.Ref(t, srv, "base/debian:revived")); err != nil {
		t.Errorf("pulling the image pushed during gc: %v", err)
	}
	regtest.PullAll(t, srv.Host, e)
}

func TestGCPruneOrphanSignatures(t *testing.T) {
	srv, e, d := seeded(t)
	opts := noGrace()
	opts.PruneOrphanSignatures = true
	rep, err := Run(context.Background(), d, opts)
	if err != nil {
		t.Fatal(err)
	}
	pruned := 0
	for _, m := range e.Manifests {
		for _, tag := range m.Tags {
			subj, ok := signatureSubject(tag)
			if !ok {
				continue
			}
			s, found := e.Find(m.Repository, v1.Hash{Algorithm: "sha256", Hex: subj.Encoded()})
			wantKept := found && s.Live
			if !wantKept {
				pruned++
			}
			if got := exists(t, srv, pathFor(tagSpec{m.Repository, tag})); got != wantKept {
				t.Errorf("%s:%s (subject live=%v): tag exists=%v", m.Repository, tag, wantKept, got)
			}
			if got := exists(t, srv, pathFor(revisionSpec{m.Repository, dg(m.Digest)})); got != wantKept {
				t.Errorf("%s@%s behind %s: revision exists=%v, want %v", m.Repository, m.Digest, tag, got, wantKept)
			}
		}
	}
	if pruned == 0 || rep.TagsDeleted != pruned {
		t.Errorf("pruned %d orphan signature tags, estate has %d", rep.TagsDeleted, pruned)
	}
}

func TestGCUploads(t *testing.T) {
	srv, _, d := seeded(t)
	now := time.Now()
	for id, started := range map[string]time.Time{"old": now.Add(-200 * time.Hour), "new": now.Add(-time.Hour)} {
		dir := filepath.Join(srv.Root, filepath.FromSlash(pathFor(uploadSpec{"team-a/api", id})))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "startedat"), []byte(started.UTC().Format(time.RFC3339)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := Run(context.Background(), d, noGrace())
	if err != nil {
		t.Fatal(err)
	}
	if rep.UploadsDeleted != 1 || exists(t, srv, pathFor(uploadSpec{"team-a/api", "old"})) || !exists(t, srv, pathFor(uploadSpec{"team-a/api", "new"})) {
		t.Errorf("uploadsDeleted = %d; want only the 200h-old upload gone", rep.UploadsDeleted)
	}
}

func TestGCPruneEmptyRepos(t *testing.T) {
	srv, _, d := seeded(t)
	// Untag everything in team-d/tool, as deleting its tags through the API would.
	if err := os.RemoveAll(filepath.Join(srv.Root, filepath.FromSlash(pathFor(tagsSpec{"team-d/tool"})))); err != nil {
		t.Fatal(err)
	}
	opts := noGrace()
	opts.PruneEmptyRepos = true
	rep, err := Run(context.Background(), d, opts)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"team-d/tool"}, rep.RepositoriesDeleted); diff != "" {
		t.Errorf("repositories deleted (-want +got):\n%s", diff)
	}
	if exists(t, srv, pathFor(repositorySpec{"team-d/tool"})) || !exists(t, srv, pathFor(repositorySpec{"team-d/repro"})) {
		t.Error("wrong repositories on disk after pruning")
	}
}

// A manifest of a media type gc does not know is kept and reported, with
// what it names.
func TestGCUnknownMediaType(t *testing.T) {
	srv, e, d := seeded(t)
	var dead estate.Manifest
	for _, m := range e.Manifests {
		if !m.Live && len(m.Blobs) > 0 {
			dead = m
			break
		}
	}
	body := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.example.future+json","layers":[{"digest":"` + dead.Blobs[len(dead.Blobs)-1].String() + `"}]}`)
	udg := digest.FromBytes(body)
	write := func(p string, b []byte) {
		full := filepath.Join(srv.Root, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(pathFor(blobDataSpec{udg}), body)
	write(pathFor(revisionLinkSpec{"team-d/tool", udg}), []byte(udg))
	rep, err := Run(context.Background(), d, noGrace())
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Kept) != 1 || rep.Kept[0].Digest != udg || !strings.Contains(rep.Kept[0].Reason, "unknown media type") {
		t.Errorf("kept = %+v, want the unknown manifest", rep.Kept)
	}
	if !exists(t, srv, pathFor(revisionSpec{"team-d/tool", udg})) || !exists(t, srv, pathFor(blobSpec{dg(dead.Blobs[len(dead.Blobs)-1])})) {
		t.Error("unknown manifest or the blob it names was deleted")
	}
	regtest.PullAll(t, srv.Host, e)
}

func TestGCPruneEmptyRepoKeepsNested(t *testing.T) {
	srv, e, d := seeded(t)
	var live estate.Manifest
	for _, m := range e.Manifests {
		if m.Repository == "team-d/tool" && m.Live && m.Role == estate.RoleImage {
			live = m
			break
		}
	}
	if live.Repository == "" {
		t.Fatal("no live team-d/tool image in the estate")
	}
	img, err := remote.Image(regtest.Ref(t, srv, "team-d/tool@"+live.Digest.String()))
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(regtest.Ref(t, srv, "team-d/tool/nested:1"), img); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(srv.Root, filepath.FromSlash(pathFor(tagsSpec{"team-d/tool"})))); err != nil {
		t.Fatal(err)
	}
	opts := noGrace()
	opts.PruneEmptyRepos = true
	rep, err := Run(context.Background(), d, opts)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"team-d/tool"}, rep.RepositoriesDeleted); diff != "" {
		t.Errorf("repositories deleted (-want +got):\n%s", diff)
	}
	if exists(t, srv, path.Dir(pathFor(revisionsSpec{"team-d/tool", digest.SHA256}))) {
		t.Error("team-d/tool still has manifests")
	}
	if err := regtest.Pull(context.Background(), regtest.Ref(t, srv, "team-d/tool/nested:1")); err != nil {
		t.Errorf("pulling the nested repository after pruning its parent: %v", err)
	}
}
