package backup

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/service/s3"
	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/regkeeper/regkeeper/gc"
	"github.com/regkeeper/regkeeper/internal/testbed/embedded"
	"github.com/regkeeper/regkeeper/internal/testbed/minio"
	"github.com/regkeeper/regkeeper/internal/testbed/regtest"
)

// startMinIO starts MinIO for one test with a fresh bucket, or skips the
// test when MinIO is not installed (scripts/setup-minio). The s3:// target
// takes its credentials from the environment, as the AWS SDK does.
func startMinIO(t *testing.T, bucket string) *minio.Server {
	t.Helper()
	m := minio.ForTest(t, bucket)
	minio.UseCredentials(t)
	return m
}

// blobGets records the digests of the blobs a run downloads.
type blobGets struct {
	inner http.RoundTripper
	mu    sync.Mutex
	got   map[string]int
}

func (b *blobGets) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodGet {
		if _, d, ok := strings.Cut(req.URL.Path, "/blobs/"); ok {
			b.mu.Lock()
			b.got[d]++
			b.mu.Unlock()
		}
	}
	return b.inner.RoundTrip(req)
}

// blobKeys are the blobs of the layout under prefix in bucket, by digest.
func blobKeys(t *testing.T, m *minio.Server, bucket, prefix string) map[string]int64 {
	t.Helper()
	objs, err := m.Objects(context.Background(), bucket, prefix+"/blobs/")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for k, n := range objs {
		rest := strings.TrimPrefix(k, prefix+"/blobs/")
		alg, hex, _ := strings.Cut(rest, "/")
		out[alg+":"+hex] = n
	}
	return out
}

// The estate backed up to MinIO through an s3:// target: an interrupted
// run leaves what it wrote, and the next run downloads none of it again;
// the layout is an OCI image layout under the prefix; verify reads it
// there and finds a blob damaged in the bucket; restore from the bucket
// into a fresh registry gives every tag its digest, and every image pulls.
func TestBackupS3(t *testing.T) {
	const bucket, prefix = "backups", "registry/weekly"
	m := startMinIO(t, bucket)
	srv, e := regtest.Seeded(t, embedded.Options{})
	target := m.TargetURL(bucket, prefix)
	ctx := context.Background()
	l, err := OpenTarget(ctx, target, "")
	if err != nil {
		t.Fatal(err)
	}
	if l.Driver() == nil || l.Driver().Name() != "s3aws" || l.String() != target {
		t.Fatalf("opened %q as %v", target, l)
	}

	// Interrupted after a few blobs.
	cctx, cancel := context.WithCancel(ctx)
	opts := testOptions()
	opts.Client.Jobs = 2
	opts.Checkpoint = time.Nanosecond
	opts.Client.Transport = &cancelAfter{inner: http.DefaultTransport, n: 10, cancel: cancel}
	first, err := RunLayout(cctx, srv.Host, l, opts)
	cancel()
	if !errors.Is(err, context.Canceled) || first.Complete {
		t.Fatalf("interrupted run: %v, complete %v", err, first.Complete)
	}
	there := blobKeys(t, m, bucket, prefix)
	if len(there) == 0 || first.BlobsWritten == 0 {
		t.Fatalf("the interrupted run left no blob in the bucket (%d written)", first.BlobsWritten)
	}
	v, err := VerifyLayout(ctx, l, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Problems) != 1 || v.Problems[0].Problem != ProblemUnfinished || v.Blobs != len(there) {
		t.Errorf("verify after the interrupted run: %d blobs (bucket has %d), %+v", v.Blobs, len(there), v.Problems)
	}

	// The next run downloads (and uploads) none of what is there.
	gets := &blobGets{inner: http.DefaultTransport, got: map[string]int{}}
	opts = testOptions()
	opts.Client.Transport = gets
	res, err := RunLayout(ctx, srv.Host, l, opts)
	if err != nil || len(res.Errors) > 0 || !res.Complete {
		t.Fatalf("resumed run: %v %+v", err, res.Errors)
	}
	for d := range there {
		if gets.got[d] > 0 {
			t.Errorf("the resumed run downloaded %s again, already in the bucket", d)
		}
	}
	if res.BlobsSkipped < len(there) || res.BlobsWritten == 0 {
		t.Errorf("resumed run: %d blobs skipped (%d were there), %d written", res.BlobsSkipped, len(there), res.BlobsWritten)
	}

	// An OCI image layout under the prefix, nothing outside it.
	objs, err := m.Objects(ctx, bucket, "")
	if err != nil {
		t.Fatal(err)
	}
	checkObjectLayout(t, objs, prefix, res.Snapshot)
	if diff := cmp.Diff(e.Tags(), layoutTags(t, l)); diff != "" {
		t.Errorf("tags in the S3 backup (-want +got):\n%s", diff)
	}
	v, err = VerifyLayout(ctx, l, VerifyOptions{})
	if err != nil || !v.OK() || v.Completeness != CompletenessComplete || v.Blobs != len(blobKeys(t, m, bucket, prefix)) {
		t.Fatalf("verify: %v %s %d blobs %+v", err, v.Completeness, v.Blobs, v.Problems)
	}
	snaps, err := l.ReadSnapshots()
	if err != nil || len(snaps) != 2 || snaps[0].Complete() || !snaps[1].Complete() {
		t.Errorf("snapshots: %v %+v", err, snaps)
	}

	// A second run holds the lock: refused while it is there.
	checkLockRefuses(t, l, srv.Host)

	// Restore from the bucket into an empty registry, and into the stock
	// registry.
	checkRestores(t, l, e)

	// A blob damaged in the bucket (same size) is found by verify.
	victim := damageBlob(t, l, blobKeys(t, m, bucket, prefix))
	// verify --repair puts it back in the bucket.
	v, err = VerifyLayout(ctx, l, VerifyOptions{Repair: srv.Host, Client: regtest.Client()})
	if err != nil || !v.OK() || !cmp.Equal(v.Repaired, []string{victim}) {
		t.Errorf("verify --repair: %v, repaired %v, %+v", err, v.Repaired, v.Problems)
	}

	// forget drops the interrupted run's snapshot; prune keeps every blob
	// the complete one needs (all of them).
	before := blobKeys(t, m, bucket, prefix)
	f, err := ForgetLayout(ctx, l, ForgetOptions{Policy: ExpirePolicy{Last: 1}, Prune: true})
	if err != nil || f.Kept != 1 || f.Removed != 1 || f.Prune == nil || f.Prune.Blobs != 0 {
		t.Fatalf("forget: %v %+v", err, f)
	}
	if snaps, err := l.ReadSnapshots(); err != nil || len(snaps) != 1 || snaps[0].ID != res.Snapshot {
		t.Errorf("snapshots after forget: %v %+v", err, snaps)
	}
	if diff := cmp.Diff(before, blobKeys(t, m, bucket, prefix)); diff != "" {
		t.Errorf("blobs after prune (-want +got):\n%s", diff)
	}
}

