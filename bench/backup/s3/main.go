// Command s3 measures regkeeper backup from a registry stored on MinIO into
// another bucket of the same MinIO, two ways: the pull path (every blob
// pulled from the registry and uploaded) and store-side copy (--config: every
// blob copied with CopyObject inside the store). It starts MinIO on
// 127.0.0.1 in a temporary directory, a counting reverse proxy in front of it
// (every S3 request of the registry and of regkeeper goes through it), the
// embedded distribution registry with its storage in bucket "registry", and
// a second counting proxy in front of the registry; pushes a generated set of
// images (as bench/backup/gen does); runs the regkeeper binary given by --rk
// into s3://backups/pulled and s3://backups/copied; verifies both; and prints
// a table. Run it through bench/backup/s3.sh.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/regkeeper/regkeeper/bench/backup/images"
	"github.com/regkeeper/regkeeper/internal/testbed/embedded"
	"github.com/regkeeper/regkeeper/internal/testbed/minio"
)

func main() {
	var (
		rk        = flag.String("rk", "", "regkeeper binary; required")
		repos     = flag.Int("repos", 25, "application repositories")
		tags      = flag.Int("tags", 2, "tags per repository")
		bases     = flag.Int("bases", 2, "base images (two layers each)")
		baseSize  = flag.Int("base-size", 32<<20, "bytes of each base image")
		layerSize = flag.Int("layer-size", 4<<20, "bytes of each application image's own layer")
		jobs      = flag.Int("jobs", 8, "regkeeper backup --jobs")
		runs      = flag.Int("runs", 3, "backups each way, alternating, each into a fresh prefix; the best wall time is reported")
	)
	flag.Parse()
	if *rk == "" {
		fail(fmt.Errorf("--rk is required"))
	}
	if err := run(*rk, *repos, *tags, *bases, *baseSize, *layerSize, *jobs, *runs); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "bench/backup/s3:", err)
	os.Exit(1)
}

// counter counts the requests and body bytes (both directions) that pass a
// reverse proxy, by a key its classify function gives.
type counter struct {
	mu       sync.Mutex
	reqs     map[string]int
	in, out  int64 // request bodies in, response bodies out
	classify func(*http.Request) string
}

func (c *counter) reset() {
	c.mu.Lock()
	c.reqs, c.in, c.out = map[string]int{}, 0, 0
	c.mu.Unlock()
}

func (c *counter) snapshot() (map[string]int, int64, int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := map[string]int{}
	for k, v := range c.reqs {
		m[k] = v
	}
	return m, c.in, c.out
}

type countBody struct {
	io.ReadCloser
	add func(int)
}

func (b *countBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.add(n)
	return n, err
}

// proxy starts a reverse proxy to target that counts into c. The Host header
// is left as the client sent it, so S3 signatures stay valid.
func proxy(target string, c *counter) *httptest.Server {
	u, err := url.Parse(target)
	if err != nil {
		fail(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ModifyResponse = func(resp *http.Response) error {
		resp.Body = &countBody{ReadCloser: resp.Body, add: func(n int) { c.mu.Lock(); c.out += int64(n); c.mu.Unlock() }}
		return nil
	}
	c.reset()
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k := c.classify(r)
		c.mu.Lock()
		c.reqs[k]++
		c.mu.Unlock()
		if r.Body != nil {
			r.Body = &countBody{ReadCloser: r.Body, add: func(n int) { c.mu.Lock(); c.in += int64(n); c.mu.Unlock() }}
		}
		rp.ServeHTTP(w, r)
	}))
}

