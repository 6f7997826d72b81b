package backup

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/regkeeper/regkeeper/internal/testbed/embedded"
	"github.com/regkeeper/regkeeper/internal/testbed/estate"
	"github.com/regkeeper/regkeeper/internal/testbed/regtest"
	"github.com/regkeeper/regkeeper/internal/testbed/stock"
)

var testNow = time.Date(2026, 11, 23, 3, 0, 0, 0, time.UTC)

func testOptions() Options {
	o := DefaultOptions()
	o.Client = regtest.Client()
	o.Now = testNow
	return o
}

func backup(t *testing.T, host, dir string, opts Options) *Result {
	t.Helper()
	res, err := Run(context.Background(), host, dir, opts)
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	if len(res.Errors) > 0 {
		t.Fatalf("backup errors: %+v", res.Errors)
	}
	return res
}

// tagsInBackup maps repo:tag to digest for the tag entries of dir.
func tagsInBackup(t *testing.T, dir string) map[string]v1.Hash {
	t.Helper()
	return layoutTags(t, Layout{Root: dir})
}

// layoutTags is the tags of a backup's index.json, wherever it is.
func layoutTags(t *testing.T, l Layout) map[string]v1.Hash {
	t.Helper()
	entries, err := l.ReadIndex()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]v1.Hash{}
	for _, e := range entries {
		if e.Kind() != KindTag {
			continue
		}
		k := e.Repository() + ":" + e.Tag()
		if _, dup := out[k]; dup {
			t.Errorf("duplicate entry for %s", k)
		}
		if e.Annotations[AnnotationRefName] != k {
			t.Errorf("%s: ref.name %q", k, e.Annotations[AnnotationRefName])
		}
		out[k] = e.Digest
	}
	return out
}

func mustVerify(t *testing.T, dir string) *VerifyResult {
	t.Helper()
	v, err := Verify(context.Background(), dir, VerifyOptions{})
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if !v.OK() {
		t.Errorf("verify found problems: %+v", v.Problems)
	}
	return v
}