func TestS3Target(t *testing.T) {
	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_DEFAULT_REGION", "")
	for _, tc := range []struct {
		target string
		want   map[string]any
		err    string
	}{
		{target: "s3://b", want: map[string]any{"bucket": "b", "region": "us-east-1", "secure": true}},
		{target: "s3://b/p/q/?region=eu-west-1", want: map[string]any{"bucket": "b", "rootdirectory": "/p/q", "region": "eu-west-1", "secure": true}},
		{target: "s3://b/p?endpoint=http://127.0.0.1:9000", want: map[string]any{"bucket": "b", "rootdirectory": "/p", "region": "us-east-1",
			"regionendpoint": "http://127.0.0.1:9000", "forcepathstyle": true, "secure": false}},
		{target: "s3://b?endpoint=minio.example.com&secure=true", want: map[string]any{"bucket": "b", "region": "us-east-1",
			"regionendpoint": "https://minio.example.com", "forcepathstyle": true, "secure": true}},
		{target: "s3://key:secret@b/p", err: "credentials do not go on the command line"},
		{target: "s3://b?accesskey=k", err: `unknown parameter "accesskey"`},
		{target: "s3:///p", err: "no bucket"},
	} {
		got, err := s3Params(tc.target)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || strings.Contains(err.Error(), "secret@") {
				t.Errorf("%s: error %v, want %q", tc.target, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.target, err)
			continue
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.target, diff)
		}
	}
	if _, err := OpenTarget(context.Background(), "gs://b/p", ""); err == nil || !strings.Contains(err.Error(), "--target-config") {
		t.Errorf("gs:// target: %v", err)
	}
}

// slowDown answers the first attempt of every write request (PUT or POST,
// by method, path and query) with S3's 503 SlowDown, and forwards the rest.
type slowDown struct {
	proxy   *httputil.ReverseProxy
	mu      sync.Mutex
	seen    map[string]bool
	refused int
}