// s3Kind names an S3 request: "bucket OPERATION".
func s3Kind(r *http.Request) string {
	bucket, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	q := r.URL.Query()
	op := r.Method
	switch {
	case r.Method == http.MethodPut && r.Header.Get("X-Amz-Copy-Source") != "" && q.Has("partNumber"):
		op = "UploadPartCopy"
	case r.Method == http.MethodPut && r.Header.Get("X-Amz-Copy-Source") != "":
		op = "CopyObject"
	case r.Method == http.MethodPut && q.Has("partNumber"):
		op = "UploadPart"
	case r.Method == http.MethodPut:
		op = "PutObject"
	case r.Method == http.MethodPost && q.Has("uploads"):
		op = "CreateMultipartUpload"
	case r.Method == http.MethodPost && q.Has("uploadId"):
		op = "CompleteMultipartUpload"
	case r.Method == http.MethodPost && q.Has("delete"):
		op = "DeleteObjects"
	case r.Method == http.MethodDelete && q.Has("uploadId"):
		op = "AbortMultipartUpload"
	case r.Method == http.MethodDelete:
		op = "DeleteObject"
	case r.Method == http.MethodGet && q.Has("uploads"):
		op = "ListMultipartUploads"
	case r.Method == http.MethodGet && (q.Has("list-type") || q.Has("prefix") || q.Has("delimiter")):
		op = "ListObjects"
	case r.Method == http.MethodGet && q.Has("location"):
		op = "GetBucketLocation"
	case r.Method == http.MethodGet:
		op = "GetObject"
	case r.Method == http.MethodHead:
		op = "HeadObject"
	}
	return bucket + " " + op
}

// registryKind names a registry request: "GET blobs", "HEAD manifests"...
func registryKind(r *http.Request) string {
	k := "other"
	switch {
	case strings.Contains(r.URL.Path, "/blobs/"):
		k = "blobs"
	case strings.Contains(r.URL.Path, "/manifests/"):
		k = "manifests"
	case strings.HasSuffix(r.URL.Path, "/tags/list"):
		k = "tags"
	case strings.HasSuffix(r.URL.Path, "/_catalog"):
		k = "catalog"
	case strings.Contains(r.URL.Path, "/referrers/"):
		k = "referrers"
	}
	return r.Method + " " + k
}

type result struct {
	wall           time.Duration
	s3             map[string]int
	s3In, s3Out    int64
	reg            map[string]int
	regIn, regOut  int64
	rchar, wchar   int64
	json           map[string]any
	verifySeconds  float64
	verifyBlobsOut string
}