// The whole cycle on the sample estate: back up, check the layout with
// go-containerregistry's own reader, back up again (nothing written),
// restore into a second registry and compare every tag and referrer.
func TestBackupRestoreEstate(t *testing.T) {
	srv, e := regtest.Seeded(t, embedded.Options{})
	dir := filepath.Join(t.TempDir(), "backup")

	res := backup(t, srv.Host, dir, testOptions())
	want := e.Tags()
	if res.Images != len(want) || res.Added != len(want) || res.Updated != 0 || res.Unchanged != 0 {
		t.Errorf("first run: images %d updated %d unchanged %d, want %d new", res.Images, res.Updated, res.Unchanged, len(want))
	}
	if res.BlobsWritten == 0 || res.BytesWritten == 0 || res.ReferrersAPI {
		t.Errorf("first run: %+v", res)
	}
	if diff := cmp.Diff(want, tagsInBackup(t, dir)); diff != "" {
		t.Errorf("tags in backup (-want +got):\n%s", diff)
	}
	// mirror/alpine:3.20 is an index whose children are not in its
	// repository: recorded, not fetched from elsewhere.
	if len(res.Absent) != 2 || res.Absent[0].Repository != "mirror/alpine" {
		t.Errorf("absent children: %+v", res.Absent)
	}
	// It is a problem in the registry, reported once; nothing failed.
	if len(res.Problems) != 1 || res.Problems[0].Repository != "mirror/alpine" || res.Problems[0].Tag != "3.20" ||
		res.Problems[0].Kind != "children-absent" || len(res.Errors) != 0 {
		t.Errorf("problems %+v, errors %+v; want mirror/alpine:3.20's absent children, no error", res.Problems, res.Errors)
	}

	// Everything live is in the backup, except the SBOMs pushed by digest
	// with a subject and no fallback tag: distribution v3.1.2 has no
	// referrers API and nothing else lists them.
	l := Layout{Root: dir}
	var unfindable int
	for _, m := range e.Manifests {
		if !m.Live || (m.Repository == "mirror/alpine" && m.Role == estate.RoleImage) {
			continue
		}
		inFallback := false
		for _, f := range e.Manifests {
			if f.Role == estate.RoleFallback && f.Repository == m.Repository {
				for _, c := range f.Children {
					inFallback = inFallback || c == m.Digest
				}
			}
		}
		has := l.HasBlob(m.Digest, m.Size)
		switch {
		case m.Role == estate.RoleReferrer && len(m.Tags) == 0 && !inFallback:
			unfindable++
			if has {
				t.Errorf("tagless referrer %s found: update the documentation", m.Digest)
			}
		case !has:
			t.Errorf("live %s %s@%s not in backup", m.Role, m.Repository, m.Digest)
		}
		for _, b := range m.Blobs {
			if has && !l.HasBlob(b, -1) {
				t.Errorf("blob %s of %s@%s not in backup", b, m.Repository, m.Digest)
			}
		}
	}
	if unfindable == 0 {
		t.Error("the estate has no tagless referrer any more: revisit this test")
	}

	// crane, skopeo and regctl read the layout: go-containerregistry's
	// reader finds an image by its ref.name and validates it completely.
	lp, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	ii, err := lp.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	im, _ := ii.IndexManifest()
	var found int
	for _, d := range im.Manifests {
		switch d.Annotations[AnnotationRefName] {
		case "team-a/api:1.0", "base/debian:12":
			img, err := ii.Image(d.Digest)
			if err != nil {
				t.Fatal(err)
			}
			if err := validate.Image(img); err != nil {
				t.Errorf("%s: %v", d.Annotations[AnnotationRefName], err)
			}
			found++
		case "team-e/edge:1.0":
			idx, err := ii.ImageIndex(d.Digest)
			if err != nil {
				t.Fatal(err)
			}
			if err := validate.Index(idx); err != nil {
				t.Errorf("team-e/edge:1.0: %v", err)
			}
			found++
		}
	}
	if found != 3 {
		t.Errorf("found %d of 3 images by ref.name", found)
	}
	mustVerify(t, dir)

	// A second run on an unchanged registry writes nothing, and costs one
	// manifest request (a HEAD) per tag: no blob is read.
	before, _ := os.ReadFile(l.IndexFile())
	counter := &requestCounter{inner: http.DefaultTransport, counts: map[string]int{}}
	opts := testOptions()
	opts.Client.Transport = counter
	again := backup(t, srv.Host, dir, opts)
	// Besides: one GET /v2/ per repository, go-containerregistry's auth
	// handshake (a token request on registries with token auth).
	if pings := counter.counts["GET ping"]; pings > 3*len(e.Repositories()) {
		t.Errorf("%d pings for %d repositories", pings, len(e.Repositories()))
	}
	delete(counter.counts, "GET ping")
	wantRequests := map[string]int{"HEAD manifests": len(want), "GET tags": len(e.Repositories()), "GET catalog": 1, "GET referrers": 1}
	if diff := cmp.Diff(wantRequests, counter.counts); diff != "" {
		t.Errorf("requests of an unchanged run (-want +got):\n%s", diff)
	}
	if len(again.Problems) != 1 {
		t.Errorf("second run: problems %+v, want the index-only copy again", again.Problems)
	}
	if again.BlobsWritten != 0 || again.BytesWritten != 0 || again.Unchanged != len(want) || again.Updated != 0 {
		t.Errorf("second run: %+v", again)
	}
	if again.BlobsSkipped != res.BlobsWritten || again.BytesSkipped != res.BytesWritten {
		t.Errorf("second run skipped %d blobs (%d bytes), first wrote %d (%d)", again.BlobsSkipped, again.BytesSkipped, res.BlobsWritten, res.BytesWritten)
	}
	after, _ := os.ReadFile(l.IndexFile())
	if !bytes.Equal(before, after) {
		t.Error("index.json changed on an unchanged run")
	}

	// Restore into an empty registry: every tag with its digest, every
	// image pullable, the attestation behind its fallback tag listed as a
	// referrer again.
	dst := regtest.Registry(t, embedded.Options{})
	rres, err := Restore(context.Background(), dir, dst.Host, RestoreOptions{Client: regtest.Client()})
	if err != nil {
		t.Fatal(err)
	}
	if len(rres.Errors) > 0 {
		t.Fatalf("restore errors: %+v", rres.Errors)
	}
	if rres.Images != len(want) || rres.BlobsPushed == 0 || rres.ManifestsPushed == 0 {
		t.Errorf("restore: %+v", rres)
	}
	checkRestored(t, dst.Host, want)
	regtest.PullAll(t, dst.Host, e)
	for _, m := range e.Manifests {
		if m.Role != estate.RoleReferrer || !m.Live || !l.HasBlob(m.Digest, -1) {
			continue
		}
		idx, err := remote.Referrers(regtest.Ref(t, dst, m.Repository+"@"+m.Subject.String()).(name.Digest))
		if err != nil {
			t.Fatal(err)
		}
		rim, _ := idx.IndexManifest()
		ok := false
		for _, d := range rim.Manifests {
			ok = ok || d.Digest == m.Digest
		}
		if !ok {
			t.Errorf("referrer %s of %s not listed after restore", m.Digest, m.Subject)
		}
	}

	// Restoring again pushes nothing.
	rres, err = Restore(context.Background(), dir, dst.Host, RestoreOptions{Client: regtest.Client()})
	if err != nil || len(rres.Errors) > 0 {
		t.Fatalf("second restore: %v %+v", err, rres.Errors)
	}
	if rres.BlobsPushed != 0 || rres.ManifestsPushed != 0 || rres.BlobsSkipped == 0 {
		t.Errorf("second restore: %+v", rres)
	}
}

