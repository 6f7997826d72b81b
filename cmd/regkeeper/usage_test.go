package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/regkeeper/regkeeper/audit"
	"github.com/regkeeper/regkeeper/internal/testbed/embedded"
	"github.com/regkeeper/regkeeper/internal/testbed/regtest"
	"github.com/regkeeper/regkeeper/internal/testbed/stock"
	"github.com/regkeeper/regkeeper/inventory"
	"github.com/regkeeper/regkeeper/usage"
)

// TestMain lets the test binary be regkeeper itself: with
// REGKEEPER_TEST_AS_MAIN=1 it runs the command line in its arguments, as
// main does, and exits. Tests start real child processes of regkeeper
// this way without building the binary again.
func TestMain(m *testing.M) {
	if os.Getenv("REGKEEPER_TEST_AS_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// selfCommand is a child process of the test binary running regkeeper argv.
func selfCommand(argv ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], argv...)
	cmd.Env = append(os.Environ(), "REGKEEPER_TEST_AS_MAIN=1")
	return cmd
}

// usageServer is a `regkeeper usage serve` child process.
type usageServer struct {
	t             *testing.T
	bin, addr, db string
	token         string
	cmd           *exec.Cmd
	exited        chan struct{}
	stderr        bytes.Buffer
}

func (s *usageServer) start() {
	t := s.t
	tok := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tok, []byte(s.token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s.stderr.Reset()
	s.cmd = selfCommand("usage", "serve", "--listen", s.addr, "--db", s.db, "--token-file", tok, "--every", "1s", "-v")
	s.cmd.Stderr = &s.stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.exited = make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(s.exited) }()
	for i := 0; ; i++ {
		resp, err := http.Get("http://" + s.addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			return
		}
		select {
		case <-s.exited:
			t.Fatalf("usage serve exited: %s", s.stderr.String())
		case <-time.After(50 * time.Millisecond):
		}
		if i > 600 {
			t.Fatalf("usage serve not listening after 30s: %s", s.stderr.String())
		}
	}
}

func (s *usageServer) stop(sig syscall.Signal) {
	_ = s.cmd.Process.Signal(sig)
	<-s.exited
}

// get reads GET /usage on the live server.
func (s *usageServer) usage(q string, v any) {
	s.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+s.addr+"/usage"+q, nil)
	req.Header.Set("Authorization", "Bearer "+s.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		s.t.Fatalf("GET /usage%s: %s %s", q, resp.Status, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		s.t.Fatal(err)
	}
}

