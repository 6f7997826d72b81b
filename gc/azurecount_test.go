package gc

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regkeeper/regkeeper/internal/testbed/azurite"
	"github.com/regkeeper/regkeeper/internal/testbed/embedded"
	"github.com/regkeeper/regkeeper/internal/testbed/regtest"
)

// azureCounter is a reverse proxy in front of Azurite that counts the
// requests it forwards by Blob service API.
type azureCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *azureCounter) reset() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.n
	c.n = map[string]int{}
	return n
}

// azureAPI names the Blob service operation of a request.
func azureAPI(r *http.Request) string {
	q := r.URL.Query()
	comp := q.Get("comp")
	switch {
	case r.Method == http.MethodPost && comp == "batch":
		return "BlobBatch"
	case r.Method == http.MethodGet && comp == "list" && q.Get("delimiter") != "":
		return "ListBlobs(delimiter)"
	case r.Method == http.MethodGet && comp == "list":
		return "ListBlobs(flat)"
	case r.Method == http.MethodPut && r.Header.Get("x-ms-copy-source") != "":
		return "CopyBlob"
	case r.Method == http.MethodPut && comp == "appendblock":
		return "AppendBlock"
	case r.Method == http.MethodPut && comp == "":
		return "PutBlob"
	case r.Method == http.MethodHead && comp == "":
		return "GetBlobProperties"
	case r.Method == http.MethodGet && comp == "":
		return "GetBlob"
	case r.Method == http.MethodDelete && comp == "":
		return "DeleteBlob"
	}
	return r.Method + " comp=" + comp
}

// count counts r by its Blob service API.
func (c *azureCounter) count(r *http.Request) {
	c.mu.Lock()
	c.n[azureAPI(r)]++
	c.mu.Unlock()
}

// The requests gc sends to Azure per deleted blob, online and offline,
// counted by API by a proxy in front of Azurite (registry and gc both go
// through it; only gc's run is counted). Flat listings are counted apart:
// gc lists blobs/ one first hex digit at a time (16 listings of up to
// 5,000 names each, listflat.go) and each repository a few times, which
// on an estate this small is many listings per deleted blob but does not
// grow with them. The bounds are the measured figures with a margin: more is a
// regression (a per-blob Stat, List, Move or Delete come back).
func TestGCRequestsAzure(t *testing.T) {
	a := azurite.ForTest(t, "setup")
	counter := &azureCounter{n: map[string]int{}}
	proxied := a.Through(t, counter.count)
	// REGKEEPER_AZURE_REQUESTS_SHAPE=RxT (repositories x tags, each tag
	// pushed 4 times) measures a larger estate; the default keeps the test
	// short.
	repos, tags := 3, 4
	if shape := os.Getenv("REGKEEPER_AZURE_REQUESTS_SHAPE"); shape != "" {
		if _, err := fmt.Sscanf(shape, "%dx%d", &repos, &tags); err != nil {
			t.Fatalf("REGKEEPER_AZURE_REQUESTS_SHAPE=%q: %v", shape, err)
		}
	}
	for _, tc := range []struct {
		mode    string
		offline bool
		max     float64 // requests but flat listings, per deleted blob
	}{
		{"online", false, 2.0},
		{"offline", true, 0.8},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			if err := a.CreateContainer(context.Background(), tc.mode); err != nil {
				t.Fatal(err)
			}
			srv := regtest.Registry(t, embedded.Options{Storage: proxied.StorageYAML(tc.mode, azureRoot)})
			pushStormEstate(t, srv.Host, repos, tags, 4)
			objs, err := a.Blobs(context.Background(), tc.mode, azureName(pathFor(blobsSpec{digest.SHA256}))+"/")
			if err != nil {
				t.Fatal(err)
			}
			prefixes := map[string]bool{}
			for k := range objs {
				prefixes[path.Base(path.Dir(path.Dir(k)))] = true
			}
			d, err := Open(context.Background(), srv.ConfigFile)
			if err != nil {
				t.Fatal(err)
			}
			opts := aged()
			opts.Settle = 0
			opts.Jobs = 4
			opts.Offline = tc.offline
			// Azure's times have whole seconds: a push in the second the
			// run starts counts as written during the run, and the re-scan
			// reads it. Start in a later second, so that only gc's own
			// work is counted.
			time.Sleep(1100 * time.Millisecond)
			counter.reset()
			rep, err := Run(context.Background(), d, opts)
			if err != nil {
				t.Fatal(err)
			}
			n := counter.reset()
			if rep.BlobsDeleted < 100 {
				t.Fatalf("gc deleted %d blobs, want 100 or more for a per-blob figure", rep.BlobsDeleted)
			}
			total := 0
			var apis []string
			for api, k := range n {
				total += k
				apis = append(apis, api)
			}
			sort.Strings(apis)
			var b strings.Builder
			for _, api := range apis {
				fmt.Fprintf(&b, " %s %d (%.2f);", api, n[api], float64(n[api])/float64(rep.BlobsDeleted))
			}
			flat := n["ListBlobs(flat)"]
			per := float64(total-flat) / float64(rep.BlobsDeleted)
			t.Logf("%s on Azurite: %d blobs (under %d prefixes), %d manifests, %d layer links deleted in %.2fs; %d requests, %.2f per deleted blob, %.2f but flat listings:%s",
				tc.mode, rep.BlobsDeleted, len(prefixes), rep.ManifestsDeleted, rep.LayerLinksDeleted, rep.DurationSeconds,
				total, float64(total)/float64(rep.BlobsDeleted), per, b.String())
			if per > tc.max {
				t.Errorf("%.2f requests but flat listings per deleted blob %s, want at most %.2f", per, tc.mode, tc.max)
			}
			if maxFlat := 16 + 10*repos; flat > maxFlat {
				t.Errorf("%d flat listings, want at most %d (one per first hex digit of the blob prefixes, ten per repository)", flat, maxFlat)
			}
			for _, api := range []string{"GetBlobProperties", "DeleteBlob"} {
				if float64(n[api]) > 0.2*float64(rep.BlobsDeleted) {
					t.Errorf("%d %s requests for %d deleted blobs: a per-blob call came back", n[api], api, rep.BlobsDeleted)
				}
			}
		})
	}
}
