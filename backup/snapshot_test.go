package backup

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/regkeeper/regkeeper/internal/client"
	"github.com/regkeeper/regkeeper/internal/testbed/embedded"
	"github.com/regkeeper/regkeeper/internal/testbed/regtest"
)

// pushRandom pushes a random image (layers of size bytes) as ref and
// returns its digest.
func pushRandom(t *testing.T, srv *embedded.Server, ref string, size int64, layers int, opts ...remote.Option) v1.Hash {
	t.Helper()
	img, err := random.Image(size, int64(layers))
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(regtest.Ref(t, srv, ref), img, opts...); err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	return d
}

// snapshotTags maps repo:tag to digest for the tag entries of s.
func snapshotTags(s *Snapshot) map[string]v1.Hash {
	out := map[string]v1.Hash{}
	for _, e := range s.Entries() {
		if e.Kind() == KindTag {
			out[e.Repository()+":"+e.Tag()] = e.Digest
		}
	}
	return out
}

// A backup interrupted at 5 of 10 images is not a complete backup: verify
// says the run did not finish (exit 1 in the CLI), restore does not pick
// it; the next complete run makes verify pass.
func TestInterruptedBackupIsNotComplete(t *testing.T) {
	srv := regtest.Registry(t, embedded.Options{})
	want := map[string]v1.Hash{}
	for i := range 10 {
		ref := fmt.Sprintf("app/svc%d:1", i)
		want[ref] = pushRandom(t, srv, ref, 512, 1)
	}
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	opts := testOptions()
	opts.Client.Jobs = 1
	var done atomic.Int32
	opts.TagDone = func(repo, tag string) {
		if done.Add(1) == 5 {
			cancel()
		}
	}
	res, err := Run(ctx, srv.Host, dir, opts)
	if !errors.Is(err, context.Canceled) || res.Complete || res.Snapshot == "" {
		t.Fatalf("interrupted run: err %v, complete %v, snapshot %q", err, res.Complete, res.Snapshot)
	}
	v, err := Verify(context.Background(), dir, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if v.OK() || v.Completeness != CompletenessIncomplete || v.Snapshot != nil || v.LastRun == nil ||
		v.LastRun.Status != SnapshotIncomplete || v.LastRun.Reason != "interrupted" || v.LastRun.Images != 5 {
		t.Errorf("verify after an interrupted run: ok %v, %s, snapshot %+v, last run %+v", v.OK(), v.Completeness, v.Snapshot, v.LastRun)
	}
	if len(v.Problems) != 1 || v.Problems[0].Problem != ProblemUnfinished || !strings.Contains(v.Problems[0].Detail, "did not finish: interrupted; no run has completed") {
		t.Errorf("problems: %+v", v.Problems)
	}
	if _, err := Restore(context.Background(), dir, srv.Host, RestoreOptions{Client: regtest.Client(), DryRun: true}); !errors.Is(err, ErrNoSnapshot) {
		t.Errorf("restore of a backup no run completed: %v", err)
	}

	// The next run completes it; an interrupted run after it is reported,
	// and restore picks the complete one, saying so.
	full := backup(t, srv.Host, dir, testOptions())
	if !full.Complete || full.Added != 5 || full.Unchanged != 5 {
		t.Errorf("completing run: %+v", full)
	}
	v = mustVerify(t, dir)
	if v.Completeness != CompletenessComplete || v.Snapshot == nil || v.Snapshot.ID != full.Snapshot || v.Snapshot.Images != 10 {
		t.Errorf("verify after a complete run: %s %+v", v.Completeness, v.Snapshot)
	}
	ctx2, cancel2 := context.WithCancel(context.Background())
	cancel2()
	if _, err := Run(ctx2, srv.Host, dir, testOptions()); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled run: %v", err)
	}
	v, _ = Verify(context.Background(), dir, VerifyOptions{})
	if v.OK() || v.Completeness != CompletenessIncomplete || v.Snapshot == nil || v.Snapshot.ID != full.Snapshot {
		t.Errorf("verify after a complete then an interrupted run: %s %+v %+v", v.Completeness, v.Snapshot, v.Problems)
	}
	rr, err := Restore(context.Background(), dir, srv.Host, RestoreOptions{Client: regtest.Client(), DryRun: true})
	if err != nil || rr.Snapshot == nil || rr.Snapshot.ID != full.Snapshot || rr.Images != 10 || !strings.Contains(rr.Note, "did not finish") {
		t.Errorf("restore after an interrupted run: %v %+v", err, rr)
	}
}