func (s *usageServer) post(body []byte, token, contentType string) int {
	s.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+s.addr+"/events", bytes.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		// a server that refuses a huge body may close the connection early
		s.t.Logf("POST /events: %v", err)
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// tagFigures are the answers the test asserts, per tag.
type tagFigures struct {
	Pulled  bool
	Pulls   int64
	Headed  bool
	Ignored bool
}

func figures(s *usage.Summary) map[string]tagFigures {
	out := map[string]tagFigures{}
	for _, t := range s.Tags {
		if t.Repo == "sentinel" {
			continue
		}
		f := tagFigures{Pulled: t.LastPulled != nil, Headed: t.LastHead != nil, Ignored: t.Ignored > 0, Pulls: -1}
		if t.Pulls30d != nil {
			f.Pulls = *t.Pulls30d
		}
		out[t.Repo+":"+t.Tag] = f
	}
	return out
}

// A stock `registry serve` notifies a real `regkeeper usage serve` child
// process; pulls by tag, by digest, HEAD only, and an index then its
// children, are counted exactly; a SIGKILL of the listener between pulls
// loses nothing the registry saw acknowledged and leaves a reported gap;
// duplicates count once; regkeeper's own backup changes no pull; requests
// without the token, malformed and oversized bodies are rejected with
// nothing stored; the ledger is readable while serve runs.
func TestUsageServeWithStockRegistry(t *testing.T) {
	if _, err := os.Stat(stock.Binary()); err != nil {
		t.Skipf("stock registry binary %s is absent (run scripts/setup-registry)", stock.Binary())
	}
	start := time.Now()
	srv := &usageServer{t: t, addr: stock.FreePort(t), db: filepath.Join(t.TempDir(), "usage.db"), token: "s3cret"}
	srv.start()
	t.Cleanup(func() {
		if srv.cmd.ProcessState == nil {
			srv.stop(syscall.SIGTERM)
		}
	})
	reg := stock.Start(t, stock.Options{Endpoints: []stock.Endpoint{{Name: "usage", URL: "http://" + srv.addr + "/events", Token: srv.token}}})

	ref := func(s string) name.Reference {
		r, err := name.ParseReference(reg.Host+"/"+s, name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	push := func(s string, img v1.Image) v1.Hash {
		if err := remote.Write(ref(s), img); err != nil {
			t.Fatal(err)
		}
		d, _ := img.Digest()
		return d
	}
	get := func(s string, opts ...remote.Option) {
		if _, err := remote.Get(ref(s), opts...); err != nil {
			t.Fatalf("pulling %s: %v", s, err)
		}
	}
	// sync waits until the listener has stored every event the registry
	// sent so far: the registry sends in order, so once a fresh pull of a
	// sentinel is in the ledger, everything before it is.
	n := 0
	sync := func() {
		t.Helper()
		n++
		tag := fmt.Sprintf("s%d", n)
		img, _ := random.Image(64, 1)
		push("sentinel:"+tag, img)
		get("sentinel:" + tag)
		for i := 0; ; i++ {
			var u usage.TagUsage
			srv.usage("?repo=sentinel&tag="+tag, &u)
			if u.LastPulled != nil {
				return
			}
			if i > 600 {
				t.Fatalf("sentinel %s not delivered after 30s; registry log:\n%s", tag, reg.Stderr())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	summary := func() *usage.Summary {
		var s usage.Summary
		srv.usage("", &s)
		return &s
	}

	img, _ := random.Image(256, 1)
	dApp := push("app:v1", img)
	img2, _ := random.Image(256, 1)
	push("headonly:v1", img2)
	idx, _ := random.Index(128, 1, 2)
	if err := remote.WriteIndex(ref("multi:v1"), idx); err != nil {
		t.Fatal(err)
	}
	im, _ := idx.IndexManifest()
	img3, _ := random.Image(64, 1)
	push("never:v1", img3)

	get("app:v1")                                              // by tag
	get("app@" + dApp.String())                                // by digest
	if _, err := remote.Head(ref("headonly:v1")); err != nil { // HEAD only
		t.Fatal(err)
	}
	get("multi:v1")                                                                       // the index by tag
	get("multi@" + im.Manifests[0].Digest.String())                                       // its child, same client: the same pull
	get("multi@"+im.Manifests[1].Digest.String(), remote.WithUserAgent("containerd/2.0")) // a pinned child, another client
	sync()

	// Pulls -1: null, unknown: the ledger has not listened for 30 days
	// and saw no pull, so it cannot say "0 in 30 days".
	want := map[string]tagFigures{
		"app:v1":      {Pulled: true, Pulls: 2},
		"headonly:v1": {Pulls: -1, Headed: true},
		"multi:v1":    {Pulled: true, Pulls: 2},
		"never:v1":    {Pulls: -1},
	}
	if diff := cmp.Diff(want, figures(summary())); diff != "" {
		t.Fatalf("after the pulls (-want +got):\n%s", diff)
	}

	// readable while serve runs: usage show reads serve's snapshot
	// (written every --every, 1s here: wait for one that has the pulls)
	var code int
	var out, errOut string
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		code, out, errOut = runCLI(t, "usage", "show", "--db", srv.db)
		if code == 0 && strings.Contains(out, "app") || time.Now().After(deadline) {
			break
		}
	}
	if code != 0 || !strings.Contains(out, "snapshot of a running usage serve") || !strings.Contains(out, "app") {
		t.Fatalf("usage show while serving: exit %d\n%s%s", code, out, errOut)
	}

	t.Logf("pulls checked at %s", time.Since(start).Round(time.Millisecond))
	// regkeeper's own backup pulls every manifest: not a pull
	before := figures(summary())
	if code, _, errOut := runCLI(t, "backup", reg.Host, filepath.Join(t.TempDir(), "bk"), "--insecure"); code != 0 {
		t.Fatalf("backup: exit %d: %s", code, errOut)
	}
	sync()
	after := figures(summary())
	for k, f := range before {
		f.Ignored = true // the backup's requests are counted as ignored
		before[k] = f
	}
	if diff := cmp.Diff(before, after); diff != "" {
		t.Errorf("regkeeper's backup changed pulls (-want +got):\n%s", diff)
	}

	t.Logf("backup checked at %s", time.Since(start).Round(time.Millisecond))
	// SIGKILL between pulls: the registry retries, nothing is lost, a gap is reported
	srv.stop(syscall.SIGKILL)
	get("app:v1")
	srv.start()
	sync()
	s := summary()
	if got := figures(s)["app:v1"].Pulls; got != 3 {
		t.Errorf("app:v1 pulls after the listener was killed: %d, want 3", got)
	}
	if len(s.Gaps) != 1 {
		t.Errorf("gaps after a SIGKILL: %v, want one", s.Gaps)
	}

	t.Logf("kill checked at %s", time.Since(start).Round(time.Millisecond))
	// duplicates count once; rejections store nothing
	env := []byte(`{"events":[{"id":"dup-1","timestamp":"` + time.Now().UTC().Format(time.RFC3339Nano) + `","action":"pull",
	  "target":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"` + dApp.String() + `","repository":"app","url":"http://x/v2/app/manifests/v1","tag":"v1"},
	  "request":{"method":"GET","useragent":"docker/27"}}]}`)
	for i := 0; i < 2; i++ {
		if code := srv.post(env, srv.token, usage.MediaType); code != http.StatusOK {
			t.Fatalf("posting a valid envelope: %d", code)
		}
	}
	if got := figures(summary())["app:v1"].Pulls; got != 4 {
		t.Errorf("app:v1 pulls after one event delivered twice: %d, want 4", got)
	}
	before = figures(summary())
	env2 := bytes.ReplaceAll(env, []byte("dup-1"), []byte("new-1"))
	huge := append(append([]byte(`{"events":[],"pad":"`), bytes.Repeat([]byte("x"), 10<<20)...), '"', '}')
	for _, tc := range []struct {
		what       string
		body       []byte
		token      string
		wantStatus int
	}{
		{"no token", env2, "", http.StatusUnauthorized},
		{"wrong token", env2, "nope", http.StatusUnauthorized},
		{"malformed JSON", []byte(`{"events":[{"id":`), srv.token, http.StatusBadRequest},
		{"no events", []byte(`{"events":[]}`), srv.token, http.StatusBadRequest},
		{"10 MB body", huge, srv.token, http.StatusRequestEntityTooLarge},
	} {
		if code := srv.post(tc.body, tc.token, usage.MediaType); code != tc.wantStatus && !(code == 0 && tc.wantStatus == http.StatusRequestEntityTooLarge) {
			t.Errorf("%s: status %d, want %d", tc.what, code, tc.wantStatus)
		}
	}
	if diff := cmp.Diff(before, figures(summary())); diff != "" {
		t.Errorf("rejected envelopes changed the ledger (-want +got):\n%s", diff)
	}
	if !strings.Contains(srv.stderr.String(), "envelope rejected") {
		t.Errorf("no log line for the rejected envelopes:\n%s", srv.stderr.String())
	}
	resp, err := http.Get("http://" + srv.addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, line := range []string{
		`regkeeper_usage_envelopes_rejected_total{reason="unauthorized"} 2`,
		`regkeeper_usage_envelopes_rejected_total{reason="malformed"} 2`,
		`regkeeper_usage_events_duplicate_total 1`,
	} {
		if !strings.Contains(string(metrics), line) {
			t.Errorf("metrics lack %q:\n%s", line, metrics)
		}
	}

	// usage kube through the running serve: app:v1 runs in "prod"
	list := filepath.Join(t.TempDir(), "prod.txt")
	if err := os.WriteFile(list, []byte(reg.Host+"/app:v1 cluster prod: Deployment shop/app\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tok := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tok, []byte(srv.token), 0o600)
	if code, _, errOut := runCLI(t, "usage", "kube", "--server", "http://"+srv.addr, "--token-file", tok, "--from", list); code != 0 {
		t.Fatalf("usage kube --server: exit %d: %s", code, errOut)
	}
	var u usage.TagUsage
	srv.usage("?repo=app&tag=v1", &u)
	if u.InUse == nil || !*u.InUse || !cmp.Equal(u.Where, []string{"cluster prod: Deployment shop/app"}) {
		t.Errorf("app:v1 in use: %v %v, want true in cluster prod", u.InUse, u.Where)
	}
	srv.usage("?repo=never&tag=v1", &u)
	if u.InUse == nil || *u.InUse {
		t.Errorf("never:v1 in use: %v, want false", u.InUse)
	}

	// a clean stop; the file itself is readable again
	srv.stop(syscall.SIGTERM)
	code, out, errOut = runCLI(t, "usage", "show", "--db", srv.db, "-o", "json")
	if code != 0 {
		t.Fatalf("usage show: exit %d: %s", code, errOut)
	}
	// inventory --usage: per tag lastPulled, pulls30d, inUse (null = unknown)
	code, invOut, errOut := runCLI(t, "inventory", reg.Host, "--insecure", "--usage", srv.db, "-o", "json")
	if code != 0 {
		t.Fatalf("inventory --usage: exit %d: %s", code, errOut)
	}
	var inv struct {
		Images []struct {
			Repository, Tag string
			LastPulled      *time.Time `json:"lastPulled"`
			Pulls30d        *int64     `json:"pulls30d"`
			InUse           *bool      `json:"inUse"`
		} `json:"images"`
	}
	if err := json.Unmarshal([]byte(invOut), &inv); err != nil {
		t.Fatal(err)
	}
	gotInv := map[string]string{}
	for _, im := range inv.Images {
		if im.Repository == "sentinel" {
			continue
		}
		p := "null"
		if im.Pulls30d != nil {
			p = fmt.Sprint(*im.Pulls30d)
		}
		gotInv[im.Repository+":"+im.Tag] = fmt.Sprintf("lastPulled=%v pulls30d=%s inUse=%v", im.LastPulled != nil, p, *im.InUse)
	}
	wantInv := map[string]string{
		"app:v1":      "lastPulled=true pulls30d=4 inUse=true",
		"headonly:v1": "lastPulled=false pulls30d=null inUse=false",
		"multi:v1":    "lastPulled=true pulls30d=2 inUse=false",
		"never:v1":    "lastPulled=false pulls30d=null inUse=false",
	}
	if diff := cmp.Diff(wantInv, gotInv); diff != "" {
		t.Errorf("inventory --usage (-want +got):\n%s", diff)
	}

	var final usage.Summary
	if err := json.Unmarshal([]byte(out), &final); err != nil {
		t.Fatal(err)
	}
	if final.Snapshot || final.Listening || len(final.Gaps) != 2 {
		t.Errorf("after a clean stop: snapshot %v listening %v gaps %v; want false, false and two gaps (the SIGKILL, since the stop)\n%s", final.Snapshot, final.Listening, final.Gaps, out)
	}
}

// import, kube --from and show, in-process on one ledger file.
func TestUsageImportKubeShow(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "usage.db")
	log := filepath.Join(dir, "access.log")
	lines := `10.0.0.1 - - [05/Dec/2026:10:00:00 +0000] "GET /v2/team/web/manifests/v1 HTTP/1.1" 200 500 "" "containerd/2.0"
10.0.0.2 - - [05/Dec/2026:10:05:00 +0000] "HEAD /v2/team/web/manifests/v2 HTTP/1.1" 200 0 "" "containerd/2.0"
10.0.0.3 - - [05/Dec/2026:10:06:00 +0000] "GET /v2/team/web/manifests/v2 HTTP/1.1" 200 500 "" "regkeeper/1.0 go-containerregistry/v0.20"
10.0.0.3 - - [05/Dec/2026:10:07:00 +0000] "GET /v2/team/web/blobs/sha256:abc HTTP/1.1" 200 500 "" "containerd/2.0"
`
	if err := os.WriteFile(log, []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(t, "usage", "import", "--db", db, log, "-o", "json")
	if code != 0 {
		t.Fatalf("import: exit %d: %s", code, errOut)
	}
	var imp []usage.ImportResult
	if err := json.Unmarshal([]byte(out), &imp); err != nil {
		t.Fatal(err)
	}
	if len(imp) != 1 || imp[0].Lines != 4 || imp[0].Requests != 3 || imp[0].Stored != 2 || imp[0].Ignored != 1 {
		t.Errorf("import result: %+v", imp)
	}
	fixture := filepath.Join("..", "..", "usage", "kube", "testdata", "kubectl-get-all.json")
	if code, _, errOut := runCLI(t, "usage", "kube", "--db", db, "--from", fixture); code != 0 {
		t.Fatalf("kube --from: exit %d: %s", code, errOut)
	}
	code, out, errOut = runCLI(t, "usage", "show", "--db", db, "-o", "json")
	if code != 0 {
		t.Fatalf("show: exit %d: %s", code, errOut)
	}
	var s usage.Summary
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, tg := range s.Tags {
		got[tg.Repo+":"+tg.Tag] = fmt.Sprintf("pulled=%v head=%v ignored=%d inUse=%v %v", tg.LastPulled != nil, tg.LastHead != nil, tg.Ignored, *tg.InUse, tg.Where)
	}
	want := map[string]string{
		"team/web:v1": "pulled=true head=false ignored=0 inUse=true [cluster kubectl-get-all.json: ReplicaSet shop/web-5f8b7c9d6 (rollback)]",
		"team/web:v2": "pulled=false head=true ignored=1 inUse=true [cluster kubectl-get-all.json: Deployment shop/web cluster kubectl-get-all.json: Pod shop/web-7d9c6b5f4-x2k8p]",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("show (-want +got):\n%s", diff)
	}
	if len(s.Sources) != 1 || s.Sources[0].Images != 8 || len(s.Covered) != 1 {
		t.Errorf("sources %v covered %v", s.Sources, s.Covered)
	}
}

// The README's usage serve metrics are what GET /metrics serves, name for name.
func TestUsageMetricsInREADME(t *testing.T) {
	l, err := usage.OpenWrite(filepath.Join(t.TempDir(), "usage.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	rec := httptest.NewRecorder()
	usage.NewServer(l, usage.ServeOptions{}).Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	var served []string
	for _, line := range strings.Split(rec.Body.String(), "\n") {
		if rest, ok := strings.CutPrefix(line, "# HELP "); ok {
			name, _, _ := strings.Cut(rest, " ")
			served = append(served, name)
		}
	}
	sort.Strings(served)
	if diff := cmp.Diff(readmeMetrics(t)["usage"], served); diff != "" {
		t.Errorf("README usage metrics vs GET /metrics (-README +served):\n%s", diff)
	}
}

// audit --usage: every finding says how its image is used.
func TestAuditUsage(t *testing.T) {
	srv, _ := regtest.Seeded(t, embedded.Options{})
	code, out, errOut := runCLI(t, "inventory", srv.Host, "--insecure", "-o", "json")
	if code != 0 {
		t.Fatalf("inventory: exit %d: %s", code, errOut)
	}
	var inv inventory.Result
	if err := json.Unmarshal([]byte(out), &inv); err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, im := range inv.Images {
		lines = append(lines, srv.Host+"/"+im.Repository+":"+im.Tag+" cluster test: Deployment ns/"+strings.ReplaceAll(im.Repository, "/", "-"))
	}
	list := filepath.Join(t.TempDir(), "images.txt")
	os.WriteFile(list, []byte(strings.Join(lines, "\n")+"\n"), 0o600)
	db := filepath.Join(t.TempDir(), "usage.db")
	if code, _, errOut := runCLI(t, "usage", "kube", "--db", db, "--from", list); code != 0 {
		t.Fatalf("usage kube: exit %d: %s", code, errOut)
	}
	code, out, errOut = runCLI(t, "audit", srv.Host, "--insecure", "--usage", db)
	if code != 0 {
		t.Fatalf("audit --usage: exit %d: %s", code, errOut)
	}
	rows := 0
	for _, line := range strings.Split(out, "\n") {
		for _, reason := range audit.Severity {
			if strings.HasPrefix(line, reason+" ") {
				rows++
				if !strings.Contains(line, "running in cluster test: Deployment ns/") || !strings.Contains(line, "pulls unknown") {
					t.Errorf("finding without its use: %s", line)
				}
			}
		}
	}
	if rows == 0 || !strings.Contains(out, "USE") {
		t.Errorf("no findings or no USE column:\n%s", out)
	}
}