func (s *slowDown) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPut || r.Method == http.MethodPost {
		k := r.Method + " " + r.URL.RequestURI()
		s.mu.Lock()
		first := !s.seen[k]
		s.seen[k] = true
		if first {
			s.refused++
		}
		s.mu.Unlock()
		if first {
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>`))
			return
		}
	}
	s.proxy.ServeHTTP(w, r)
}

// Throttling: every write to the store is first refused with 503
// SlowDown. The s3-aws driver's client (aws-sdk-go) retries it with
// backoff; regkeeper adds nothing, and the backup completes and verifies.
func TestBackupS3SlowDown(t *testing.T) {
	const bucket = "backups"
	m := startMinIO(t, bucket)
	up, err := url.Parse(m.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	sd := &slowDown{proxy: httputil.NewSingleHostReverseProxy(up), seen: map[string]bool{}}
	proxy := httptest.NewServer(sd)
	defer proxy.Close()
	srv := regtest.Registry(t, embedded.Options{})
	want := map[string]v1.Hash{}
	for _, ref := range []string{"app/a:1", "app/b:1"} {
		want[ref] = pushRandom(t, srv, ref, 2048, 2)
	}
	ctx := context.Background()
	l, err := OpenTarget(ctx, "s3://"+bucket+"/b?endpoint="+proxy.URL, "")
	if err != nil {
		t.Fatal(err)
	}
	res, err := RunLayout(ctx, srv.Host, l, testOptions())
	if err != nil || len(res.Errors) > 0 || !res.Complete {
		t.Fatalf("backup through SlowDown: %v %+v", err, res.Errors)
	}
	// Each blob (2 images: 2 layers, a config and a manifest each), the
	// oci-layout, index.json, the snapshot twice and the lock: all refused once.
	if sd.refused < 8+5 {
		t.Errorf("%d writes refused with SlowDown, want at least 13", sd.refused)
	}
	v, err := VerifyLayout(ctx, l, VerifyOptions{})
	if err != nil || !v.OK() || v.Blobs != 8 {
		t.Errorf("verify: %v, %d blobs, %+v", err, v.Blobs, v.Problems)
	}
	snaps, err := l.ReadSnapshots()
	if err != nil || len(snaps) != 1 {
		t.Fatalf("snapshots: %v %d", err, len(snaps))
	}
	if diff := cmp.Diff(want, snapshotTags(snaps[0])); diff != "" {
		t.Errorf("tags (-want +got):\n%s", diff)
	}
}

// bodyBytes counts the bytes of the response bodies a client reads, by
// kind (blobs, manifests, other).
type bodyBytes struct {
	inner http.RoundTripper
	mu    sync.Mutex
	n     map[string]int64
	gets  map[string]int
}

func (b *bodyBytes) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := b.inner.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	kind := "other"
	for _, k := range []string{"blobs", "manifests"} {
		if strings.Contains(req.URL.Path, "/"+k+"/") {
			kind = k
		}
	}
	b.mu.Lock()
	b.gets[req.Method+" "+kind]++
	b.mu.Unlock()
	resp.Body = &countingBody{ReadCloser: resp.Body, add: func(n int) {
		b.mu.Lock()
		b.n[kind] += int64(n)
		b.mu.Unlock()
	}}
	return resp, nil
}

type countingBody struct {
	io.ReadCloser
	add func(int)
}

func (c *countingBody) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.add(n)
	return n, err
}

// A registry on MinIO backed up into another bucket of the same MinIO,
// once by pulling and once with the registry's storage as Source: the
// second copies every blob inside the store (CopyObject) and reads no blob
// through this machine, only manifests; it verifies (every copied object
// re-hashed) and restores into a fresh registry with every digest equal.
func TestBackupS3StoreSideCopy(t *testing.T) {
	m := startMinIO(t, "registry")
	ctx := context.Background()
	if err := m.CreateBucket(ctx, "backups"); err != nil {
		t.Fatal(err)
	}
	srv, e := regtest.Seeded(t, embedded.Options{Storage: m.StorageYAML("registry")})
	source, err := gc.Open(ctx, srv.ConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	run := func(prefix string, src bool) (*Result, *bodyBytes, Layout) {
		t.Helper()
		l, err := OpenTarget(ctx, "s3://backups/"+prefix+"?endpoint="+m.Endpoint, "")
		if err != nil {
			t.Fatal(err)
		}
		bb := &bodyBytes{inner: http.DefaultTransport, n: map[string]int64{}, gets: map[string]int{}}
		opts := testOptions()
		opts.Client.Transport = bb
		if src {
			opts.Source = source
		}
		res, err := RunLayout(ctx, srv.Host, l, opts)
		if err != nil || len(res.Errors) > 0 || !res.Complete {
			t.Fatalf("backup to %s: %v %+v", prefix, err, res.Errors)
		}
		return res, bb, l
	}
	pulled, pullBytes, _ := run("pulled", false)
	copied, copyBytes, l := run("copied", true)
	t.Logf("pull path: %d blobs, %d bytes of blobs and %d of manifests through the machine; store-side copy: %d blobs copied (%d bytes), %d bytes of blobs and %d of manifests through the machine",
		pulled.BlobsWritten, pullBytes.n["blobs"], pullBytes.n["manifests"], copied.BlobsCopiedInStore, copied.BytesCopiedInStore, copyBytes.n["blobs"], copyBytes.n["manifests"])
	if pulled.BlobsCopiedInStore != 0 || pullBytes.n["blobs"] == 0 {
		t.Errorf("pull path: %d blobs copied in store, %d blob bytes read", pulled.BlobsCopiedInStore, pullBytes.n["blobs"])
	}
	if copyBytes.gets["GET blobs"] != 0 || copyBytes.n["blobs"] != 0 {
		t.Errorf("store-side copy read %d blobs (%d bytes) through the machine", copyBytes.gets["GET blobs"], copyBytes.n["blobs"])
	}
	if copied.BlobsCopiedInStore == 0 || copied.BlobsWritten != pulled.BlobsWritten || copied.BytesWritten != pulled.BytesWritten {
		t.Errorf("store-side copy wrote %d blobs (%d copied), %d bytes; the pull path %d, %d", copied.BlobsWritten, copied.BlobsCopiedInStore, copied.BytesWritten, pulled.BlobsWritten, pulled.BytesWritten)
	}
	if copyBytes.n["manifests"] == 0 {
		t.Error("store-side copy read no manifest")
	}
	v, err := VerifyLayout(ctx, l, VerifyOptions{})
	if err != nil || !v.OK() || v.Blobs != copied.BlobsWritten {
		t.Fatalf("verify of the copied backup: %v, %d blobs, %+v", err, v.Blobs, v.Problems)
	}
	dst := regtest.Registry(t, embedded.Options{})
	rres, err := RestoreLayout(ctx, l, dst.Host, RestoreOptions{Client: regtest.Client()})
	if err != nil || len(rres.Errors) > 0 {
		t.Fatalf("restore: %v %+v", err, rres.Errors)
	}
	for ref, d := range e.Tags() {
		desc, err := remote.Head(regtest.Ref(t, dst, ref))
		if err != nil || desc.Digest != d {
			t.Errorf("%s restored: %v %v, want %s", ref, err, desc, d)
		}
	}
	regtest.PullAll(t, dst.Host, e)
}

// A blob larger than one CopyObject copies is copied in parts
// (UploadPartCopy): with the limit lowered to 1 MiB and parts of 5 MiB
// (MinIO's least), a 12 MiB layer goes in three parts, a multipart object
// in the bucket; the small blobs still go by CopyObject; nothing is
// pulled; verify re-hashes the parts' object whole and finds it right.
func TestBackupS3StoreSideCopyInParts(t *testing.T) {
	maxWas, partWas := s3CopyMax, s3PartSize
	s3CopyMax, s3PartSize = 1<<20, 5<<20
	t.Cleanup(func() { s3CopyMax, s3PartSize = maxWas, partWas })
	m := startMinIO(t, "registry")
	ctx := context.Background()
	if err := m.CreateBucket(ctx, "backups"); err != nil {
		t.Fatal(err)
	}
	srv := regtest.Registry(t, embedded.Options{Storage: m.StorageYAML("registry")})
	want := map[string]v1.Hash{"big/app:1": pushRandom(t, srv, "big/app:1", 12<<20, 1)}
	source, err := gc.Open(ctx, srv.ConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	l, err := OpenTarget(ctx, "s3://backups/b?endpoint="+m.Endpoint, "")
	if err != nil {
		t.Fatal(err)
	}
	bb := &bodyBytes{inner: http.DefaultTransport, n: map[string]int64{}, gets: map[string]int{}}
	opts := testOptions()
	opts.Client.Transport = bb
	opts.Source = source
	res, err := RunLayout(ctx, srv.Host, l, opts)
	if err != nil || len(res.Errors) > 0 || !res.Complete {
		t.Fatalf("backup: %v %+v", err, res.Errors)
	}
	if res.BlobsCopiedInStore != 2 || bb.gets["GET blobs"] != 0 {
		t.Errorf("%d blobs copied in the store (want the layer and the config), %d pulled", res.BlobsCopiedInStore, bb.gets["GET blobs"])
	}
	// The blobs over the limit are multipart objects of three parts
	// (their ETag ends in "-3"); the driver's own uploads (the manifest)
	// are multipart too, so only the large blobs are looked at.
	var parts []string
	for d, n := range blobKeys(t, m, "backups", "b") {
		if n <= s3CopyMax {
			continue
		}
		alg, hex, _ := strings.Cut(d, ":")
		head, err := m.S3.HeadObjectWithContext(ctx, &s3.HeadObjectInput{Bucket: aws.String("backups"), Key: aws.String("b/blobs/" + alg + "/" + hex)})
		if err != nil {
			t.Fatal(err)
		}
		_, p, _ := strings.Cut(strings.Trim(aws.StringValue(head.ETag), `"`), "-")
		parts = append(parts, p)
	}
	if diff := cmp.Diff([]string{"3"}, parts); diff != "" {
		t.Errorf("parts of the blobs over the limit (-want +got):\n%s", diff)
	}
	v, err := VerifyLayout(ctx, l, VerifyOptions{})
	if err != nil || !v.OK() || v.Blobs != 3 {
		t.Fatalf("verify: %v, %d blobs, %+v", err, v.Blobs, v.Problems)
	}
	dst := regtest.Registry(t, embedded.Options{})
	if rres, err := RestoreLayout(ctx, l, dst.Host, RestoreOptions{Client: regtest.Client()}); err != nil || len(rres.Errors) > 0 {
		t.Fatalf("restore: %v %+v", err, rres.Errors)
	}
	checkRestored(t, dst.Host, want)
	if err := regtest.Pull(ctx, regtest.Ref(t, dst, "big/app:1")); err != nil {
		t.Error(err)
	}
}