// A first run refused by the registry's credentials leaves an empty
// layout; it does not verify.
func TestFailedFirstBackupDoesNotVerify(t *testing.T) {
	srv := regtest.Registry(t, embedded.Options{Username: "ops", Password: "s3cret"})
	good := remote.WithAuth(authn.FromConfig(authn.AuthConfig{Username: "ops", Password: "s3cret"}))
	pushRandom(t, srv, "app/a:1", 256, 1, good)
	dir := t.TempDir()
	opts := testOptions()
	opts.Client.Keychain = staticKeys{authn.FromConfig(authn.AuthConfig{Username: "ops", Password: "wrong"})}
	res, err := Run(context.Background(), srv.Host, dir, opts)
	if err == nil || !client.Unauthorized(err) || res == nil || res.Complete {
		t.Fatalf("backup with bad credentials: err %v, result %+v", err, res)
	}
	v, err := Verify(context.Background(), dir, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if v.OK() || v.Completeness != CompletenessIncomplete || v.LastRun == nil || !strings.HasPrefix(v.LastRun.Reason, "failed: authentication failed") {
		t.Errorf("verify of the empty layout: ok %v %s %+v %+v", v.OK(), v.Completeness, v.LastRun, v.Problems)
	}
}

type staticKeys struct{ a authn.Authenticator }

func (k staticKeys) Resolve(authn.Resource) (authn.Authenticator, error) { return k.a, nil }

// A layout with no snapshot (an older regkeeper, another tool) verifies
// by its blobs with completeness unknown: neither failed nor called
// complete.
func TestVerifyWithoutSnapshotsIsUnknown(t *testing.T) {
	srv := regtest.Registry(t, embedded.Options{})
	pushRandom(t, srv, "app/a:1", 256, 1)
	dir := t.TempDir()
	backup(t, srv.Host, dir, testOptions())
	if err := os.RemoveAll(Layout{Root: dir}.SnapshotsDir()); err != nil {
		t.Fatal(err)
	}
	v := mustVerify(t, dir)
	if v.Completeness != CompletenessUnknown || v.Snapshot != nil || v.LastRun != nil || v.Images != 1 {
		t.Errorf("verify without snapshots: %+v", v)
	}
	rr, err := Restore(context.Background(), dir, srv.Host, RestoreOptions{Client: regtest.Client(), DryRun: true})
	if err != nil || rr.Completeness != CompletenessUnknown || rr.Images != 1 || !strings.Contains(rr.Note, "no snapshot") {
		t.Errorf("restore without snapshots: %v %+v", err, rr)
	}
}

func TestApplyPolicy(t *testing.T) {
	day := func(d int) time.Time { return time.Date(2026, 11, 2, 3, 0, 0, 0, time.UTC).AddDate(0, 0, d) } // a Monday
	var snaps []*Snapshot
	add := func(id string, d int, status string) {
		snaps = append(snaps, &Snapshot{ID: id, Seq: len(snaps) + 1, Time: day(d), Status: status})
	}
	add("a", 0, SnapshotComplete)    // Mon W45
	add("b", 1, SnapshotComplete)    // Tue W45
	add("c", 1, SnapshotIncomplete)  // Tue W45, after b
	add("d", 7, SnapshotComplete)    // Mon W46
	add("e", 8, SnapshotComplete)    // Tue W46
	add("f", 30, SnapshotComplete)   // Wed W50, December
	add("g", 31, SnapshotIncomplete) // Thu W50, the last run, unfinished
	type kept map[string]string      // id -> reasons
	for _, tc := range []struct {
		name string
		p    ExpirePolicy
		want kept
	}{
		{"last 2", ExpirePolicy{Last: 2}, kept{"g": "unfinished run, newer than the latest complete", "f": "last", "e": "last"}},
		{"weekly 3", ExpirePolicy{Weekly: 3}, kept{"g": "unfinished run, newer than the latest complete", "f": "weekly 2026-W49", "e": "weekly 2026-W46", "b": "weekly 2026-W45"}},
		{"daily 3", ExpirePolicy{Daily: 3}, kept{"g": "unfinished run, newer than the latest complete", "f": "daily 2026-12-02", "e": "daily 2026-11-10", "d": "daily 2026-11-09"}},
		{"monthly 5", ExpirePolicy{Monthly: 5}, kept{"g": "unfinished run, newer than the latest complete", "f": "monthly 2026-12", "e": "monthly 2026-11"}},
		{"last 1 + weekly 2", ExpirePolicy{Last: 1, Weekly: 2}, kept{"g": "unfinished run, newer than the latest complete", "f": "last, weekly 2026-W49", "e": "weekly 2026-W46"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := kept{}
			ds := ApplyPolicy(snaps, tc.p)
			if len(ds) != len(snaps) || ds[0].ID != "g" {
				t.Fatalf("decisions not newest first: %+v", ds)
			}
			for _, d := range ds {
				if d.Keep {
					got[d.ID] = strings.Join(d.Reasons, ", ")
				} else if len(d.Reasons) == 0 {
					t.Errorf("%s dropped without a reason", d.ID)
				}
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("kept (-want +got):\n%s", diff)
			}
		})
	}
	if !(ExpirePolicy{}).Empty() {
		t.Error("an empty policy is not empty")
	}
}

// Three runs a week apart with a moved tag (Mon W48, Tue W48, Wed W49);
// forget --keep-last 1 --keep-weekly 2 --prune drops the first run and
// with it only the blobs of its app/api:prod: what stays is exactly what
// the kept snapshots reach; each kept snapshot restores whole into an
// empty registry.
func TestForgetPrune(t *testing.T) {
	forgetPrune(t, Layout{Root: t.TempDir()})
}

// forgetPrune is TestForgetPrune on the layout l, wherever it is (a
// directory, MinIO, Azurite); it returns the result of the prune.
func forgetPrune(t *testing.T, l Layout) *ForgetResult {
	t.Helper()
	ctx := context.Background()
	srv := regtest.Registry(t, embedded.Options{})
	pushRandom(t, srv, "app/base:1", 1024, 2)
	var runs []*Result
	prods := []v1.Hash{}
	for i, d := range []int{0, 1, 8} { // Mon W48, Tue W48, Wed W49
		prods = append(prods, pushRandom(t, srv, "app/api:prod", 2048, 2))
		if i == 1 {
			pushRandom(t, srv, "app/api:rc", 512, 1)
		}
		opts := testOptions()
		opts.Now = time.Date(2026, 11, 23, 3, 0, 0, 0, time.UTC).AddDate(0, 0, d)
		res, err := RunLayout(ctx, srv.Host, l, opts)
		if err != nil || len(res.Errors) > 0 {
			t.Fatalf("backup %d: %v %+v", i, err, res.Errors)
		}
		runs = append(runs, res)
	}
	snaps, err := l.ReadSnapshots()
	if err != nil || len(snaps) != 3 {
		t.Fatalf("snapshots: %v %d", err, len(snaps))
	}
	for i, s := range snaps {
		if s.ID != runs[i].Snapshot || !s.Complete() || snapshotTags(s)["app/api:prod"] != prods[i] {
			t.Errorf("snapshot %d: %+v", i, s.Info())
		}
	}
	// app:prod of the first run is restorable by name while its snapshot is kept.
	rr, err := RestoreLayout(ctx, l, srv.Host, RestoreOptions{Client: regtest.Client(), DryRun: true, Snapshot: runs[0].Snapshot})
	if err != nil || rr.Images != 2 {
		t.Fatalf("restore of the first snapshot: %v %+v", err, rr)
	}
	for _, e := range rr.Entries {
		if e.Repository == "app/api" && e.Tag == "prod" && e.Digest != prods[0].String() {
			t.Errorf("first snapshot restores app/api:prod at %s, want %s", e.Digest, prods[0])
		}
	}

	// Keep the last and one per week: the first run goes, and with it only
	// the blobs of its app/api:prod.
	before := blobSet(t, l)
	policy := ForgetOptions{Policy: ExpirePolicy{Last: 1, Weekly: 2}, Prune: true, DryRun: true}
	plan, err := ForgetLayout(ctx, l, policy)
	if err != nil {
		t.Fatal(err)
	}
	if plan.Kept != 2 || plan.Removed != 1 || plan.Prune == nil || plan.Prune.Blobs != 4 || plan.Prune.Bytes == 0 { // manifest, config, 2 layers
		t.Errorf("plan: kept %d removed %d prune %+v", plan.Kept, plan.Removed, plan.Prune)
	}
	if diff := cmp.Diff(before, blobSet(t, l)); diff != "" {
		t.Errorf("dry run deleted blobs:\n%s", diff)
	}
	res, err := ForgetLayout(ctx, l, ForgetOptions{Policy: policy.Policy, Prune: true})
	if err != nil {
		t.Fatal(err)
	}
	snaps, _ = l.ReadSnapshots()
	if len(snaps) != 2 || snaps[0].ID != runs[1].Snapshot || snaps[1].ID != runs[2].Snapshot {
		t.Fatalf("snapshots after forget: %d", len(snaps))
	}
	// Exactly what the kept snapshots reach stays.
	need := map[string]bool{}
	c := &manifestCache{l: l}
	for _, s := range snaps {
		for _, e := range s.Entries() {
			need[e.Digest.String()] = true
			for _, b := range c.get(e.Descriptor).refs.Blobs {
				need[b.Digest.String()] = true
			}
		}
	}
	if diff := cmp.Diff(need, blobSet(t, l)); diff != "" {
		t.Errorf("blobs after prune (-needed +present):\n%s", diff)
	}
	if res.Prune.KeptBlobs != len(need) || res.Prune.Blobs != 4 {
		t.Errorf("prune deleted %d blobs and kept %d, want 4 and %d", res.Prune.Blobs, res.Prune.KeptBlobs, len(need))
	}
	if v, err := VerifyLayout(ctx, l, VerifyOptions{}); err != nil || !v.OK() {
		t.Errorf("verify after prune: %v %+v", err, v)
	}
	if _, err := RestoreLayout(ctx, l, srv.Host, RestoreOptions{Client: regtest.Client(), DryRun: true, Snapshot: runs[0].Snapshot}); !errors.Is(err, ErrNoSnapshot) {
		t.Errorf("restore of a forgotten snapshot: %v", err)
	}
	// Each kept snapshot restores whole into an empty registry.
	for _, s := range snaps {
		dst := regtest.Registry(t, embedded.Options{})
		rr, err := RestoreLayout(ctx, l, dst.Host, RestoreOptions{Client: regtest.Client(), Snapshot: s.ID})
		if err != nil || len(rr.Errors) > 0 {
			t.Fatalf("restore of %s: %v %+v", s.ID, err, rr.Errors)
		}
		for ref, d := range snapshotTags(s) {
			r := regtest.Ref(t, dst, ref)
			if err := regtest.Pull(ctx, r); err != nil {
				t.Errorf("snapshot %s: pulling %s: %v", s.ID, ref, err)
			}
			if desc, err := remote.Head(r); err != nil || desc.Digest != d {
				t.Errorf("snapshot %s: %s is %v (%v), want %s", s.ID, ref, desc, err, d)
			}
		}
	}
	return res
}

// blobSet lists the blobs of the layout by digest.
func blobSet(t *testing.T, l Layout) map[string]bool {
	t.Helper()
	blobs, err := l.listBlobs()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, b := range blobs {
		out[b.d.String()] = true
	}
	return out
}

// A layer damaged in place (same size): verify names the image it breaks,
// the next backup notices and fetches it again, and verify --repair does
// too; the count of bad blobs is of blobs, not problems.
func TestCorruptionSameSize(t *testing.T) {
	srv := regtest.Registry(t, embedded.Options{})
	pushRandom(t, srv, "app/a:1", 4096, 2)
	img := pushRandom(t, srv, "app/b:1", 4096, 1)
	dir := t.TempDir()
	l := Layout{Root: dir}
	backup(t, srv.Host, dir, testOptions())
	raw, err := l.ReadBlob(img)
	if err != nil {
		t.Fatal(err)
	}
	layer := (&manifestCache{l: l}).get(v1.Descriptor{Digest: img}).refs.Blobs[1]
	flip := func() {
		f, err := os.OpenFile(l.Blob(layer.Digest), os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 1)
		f.ReadAt(b, 100)
		b[0] ^= 0xff
		if _, err := f.WriteAt(b, 100); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	_ = raw

	flip()
	v, err := Verify(context.Background(), dir, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := []Problem{{Blob: layer.Digest.String(), Problem: ProblemCorrupt, Images: []string{"app/b:1"}}}
	if diff := cmp.Diff(want, v.Problems, cmpIgnoreDetail); diff != "" || v.BadBlobs != 1 {
		t.Errorf("verify of a flipped byte, %d bad blobs (-want +got):\n%s", v.BadBlobs, diff)
	}
	// The next backup re-hashes the blob changed since it was written.
	res := backup(t, srv.Host, dir, testOptions())
	if res.BlobsWritten != 1 || res.BytesWritten != layer.Size {
		t.Errorf("backup after the flip wrote %d blobs (%d bytes), want the damaged layer", res.BlobsWritten, res.BytesWritten)
	}
	mustVerify(t, dir)

	// verify --repair fetches it again.
	flip()
	if err := os.Remove(l.Blob(img)); err != nil { // and a manifest goes missing
		t.Fatal(err)
	}
	v, err = Verify(context.Background(), dir, VerifyOptions{Repair: srv.Host, Client: regtest.Client()})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(v.Repaired)
	wantRepaired := []string{img.String(), layer.Digest.String()}
	sort.Strings(wantRepaired)
	if !v.OK() || !cmp.Equal(wantRepaired, v.Repaired) {
		t.Errorf("verify --repair: ok %v, repaired %v, want %v; problems %+v", v.OK(), v.Repaired, wantRepaired, v.Problems)
	}
	mustVerify(t, dir)

	// A blob cut short is one bad blob, even with two problems.
	if err := os.Truncate(l.Blob(layer.Digest), 10); err != nil {
		t.Fatal(err)
	}
	v, _ = Verify(context.Background(), dir, VerifyOptions{})
	if len(v.Problems) != 2 || v.BadBlobs != 1 {
		t.Errorf("a truncated blob: %d bad blobs, problems %+v", v.BadBlobs, v.Problems)
	}
}

var cmpIgnoreDetail = cmp.Comparer(func(a, b Problem) bool {
	return a.Blob == b.Blob && a.Problem == b.Problem && cmp.Equal(a.Images, b.Images)
})

// A full disk is a failure to write the backup, with the path, not the
// registry being unreachable.
func TestBackupDiskFull(t *testing.T) {
	srv := regtest.Registry(t, embedded.Options{})
	pushRandom(t, srv, "app/big:1", 256<<10, 1)
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=128k"); err != nil {
		t.Skipf("cannot mount a small tmpfs here (%v): the full-disk path is not exercised", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, 0) })
	res, err := Run(context.Background(), srv.Host, dir, testOptions())
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if len(res.Errors) != 1 || res.Complete {
		t.Fatalf("errors %+v, complete %v", res.Errors, res.Complete)
	}
	msg := res.Errors[0].Error
	if !strings.HasPrefix(msg, "writing the backup: "+dir+"/") || !strings.Contains(msg, "no space left on device") || strings.Contains(msg, "unreachable") {
		t.Errorf("error: %s", msg)
	}
}