// A tag that moved is updated; with KeepHistory the old entry stays under
// a dated name and restores by digest.
func TestBackupMovedTagKeepsHistory(t *testing.T) {
	srv, e := regtest.Seeded(t, embedded.Options{})
	dir := t.TempDir()
	backup(t, srv.Host, dir, testOptions())
	old := e.Tags()["team-d/tool:1.0"]

	img, err := estate.BuildImage(estate.ImageSpec{Platform: v1.Platform{OS: "linux", Architecture: "amd64"},
		Created: testNow, Layers: []estate.LayerSpec{{Seed: "team-d-tool-v2", Size: 8 * 1024}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(regtest.Ref(t, srv, "team-d/tool:1.0"), img); err != nil {
		t.Fatal(err)
	}
	nd, _ := img.Digest()

	opts := testOptions()
	opts.KeepHistory = true
	opts.Now = testNow.Add(7 * 24 * time.Hour)
	res := backup(t, srv.Host, dir, opts)
	if res.Updated != 1 || res.BlobsWritten != 3 { // manifest, config, layer
		t.Errorf("after moving one tag: %+v", res)
	}
	entries, _ := Layout{Root: dir}.ReadIndex()
	var cur, hist []Entry
	for _, en := range entries {
		if en.Repository() == "team-d/tool" {
			switch en.Kind() {
			case KindTag:
				cur = append(cur, en)
			case KindHistory:
				hist = append(hist, en)
			}
		}
	}
	if len(cur) != 1 || cur[0].Digest != nd {
		t.Errorf("current entries: %+v", cur)
	}
	wantName := "team-d/tool:1.0@" + testNow.Format(time.RFC3339)
	if len(hist) != 1 || hist[0].Digest != old || hist[0].Annotations[AnnotationRefName] != wantName ||
		hist[0].Annotations[AnnotationReplaced] != opts.Now.Format(time.RFC3339) {
		t.Errorf("history entries: %+v, want %s", hist, wantName)
	}
	mustVerify(t, dir)

	// Restore --repo team-d/tool --dry-run lists both, pushes nothing.
	dst := regtest.Registry(t, embedded.Options{})
	ro := RestoreOptions{Client: regtest.Client(), Repo: regexp.MustCompile(`^team-d/tool$`), DryRun: true, Snapshot: SnapshotAll}
	rres, err := Restore(context.Background(), dir, dst.Host, ro)
	if err != nil {
		t.Fatal(err)
	}
	if rres.Images != 1 || rres.History != 1 || len(rres.Entries) != 2 || rres.BlobsPushed != 0 {
		t.Errorf("dry run: %+v", rres)
	}
	if _, err := remote.Head(regtest.Ref(t, dst, "team-d/tool:1.0")); err == nil {
		t.Error("dry run pushed")
	}
	ro.DryRun = false
	if rres, err = Restore(context.Background(), dir, dst.Host, ro); err != nil || len(rres.Errors) > 0 {
		t.Fatalf("restore: %v %+v", err, rres)
	}
	for ref, want := range map[string]v1.Hash{"team-d/tool:1.0": nd, "team-d/tool@" + old.String(): old} {
		desc, err := remote.Head(regtest.Ref(t, dst, ref))
		if err != nil || desc.Digest != want {
			t.Errorf("%s: %v %v", ref, desc, err)
		}
	}
}

// Verify names a corrupt blob and a missing one.
func TestVerifyFindsCorruption(t *testing.T) {
	srv, e := regtest.Seeded(t, embedded.Options{})
	dir := t.TempDir()
	backup(t, srv.Host, dir, testOptions())
	v := mustVerify(t, dir)
	if v.Images != len(e.Tags()) || v.Blobs == 0 {
		t.Errorf("verify: %+v", v)
	}
	var api, worker estate.Manifest
	for _, m := range e.Manifests {
		if m.Live && m.Repository == "team-a/api" && m.Role == estate.RoleImage {
			api = m
		}
		if m.Repository == "team-c/worker" {
			worker = m
		}
	}
	l := Layout{Root: dir}
	layer := api.Blobs[len(api.Blobs)-1]
	b, err := os.ReadFile(l.Blob(layer))
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff // same size, other content
	if err := os.WriteFile(l.Blob(layer), b, 0o644); err != nil {
		t.Fatal(err)
	}
	missing := worker.Blobs[len(worker.Blobs)-1]
	if err := os.Remove(l.Blob(missing)); err != nil {
		t.Fatal(err)
	}
	v, err = Verify(context.Background(), dir, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, p := range v.Problems {
		got[p.Blob] = p.Problem
	}
	want := map[string]string{layer.String(): ProblemCorrupt, missing.String(): ProblemMissing}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("problems (-want +got):\n%s\n%+v", diff, v.Problems)
	}

	// The next backup repairs what it needs: the missing blob comes back,
	// and so does the one damaged in place (its mtime changed).
	backup(t, srv.Host, dir, testOptions())
	if !l.HasBlob(missing, -1) {
		t.Error("backup did not refetch a missing blob")
	}
	if _, err := l.ReadBlob(layer); err != nil {
		t.Errorf("backup did not refetch a blob damaged in place: %v", err)
	}
	mustVerify(t, dir)
}

// requestCounter counts requests by method and kind of path.
type requestCounter struct {
	inner  http.RoundTripper
	mu     sync.Mutex
	counts map[string]int
}

func (c *requestCounter) RoundTrip(req *http.Request) (*http.Response, error) {
	kind := "ping"
	for _, k := range []string{"manifests", "blobs", "tags", "catalog", "referrers"} {
		if strings.Contains(req.URL.Path, "/"+k+"/") || strings.HasSuffix(req.URL.Path, "/_"+k) {
			kind = k
		}
	}
	c.mu.Lock()
	c.counts[req.Method+" "+kind]++
	c.mu.Unlock()
	return c.inner.RoundTrip(req)
}

// cancelAfter is a transport that cancels a run after n blob downloads.
type cancelAfter struct {
	inner  http.RoundTripper
	n      int64
	count  atomic.Int64
	cancel context.CancelFunc
}

func (c *cancelAfter) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodGet && strings.Contains(req.URL.Path, "/blobs/") {
		if c.count.Add(1) == c.n {
			c.cancel()
		}
	}
	return c.inner.RoundTrip(req)
}

// A run interrupted mid-way leaves a valid layout, and the next run
// completes it with no corrupt or duplicate entries.
func TestBackupResumesAfterCancel(t *testing.T) {
	srv, e := regtest.Seeded(t, embedded.Options{})
	dir := t.TempDir()
	for _, n := range []int64{3, 10, 16} {
		ctx, cancel := context.WithCancel(context.Background())
		opts := testOptions()
		opts.Client.Jobs = 2
		opts.Checkpoint = time.Nanosecond // save index.json after every tag
		opts.Client.Transport = &cancelAfter{inner: http.DefaultTransport, n: n, cancel: cancel}
		res, err := Run(ctx, srv.Host, dir, opts)
		cancel()
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled after %d blobs: %v", n, err)
		}
		t.Logf("cancelled after %d blob requests: %d tags recorded, %d blobs written", n, res.Added, res.BlobsWritten)
		// Every blob is whole; the run is said not to have finished.
		v, err := Verify(context.Background(), dir, VerifyOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(v.Problems) != 1 || v.Problems[0].Problem != ProblemUnfinished || v.Completeness != CompletenessIncomplete || res.Complete {
			t.Errorf("verify after an interrupted run: %s %+v", v.Completeness, v.Problems)
		}
		for ref, d := range tagsInBackup(t, dir) {
			if e.Tags()[ref] != d {
				t.Errorf("partial backup has %s at %s", ref, d)
			}
		}
	}
	backup(t, srv.Host, dir, testOptions())
	if diff := cmp.Diff(e.Tags(), tagsInBackup(t, dir)); diff != "" {
		t.Errorf("resumed backup (-want +got):\n%s", diff)
	}
	mustVerify(t, dir)
	left, _ := os.ReadDir(Layout{Root: dir}.TempDir())
	if len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

// --tag selects images, and brings their signature and fallback tags along.
func TestBackupTagFilterKeepsSignatures(t *testing.T) {
	srv, e := regtest.Seeded(t, embedded.Options{})
	dir := t.TempDir()
	opts := testOptions()
	opts.Repo = regexp.MustCompile(`^team-a/`)
	opts.Tag = regexp.MustCompile(`^1\.0$`)
	res := backup(t, srv.Host, dir, opts)
	got := tagsInBackup(t, dir)
	api := e.Tags()["team-a/api:1.0"]
	want := map[string]v1.Hash{"team-a/api:1.0": api}
	for ref, d := range e.Tags() {
		if strings.HasPrefix(ref, "team-a/api:sha256-"+api.Hex) {
			want[ref] = d
		}
	}
	if len(want) != 3 { // the image, its .sig and its fallback tag
		t.Fatalf("estate changed: %v", want)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if res.Images != 1 {
		t.Errorf("images %d, want 1 (signature tags do not count as selected)", res.Images)
	}
}

// On a registry with the referrers API, referrers pushed by digest only are
// found and restored.
func TestBackupReferrersAPI(t *testing.T) {
	newReg := func() string {
		s := httptest.NewServer(registry.New(registry.WithReferrersSupport(true), registry.Logger(log.New(io.Discard, "", 0))))
		t.Cleanup(s.Close)
		return strings.TrimPrefix(s.URL, "http://")
	}
	src := newReg()
	ref, _ := name.ParseReference(src+"/app/x:1", name.Insecure)
	img, _ := random.Image(512, 2)
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	sz, _ := img.Size()
	mt, _ := img.MediaType()
	sbom := mutate.MediaType(mutate.ConfigMediaType(mustAppend(t, static.NewLayer([]byte(`{"sbom":1}`), "application/spdx+json")), "application/vnd.oci.empty.v1+json"), types.OCIManifestSchema1)
	sbom = mutate.Subject(sbom, v1.Descriptor{MediaType: mt, Digest: d, Size: sz}).(v1.Image)
	sd, _ := sbom.Digest()
	if err := remote.Write(ref.Context().Digest(sd.String()), sbom); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	res := backup(t, src, dir, testOptions())
	if !res.ReferrersAPI || res.Referrers != 1 || res.Images != 1 {
		t.Errorf("backup: %+v", res)
	}
	mustVerify(t, dir)
	again := backup(t, src, dir, testOptions())
	if again.Referrers != 0 || again.BytesWritten != 0 {
		t.Errorf("second run: %+v", again)
	}

	dst := newReg()
	if rres, err := Restore(context.Background(), dir, dst, RestoreOptions{Client: regtest.Client()}); err != nil || len(rres.Errors) > 0 || rres.Referrers != 1 {
		t.Fatalf("restore: %v %+v", err, rres)
	}
	dref, _ := name.NewDigest(dst+"/app/x@"+d.String(), name.Insecure)
	idx, err := remote.Referrers(dref)
	if err != nil {
		t.Fatal(err)
	}
	im, _ := idx.IndexManifest()
	if len(im.Manifests) != 1 || im.Manifests[0].Digest != sd {
		t.Errorf("referrers after restore: %+v", im.Manifests)
	}
}

func mustAppend(t *testing.T, l v1.Layer) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(emptyImage(), l)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func emptyImage() v1.Image {
	return mutate.MediaType(empty.Image, types.OCIManifestSchema1)
}

func TestBadInput(t *testing.T) {
	ctx := context.Background()
	notLayout := t.TempDir()
	if err := os.WriteFile(filepath.Join(notLayout, "precious.txt"), []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(notLayout, "precious.txt")

	if _, err := Run(ctx, "127.0.0.1:1", notLayout, testOptions()); !errors.Is(err, ErrNotLayout) || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("backup into a non-layout directory: %v", err)
	}
	if _, err := Run(ctx, "127.0.0.1:1", file, testOptions()); !errors.Is(err, ErrNotLayout) {
		t.Errorf("backup into a file: %v", err)
	}
	if b, _ := os.ReadFile(file); string(b) != "keep me" {
		t.Error("backup touched a foreign file")
	}
	empty := t.TempDir()
	_, err := Run(ctx, "127.0.0.1:1", empty, testOptions())
	if err == nil || !strings.Contains(err.Error(), "unreachable") {
		t.Errorf("unreachable registry: %v", err)
	}
	if _, err := Verify(ctx, notLayout, VerifyOptions{}); !errors.Is(err, ErrNotLayout) {
		t.Errorf("verify of a non-layout: %v", err)
	}
	if _, err := Restore(ctx, notLayout, "127.0.0.1:1", RestoreOptions{}); !errors.Is(err, ErrNotLayout) {
		t.Errorf("restore of a non-layout: %v", err)
	}
	// The run that failed left an empty layout and a record that it did
	// not finish: restore refuses to pick it, unless asked for all.
	if _, err := Restore(ctx, empty, "127.0.0.1:1", RestoreOptions{Client: regtest.Client()}); !errors.Is(err, ErrNoSnapshot) {
		t.Errorf("restore of an empty backup: %v", err)
	}
	if _, err := Restore(ctx, empty, "127.0.0.1:1", RestoreOptions{Client: regtest.Client(), Snapshot: SnapshotAll}); err != nil {
		t.Errorf("restore of an empty backup, --snapshot all: %v", err)
	}
	// A layout with an image restores to an unreachable registry with a
	// clear error.
	if err := (Layout{Root: empty}).Check(); err != nil {
		t.Fatal(err)
	}
	idx := &index{}
	img, _ := random.Image(10, 1)
	d, _ := img.Digest()
	idx.setTag("a", "1", v1.Descriptor{MediaType: types.DockerManifestSchema2, Digest: d, Size: 1}, nil, testNow, false)
	raw, _ := img.RawManifest()
	l := Layout{Root: empty}
	if err := l.WriteBlob(d, int64(len(raw)), bytes.NewReader(raw), nil); err != nil {
		t.Fatal(err)
	}
	cf, _ := img.RawConfigFile()
	cd, _ := img.ConfigName()
	_ = l.WriteBlob(cd, int64(len(cf)), bytes.NewReader(cf), nil)
	ls, _ := img.Layers()
	for _, ly := range ls {
		ld, _ := ly.Digest()
		n, _ := ly.Size()
		rc, _ := ly.Compressed()
		_ = l.WriteBlob(ld, n, rc, nil)
		rc.Close()
	}
	if err := idx.write(l); err != nil {
		t.Fatal(err)
	}
	if _, err := Restore(ctx, empty, "127.0.0.1:1", RestoreOptions{Client: regtest.Client(), Snapshot: SnapshotAll}); err == nil || !strings.Contains(err.Error(), "unreachable") {
		t.Errorf("restore to an unreachable registry: %v", err)
	}
	if err := l.WriteBlob(d, 5, strings.NewReader("hello"), nil); err == nil {
		t.Error("WriteBlob accepted content that does not match its digest")
	}
}

// checkRestored checks that every tag of want is at its digest in the
// registry at host.
func checkRestored(t *testing.T, host string, want map[string]v1.Hash) {
	t.Helper()
	for ref, d := range want {
		r, err := name.ParseReference(host+"/"+ref, name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		desc, err := remote.Head(r)
		if err != nil {
			t.Errorf("%s: %v", ref, err)
			continue
		}
		if desc.Digest != d {
			t.Errorf("%s restored as %s, want %s", ref, desc.Digest, d)
		}
	}
}

// checkObjectLayout checks that the objects of a backup on object storage
// (key → size) are an OCI image layout under prefix, with the run's
// snapshot, nothing outside prefix and nothing left behind (temporary
// files, the lock).
func checkObjectLayout(t *testing.T, objs map[string]int64, prefix, snapshot string) {
	t.Helper()
	for _, k := range []string{"oci-layout", "index.json", ".regkeeper/snapshots/" + snapshot + ".json"} {
		if _, ok := objs[prefix+"/"+k]; !ok {
			t.Errorf("no %s/%s in the store", prefix, k)
		}
	}
	for k := range objs {
		if !strings.HasPrefix(k, prefix+"/") {
			t.Errorf("object %s outside the prefix", k)
		}
		if strings.Contains(k, "/.regkeeper/tmp/") || strings.HasSuffix(k, "/.regkeeper/lock") {
			t.Errorf("object %s left behind", k)
		}
	}
}

// restoreIntoStock restores the backup l (its latest complete snapshot)
// into fresh stock registries (`registry serve` v3.1.2, the binary
// scripts/setup-registry installs; the subtests skip without it):
//
//   - one configured as the source is (validation.manifests.indexes.
//     platforms: none, which is how the estate's index-only
//     mirror/alpine:3.20 exists there): every tag at its digest, every
//     image pulled whole;
//   - one with the stock config, which refuses an index whose children
//     are not in its repository: exactly that index is an error of the
//     restore, naming it; every other tag is at its digest.
func restoreIntoStock(t *testing.T, l Layout, e *estate.Estate) {
	t.Helper()
	ctx := context.Background()
	t.Run("restore into the stock registry", func(t *testing.T) {
		reg := stock.Start(t, stock.Options{Extra: "validation:\n  manifests:\n    indexes:\n      platforms: none\n"})
		res, err := RestoreLayout(ctx, l, reg.Host, RestoreOptions{Client: regtest.Client()})
		if err != nil || len(res.Errors) > 0 {
			t.Fatalf("restore from %s into the stock registry: %v %+v", l, err, res.Errors)
		}
		if res.Images != len(e.Tags()) {
			t.Errorf("restored %d images, want %d", res.Images, len(e.Tags()))
		}
		checkRestored(t, reg.Host, e.Tags())
		regtest.PullAll(t, reg.Host, e)
	})
	t.Run("restore into the stock registry with its default validation", func(t *testing.T) {
		reg := stock.Start(t, stock.Options{})
		res, err := RestoreLayout(ctx, l, reg.Host, RestoreOptions{Client: regtest.Client()})
		if err != nil {
			t.Fatal(err)
		}
		want := e.Tags()
		var refused []string
		for ref, d := range want {
			repo, _, _ := strings.Cut(ref, ":")
			if len(e.AbsentChildren(repo, d)) > 0 {
				refused = append(refused, ref)
				delete(want, ref)
			}
		}
		var got []string
		for _, er := range res.Errors {
			got = append(got, er.Repository+":"+er.Tag)
			if !strings.Contains(er.Error, "MANIFEST_BLOB_UNKNOWN") {
				t.Errorf("%s:%s refused with %q, want MANIFEST_BLOB_UNKNOWN", er.Repository, er.Tag, er.Error)
			}
		}
		if len(refused) == 0 {
			t.Fatal("the estate has no index whose children are absent")
		}
		sort.Strings(refused)
		sort.Strings(got)
		if diff := cmp.Diff(refused, got); diff != "" {
			t.Errorf("entries the stock registry refused (-want +got):\n%s", diff)
		}
		checkRestored(t, reg.Host, want)
	})
}

// checkRestores restores the backup l of estate e into an empty registry
// and into the stock registry (restoreIntoStock): every tag at its digest,
// every image pulls whole.
func checkRestores(t *testing.T, l Layout, e *estate.Estate) {
	t.Helper()
	dst := regtest.Registry(t, embedded.Options{})
	rres, err := RestoreLayout(context.Background(), l, dst.Host, RestoreOptions{Client: regtest.Client()})
	if err != nil || len(rres.Errors) > 0 {
		t.Fatalf("restore: %v %+v", err, rres.Errors)
	}
	checkRestored(t, dst.Host, e.Tags())
	regtest.PullAll(t, dst.Host, e)
	restoreIntoStock(t, l, e)
}

// checkLockRefuses puts another run's lock object in the backup l: a
// backup from host and a forget are refused, naming its holder; then the
// lock is taken away.
func checkLockRefuses(t *testing.T, l Layout, host string) {
	t.Helper()
	ctx := context.Background()
	if err := l.Driver().PutContent(ctx, l.LockFile(), []byte("regkeeper pid 1 on elsewhere\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := RunLayout(ctx, host, l, testOptions()); !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "elsewhere") {
		t.Errorf("run on a locked %s backup: %v", l.Driver().Name(), err)
	}
	if _, err := ForgetLayout(ctx, l, ForgetOptions{Policy: ExpirePolicy{Last: 1}}); !errors.Is(err, ErrLocked) {
		t.Errorf("forget on a locked %s backup: %v", l.Driver().Name(), err)
	}
	if err := l.Driver().Delete(ctx, l.LockFile()); err != nil {
		t.Fatal(err)
	}
}

// damageBlob overwrites, in the store, the first blob over 1 kB of blobs
// (digest -> size, the backup's) with as many zeros, checks that verify
// finds exactly it corrupt, and returns its digest.
func damageBlob(t *testing.T, l Layout, blobs map[string]int64) string {
	t.Helper()
	ctx := context.Background()
	var victim string
	var size int64
	for d, n := range blobs {
		if n > 1024 && (victim == "" || d < victim) {
			victim, size = d, n
		}
	}
	if victim == "" {
		t.Fatalf("no blob over 1 kB in the backup: %v", blobs)
	}
	h, err := v1.NewHash(victim)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Driver().PutContent(ctx, l.Blob(h), make([]byte, size)); err != nil {
		t.Fatal(err)
	}
	v, err := VerifyLayout(ctx, l, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var corrupt []string
	for _, p := range v.Problems {
		if p.Problem == ProblemCorrupt {
			corrupt = append(corrupt, p.Blob)
		}
	}
	if diff := cmp.Diff([]string{victim}, corrupt); diff != "" {
		t.Errorf("corrupt blobs (-want +got):\n%s", diff)
	}
	return victim
}