// s3Requests forwards every request to MinIO and counts them by method and
// what they touch: "POST ?delete" (DeleteObjects; "POST ?delete of blobs"
// those naming blobs, "blob keys" how many), "DELETE blobs" (one object
// under blobs/), "GET list" (a listing).
type s3Requests struct {
	proxy *httputil.ReverseProxy
	mu    sync.Mutex
	n     map[string]int
}

func (s *s3Requests) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	k := r.Method
	switch q := r.URL.Query(); {
	case q.Has("delete"):
		// A DeleteObjects request: counted with the blob keys it names.
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		k += " ?delete"
		if n := strings.Count(string(body), "/blobs/"); n > 0 {
			s.mu.Lock()
			s.n["POST ?delete of blobs"]++
			s.n["blob keys"] += n
			s.mu.Unlock()
		}
	case q.Has("list-type") || q.Has("prefix"):
		k += " list"
	case strings.Contains(r.URL.Path, "/blobs/"):
		k += " blobs"
	}
	s.mu.Lock()
	s.n[k]++
	s.mu.Unlock()
	s.proxy.ServeHTTP(w, r)
}

// forget and prune on MinIO: as TestForgetPrune, the blobs left are exactly
// those the kept snapshots reach, and each kept snapshot restores and
// pulls whole; the four blobs go in one DeleteObjects request, none by a
// DELETE of its own.
func TestBackupS3ForgetPrune(t *testing.T) {
	m := startMinIO(t, "backups")
	up, err := url.Parse(m.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	reqs := &s3Requests{proxy: httputil.NewSingleHostReverseProxy(up), n: map[string]int{}}
	proxy := httptest.NewServer(reqs)
	defer proxy.Close()
	l, err := OpenTarget(context.Background(), "s3://backups/weekly?endpoint="+proxy.URL, "")
	if err != nil {
		t.Fatal(err)
	}
	res := forgetPrune(t, l)
	reqs.mu.Lock()
	defer reqs.mu.Unlock()
	t.Logf("requests to the store: %v", reqs.n)
	if res.Prune == nil || res.Prune.Blobs != 4 || reqs.n["POST ?delete of blobs"] != 1 || reqs.n["blob keys"] != 4 || reqs.n["DELETE blobs"] != 0 {
		t.Errorf("prune of %d blobs: %d DeleteObjects requests naming %d blobs (want 1 naming 4), %d DELETEs of a blob (want 0)",
			res.Prune.Blobs, reqs.n["POST ?delete of blobs"], reqs.n["blob keys"], reqs.n["DELETE blobs"])
	}
}
