package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/regkeeper/regkeeper/internal/testbed/embedded"
	"github.com/regkeeper/regkeeper/internal/testbed/regtest"
	"github.com/regkeeper/regkeeper/internal/testbed/stock"
	"github.com/regkeeper/regkeeper/retain"
	"github.com/regkeeper/regkeeper/usage"
)

// retain reads the real usage ledger through --usage: a tag pulled within
// the window is kept, one pulled before it or never (while the ledger
// listened the whole window) goes, and a window the ledger did not cover
// is "unknown", which keeps every tag.
func TestRetainWithUsageLedger(t *testing.T) {
	srv := regtest.Registry(t, embedded.Options{})
	digests := map[string]string{}
	for _, tag := range []string{"recent", "old", "never"} {
		img, err := random.Image(256, 1)
		if err != nil {
			t.Fatal(err)
		}
		ref, err := name.ParseReference(srv.Host+"/team-u/app:"+tag, name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(ref, img); err != nil {
			t.Fatalf("pushing %s: %v", ref, err)
		}
		d, _ := img.Digest()
		digests[tag] = d.String()
	}

	// A ledger that has listened for 100 days, heartbeat once a day, with
	// the pulls the registry would have notified.
	now := time.Now().UTC()
	clock := now.Add(-100 * 24 * time.Hour)
	ledgerPath := filepath.Join(t.TempDir(), "usage.db")
	l, err := usage.OpenWrite(ledgerPath, usage.WithClock(func() time.Time { return clock }), usage.WithNoSync())
	if err != nil {
		t.Fatal(err)
	}
	if err := l.StartListening("serve", 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	pull := func(tag string, ago time.Duration) {
		t.Helper()
		var ev usage.Event
		ev.ID = fmt.Sprintf("%s-%d", tag, ago)
		ev.Timestamp = now.Add(-ago)
		ev.Action = "pull"
		ev.Target.MediaType = "application/vnd.oci.image.manifest.v1+json"
		ev.Target.Repository, ev.Target.Tag, ev.Target.Digest = "team-u/app", tag, digests[tag]
		ev.Request.Method, ev.Request.UserAgent = "GET", "containerd/2.0"
		if _, err := l.Record(context.Background(), &usage.Envelope{Events: []usage.Event{ev}}); err != nil {
			t.Fatal(err)
		}
	}
	for clock.Before(now) {
		clock = clock.Add(24 * time.Hour)
		if err := l.Heartbeat(); err != nil {
			t.Fatal(err)
		}
	}
	pull("recent", 3*24*time.Hour)
	pull("old", 60*24*time.Hour)
	clock = now.Add(time.Minute)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	plan := func(window string) map[string]string {
		t.Helper()
		pol := writeFile(t, "retain.yml", `
policies:
  - repositories: ["team-u/**"]
    keep:
      - pulledWithin: `+window+`
`)
		code, out, errOut := runCLI(t, "retain", srv.Host, "--insecure", "--policy", pol, "--usage", ledgerPath, "--dry-run", "-o", "json")
		if code != 0 {
			t.Fatalf("retain --usage: exit %d: %s", code, errOut)
		}
		var res retain.Result
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		got := map[string]string{}
		for _, tg := range res.Tags {
			got[tg.Tag] = tg.Action
		}
		return got
	}
	if diff := cmp.Diff(map[string]string{"recent": "keep", "old": "remove", "never": "remove"}, plan("30d")); diff != "" {
		t.Errorf("pulledWithin 30d on a ledger that listened 100 days (-want +got):\n%s", diff)
	}
	// 200 days reach before the ledger listened: unknown keeps.
	if diff := cmp.Diff(map[string]string{"recent": "keep", "old": "keep", "never": "keep"}, plan("200d")); diff != "" {
		t.Errorf("pulledWithin 200d, before the ledger listened (-want +got):\n%s", diff)
	}
}

// On a stock registry with deletes off (distribution's default), retain
// stops at the first refusal with what to change, instead of one error per
// tag, and its journal puts back nothing that was not removed.
func TestRetainOnRegistryWithoutDeletes(t *testing.T) {
	if _, err := os.Stat(stock.Binary()); err != nil {
		t.Skipf("no stock registry binary (scripts/setup-registry installs it): %v", err)
	}
	reg := stock.Start(t, stock.Options{NoDelete: true})
	for _, tag := range []string{"build-1", "build-2", "build-3"} {
		img, err := random.Image(128, 1)
		if err != nil {
			t.Fatal(err)
		}
		ref, _ := name.ParseReference(reg.Host+"/app/web:"+tag, name.Insecure)
		if err := remote.Write(ref, img); err != nil {
			t.Fatal(err)
		}
	}
	pol := writeFile(t, "retain.yml", "policies:\n  - repositories: [\"app/**\"]\n    keep:\n      - tags: ['^build-3$']\n")
	code, _, errOut := runCLI(t, "retain", reg.Host, "--insecure", "--policy", pol, "--journal", filepath.Join(t.TempDir(), "j.jsonl"))
	if code != 1 || !strings.Contains(errOut, "the registry refuses deletes (UNSUPPORTED): enable them with storage.delete.enabled: true") {
		t.Fatalf("retain on a registry without deletes: exit %d, %s", code, errOut)
	}
	if n := strings.Count(errOut, "UNSUPPORTED"); n != 1 {
		t.Errorf("the refusal is said %d times, want once:\n%s", n, errOut)
	}
}
