package walk_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/regkeeper/regkeeper/internal/client"
	"github.com/regkeeper/regkeeper/internal/testbed/embedded"
	"github.com/regkeeper/regkeeper/internal/testbed/regtest"
	"github.com/regkeeper/regkeeper/internal/walk"
)

// countLists counts the catalog and tag list requests and the n each asked.
type countLists struct {
	inner        http.Handler
	catalog, tag atomic.Int64
	rejected     atomic.Int64
}

func (c *countLists) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case strings.HasSuffix(r.URL.Path, "/_catalog"):
		c.catalog.Add(1)
		if r.URL.Query().Get("n") == "1000" {
			c.rejected.Add(1)
		}
	case strings.HasSuffix(r.URL.Path, "/tags/list"):
		c.tag.Add(1)
	}
	c.inner.ServeHTTP(w, r)
}

// A registry whose catalog pages hold 5 repositories (n=1000 rejected) and
// whose tag pages hold 2 tags: every repository and every tag is listed.
func TestListPages(t *testing.T) {
	srv, e := regtest.Seeded(t, embedded.Options{CatalogMaxEntries: 5, TagsMaxTags: 2})
	lists := &countLists{inner: srv.Handler()}
	srv.SetHandler(lists)

	var logs bytes.Buffer
	w, err := walk.New(context.Background(), srv.Host, walk.Options{Client: regtest.Client(),
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	if err != nil {
		t.Fatal(err)
	}
	l, err := w.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, ref := range l.Refs() {
		got[ref.Repository+":"+ref.Tag] = true
	}
	want := map[string]bool{}
	for ref := range e.Tags() {
		want[ref] = true
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("tags listed (-want +got):\n%s", diff)
	}
	if len(l.Errors) != 0 || l.Selection != (walk.Selection{Repositories: 10, MatchedRepositories: 10, Tags: 15, MatchedTags: 15}) {
		t.Errorf("errors %v, selection %+v", l.Errors, l.Selection)
	}
	t.Logf("%d catalog requests (%d with n=1000), %d tag list requests for %d tags in %d repositories",
		lists.catalog.Load(), lists.rejected.Load(), lists.tag.Load(), l.Selection.Tags, l.Selection.Repositories)
	// 1 rejected at n=1000, then 2 pages of 5 and the empty last one at most.
	if lists.rejected.Load() != 1 || lists.catalog.Load() > 4 {
		t.Errorf("%d catalog requests, %d with n=1000", lists.catalog.Load(), lists.rejected.Load())
	}
	if lists.tag.Load() <= 10 {
		t.Errorf("%d tag list requests for 10 repositories with pages of 2: Link not followed?", lists.tag.Load())
	}
	if !strings.Contains(logs.String(), "registry rejected the page size") || !strings.Contains(logs.String(), "PAGINATION_NUMBER_INVALID") {
		t.Errorf("no notice of the rejected page size: %s", logs.String())
	}
}

// The index-only copy is a problem, read as far as it goes; nothing fails.
func TestReadIndexOnly(t *testing.T) {
	srv, e := regtest.Seeded(t, embedded.Options{})
	w, err := walk.New(context.Background(), srv.Host, walk.Options{Client: regtest.Client()})
	if err != nil {
		t.Fatal(err)
	}
	img, problems, err := w.Read(context.Background(), "mirror/alpine", "3.20")
	if err != nil {
		t.Fatal(err)
	}
	if img == nil || img.Descriptor.Digest != e.Tags()["mirror/alpine:3.20"] || len(img.Platforms) != 2 || !img.Platforms[0].Absent || !img.Platforms[1].Absent {
		t.Fatalf("image %+v", img)
	}
	if len(problems) != 1 || problems[0].Kind != walk.KindChildrenAbsent || problems[0].Digest != img.Descriptor.Digest.String() {
		t.Errorf("problems %+v", problems)
	}

	// A tag that points at nothing (its manifest deleted under it).
	img, problems, err = w.Read(context.Background(), "team-b/web", "no-such-tag")
	if err != nil || img != nil || len(problems) != 1 || problems[0].Kind != walk.KindManifestMissing {
		t.Errorf("missing tag: image %v, problems %+v, err %v", img, problems, err)
	}
}

// A manifest the registry serves but that does not parse is a problem.
func TestReadCorrupt(t *testing.T) {
	srv, _ := regtest.Seeded(t, embedded.Options{})
	inner := srv.Handler()
	srv.SetHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && r.URL.Path == "/v2/team-b/web/manifests/prod" {
			w.Header().Set("Content-Type", "application/vnd.oci.image.index.v1+json")
			w.Write([]byte("{not json"))
			return
		}
		inner.ServeHTTP(w, r)
	}))
	w, err := walk.New(context.Background(), srv.Host, walk.Options{Client: regtest.Client()})
	if err != nil {
		t.Fatal(err)
	}
	_, problems, err := w.Read(context.Background(), "team-b/web", "prod")
	if err != nil || len(problems) != 1 || problems[0].Kind != walk.KindManifestCorrupt {
		t.Errorf("problems %+v, err %v; want one manifest-corrupt", problems, err)
	}
}

// A registry behind a self-signed certificate, no --insecure: the error
// names the certificate, not the 400 that go-containerregistry's plain-HTTP
// fallback gets from the HTTPS port, and no page size is blamed.
func TestTLSUntrusted(t *testing.T) {
	srv, _ := regtest.Seeded(t, embedded.Options{})
	ts := httptest.NewTLSServer(srv.Handler())
	defer ts.Close()
	u, _ := url.Parse(ts.URL)

	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	w, err := walk.New(context.Background(), u.Host, walk.Options{Client: client.Options{MaxRetries: -1, Logger: log}, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	_, err = w.List(context.Background())
	if err == nil {
		t.Fatal("listing an untrusted TLS registry succeeded")
	}
	first, _, _ := strings.Cut(err.Error(), "\n")
	if !strings.Contains(first, "x509") || !strings.Contains(first, "TLS failure") || strings.Contains(first, "HTTP request to an HTTPS server") {
		t.Errorf("error %q does not name the certificate first", first)
	}
	if !client.IsTLS(err) || walk.PageSizeRejected(err) {
		t.Errorf("IsTLS %v, PageSizeRejected %v; want true, false", client.IsTLS(err), walk.PageSizeRejected(err))
	}
	if strings.Contains(logs.String(), "page size") {
		t.Errorf("a TLS failure logged as a page size rejection: %s", logs.String())
	}

	// With the certificate trusted, the same registry lists.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: ts.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs}
	w, err = walk.New(context.Background(), u.Host, walk.Options{Client: client.Options{Transport: tr}})
	if err != nil {
		t.Fatal(err)
	}
	if l, err := w.List(context.Background()); err != nil || len(l.Repositories) != 10 {
		t.Errorf("trusted: err %v", err)
	}
}