func run(rk string, repos, tags, bases, baseSize, layerSize, jobs, runs int) error {
	ctx := context.Background()
	bin, err := minio.Find()
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "bench-backup-s3-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	m, err := minio.Start(ctx, bin, filepath.Join(tmp, "minio", "data"))
	if err != nil {
		return err
	}
	defer m.Close()
	for _, b := range []string{"registry", "backups"} {
		if err := m.CreateBucket(ctx, b); err != nil {
			return err
		}
	}
	s3c := &counter{classify: s3Kind}
	s3p := proxy(m.Endpoint, s3c)
	defer s3p.Close()

	storage := fmt.Sprintf("s3:\n  accesskey: %s\n  secretkey: %s\n  region: %s\n  regionendpoint: %s\n  bucket: registry\n  forcepathstyle: true\n  secure: false\n  v4auth: true\n",
		minio.AccessKey, minio.SecretKey, minio.Region, s3p.URL)
	srv, err := embedded.Start(ctx, embedded.Options{Dir: filepath.Join(tmp, "reg"), Storage: storage})
	if err != nil {
		return err
	}
	defer srv.Close()
	start := time.Now()
	n, unique, err := images.Push(ctx, srv.Host, images.Shape{Repos: repos, Tags: tags, Bases: bases, BaseSize: baseSize, LayerSize: layerSize, Jobs: 4, Seed: "bench-s3"})
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "pushed %d tags, %.1f MB of unique layers, in %.1fs\n", n, float64(unique)/1e6, time.Since(start).Seconds())

	regc := &counter{classify: registryKind}
	regp := proxy("http://"+srv.Host, regc)
	defer regp.Close()
	regHost := strings.TrimPrefix(regp.URL, "http://")

	env := append(os.Environ(), "AWS_ACCESS_KEY_ID="+minio.AccessKey, "AWS_SECRET_ACCESS_KEY="+minio.SecretKey)
	target := func(prefix string) string {
		return "s3://backups/" + prefix + "?region=" + minio.Region + "&endpoint=" + s3p.URL
	}
	backup := func(prefix string, extra ...string) (*result, error) {
		s3c.reset()
		regc.reset()
		args := append([]string{"backup", regHost, target(prefix), "--insecure", "--jobs", fmt.Sprint(jobs), "--progress", "never", "-o", "json"}, extra...)
		cmd := exec.Command(rk, args...)
		cmd.Env = env
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, os.Stderr
		t0 := time.Now()
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		rchar, wchar, err := waitIO(cmd)
		wall := time.Since(t0)
		if err != nil {
			return nil, fmt.Errorf("regkeeper %s: %w", strings.Join(args, " "), err)
		}
		r := &result{wall: wall, rchar: rchar, wchar: wchar}
		if err := json.Unmarshal([]byte(out.String()), &r.json); err != nil {
			return nil, fmt.Errorf("backup output: %w: %s", err, out.String())
		}
		r.s3, r.s3In, r.s3Out = s3c.snapshot()
		r.reg, r.regIn, r.regOut = regc.snapshot()
		// Verify, untimed: nothing counted is a backup that is not whole.
		v := exec.Command(rk, "verify", target(prefix), "--progress", "never", "-o", "json")
		v.Env = env
		vout, err := v.Output()
		if err != nil {
			return nil, fmt.Errorf("verify %s: %w: %s", prefix, err, vout)
		}
		var vj map[string]any
		if err := json.Unmarshal(vout, &vj); err != nil {
			return nil, fmt.Errorf("verify output: %w: %s", err, vout)
		}
		r.verifyBlobsOut = fmt.Sprintf("%v blobs, %v problems", vj["blobs"], count(vj["problems"]))
		return r, nil
	}
	var pulled, copied *result
	var pw, cw []string
	for i := range runs {
		p, err := backup(fmt.Sprintf("pulled-%d", i))
		if err != nil {
			return err
		}
		c, err := backup(fmt.Sprintf("copied-%d", i), "--config", srv.ConfigFile)
		if err != nil {
			return err
		}
		pw, cw = append(pw, fmt.Sprintf("%.2f", p.wall.Seconds())), append(cw, fmt.Sprintf("%.2f", c.wall.Seconds()))
		if pulled == nil || p.wall < pulled.wall {
			pulled = p
		}
		if copied == nil || c.wall < copied.wall {
			copied = c
		}
	}
	report(n, unique, pulled, copied)
	fmt.Printf("wall times of every run (s): pull path %s; store-side copy %s\n", strings.Join(pw, " "), strings.Join(cw, " "))
	return nil
}

func count(v any) int {
	if a, ok := v.([]any); ok {
		return len(a)
	}
	return 0
}

func num(m map[string]any, k string) float64 {
	f, _ := m[k].(float64)
	return f
}

func report(n int, unique int64, p, c *result) {
	mb := func(b int64) float64 { return float64(b) / 1e6 }
	fmt.Printf("\nregistry: %d tags, %.1f MB of unique layers, storage in MinIO bucket \"registry\"; backups into bucket \"backups\" of the same MinIO\n\n", n, mb(unique))
	fmt.Println("| | pull path | store-side copy (--config) | pull / copy |")
	fmt.Println("|---|---:|---:|---:|")
	row := func(label string, a, b float64, f string) {
		ratio := "-"
		if b != 0 {
			ratio = fmt.Sprintf("%.2f", a/b)
		}
		fmt.Printf("| %s | "+f+" | "+f+" | %s |\n", label, a, b, ratio)
	}
	row("wall time (s), best run", p.wall.Seconds(), c.wall.Seconds(), "%.2f")
	row("objects written (JSON blobsWritten: blobs and manifests)", num(p.json, "blobsWritten"), num(c.json, "blobsWritten"), "%.0f")
	row("of them copied in store (blobsCopiedInStore)", num(p.json, "blobsCopiedInStore"), num(c.json, "blobsCopiedInStore"), "%.0f")
	row("MB written (bytesWritten)", num(p.json, "bytesWritten")/1e6, num(c.json, "bytesWritten")/1e6, "%.1f")
	row("MB read from the registry (response bodies)", mb(p.regOut), mb(c.regOut), "%.1f")
	row("MB sent to S3 (request bodies, both buckets)", mb(p.s3In), mb(c.s3In), "%.1f")
	row("MB read from S3 (response bodies: the registry's and regkeeper's)", mb(p.s3Out), mb(c.s3Out), "%.1f")
	row("regkeeper process MB, rchar+wchar (/proc/PID/io)", mb(p.rchar+p.wchar), mb(c.rchar+c.wchar), "%.1f")
	blobs := num(p.json, "blobsWritten")
	total := func(m map[string]int) int {
		t := 0
		for _, v := range m {
			t += v
		}
		return t
	}
	row("S3 requests, all", float64(total(p.s3)), float64(total(c.s3)), "%.0f")
	row("S3 requests per object written", float64(total(p.s3))/blobs, float64(total(c.s3))/num(c.json, "blobsWritten"), "%.2f")
	row("registry requests, all", float64(total(p.reg)), float64(total(c.reg)), "%.0f")
	fmt.Println()
	fmt.Println("S3 requests by bucket and operation (the registry's and regkeeper's), per object written (blobsWritten):")
	fmt.Println()
	fmt.Println("| bucket operation | pull path | per object | store-side copy | per object |")
	fmt.Println("|---|---:|---:|---:|---:|")
	keys := map[string]bool{}
	for k := range p.s3 {
		keys[k] = true
	}
	for k := range c.s3 {
		keys[k] = true
	}
	var ks []string
	for k := range keys {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	cb := num(c.json, "blobsWritten")
	for _, k := range ks {
		fmt.Printf("| %s | %d | %.2f | %d | %.2f |\n", k, p.s3[k], float64(p.s3[k])/blobs, c.s3[k], float64(c.s3[k])/cb)
	}
	fmt.Println()
	fmt.Println("registry requests by regkeeper:")
	fmt.Println()
	fmt.Println("| request | pull path | store-side copy |")
	fmt.Println("|---|---:|---:|")
	keys = map[string]bool{}
	for k := range p.reg {
		keys[k] = true
	}
	for k := range c.reg {
		keys[k] = true
	}
	ks = ks[:0]
	for k := range keys {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	for _, k := range ks {
		fmt.Printf("| %s | %d | %d |\n", k, p.reg[k], c.reg[k])
	}
	fmt.Printf("\nverify: pull path %s; store-side copy %s\n", p.verifyBlobsOut, c.verifyBlobsOut)
}

// waitIO waits for cmd's process to exit without reaping it, reads its
// /proc/PID/io (rchar and wchar: every byte it read and wrote through
// read/write system calls, sockets and files alike), then reaps it.
func waitIO(cmd *exec.Cmd) (rchar, wchar int64, err error) {
	pid := cmd.Process.Pid
	var info unix.Siginfo
	for {
		err = unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return 0, 0, fmt.Errorf("waiting for %d: %w", pid, err)
	}
	b, rerr := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	err = cmd.Wait()
	if rerr != nil {
		return 0, 0, fmt.Errorf("reading /proc/%d/io: %w", pid, rerr)
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, ": ")
		switch k {
		case "rchar":
			fmt.Sscan(v, &rchar)
		case "wchar":
			fmt.Sscan(v, &wchar)
		}
	}
	return rchar, wchar, err
}
