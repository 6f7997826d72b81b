//go:build linux

package gc

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/opencontainers/go-digest"
)

// benchShape is the generated storage of BenchmarkSweep: repos x tags,
// every tag pushed versions times (versions-1 of every versions manifests
// untagged), each manifest with its own config and two layers, as
// bench/gc/gen makes it. REGKEEPER_BENCH_SHAPE=R:T:V overrides 20:10:4.
func benchShape(b *testing.B) (repos, tags, versions int) {
	repos, tags, versions = 20, 10, 4
	if s := os.Getenv("REGKEEPER_BENCH_SHAPE"); s != "" {
		if _, err := fmt.Sscanf(s, "%d:%d:%d", &repos, &tags, &versions); err != nil {
			b.Fatalf("REGKEEPER_BENCH_SHAPE=%s: %v", s, err)
		}
	}
	return
}

// writeShape writes the storage straight to disk (the layout of paths.go,
// what distribution writes for an OCI manifest push) and returns the
// number of files a gc --grace 0 deletes: per dead manifest its history
// entry, revision link, three layer links and four blobs.
func writeShape(b *testing.B, root string, repos, tags, versions int) int {
	put := func(p string, data []byte) {
		full := filepath.Join(root, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(full, data, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	blob := func(data []byte) digest.Digest {
		dg := digest.FromBytes(data)
		put(pathFor(blobDataSpec{dg}), data)
		return dg
	}
	for r := range repos {
		repo := fmt.Sprintf("bench/app%03d", r)
		for t := range tags {
			tag := fmt.Sprintf("t%03d", t)
			for v := range versions {
				seed := repo + ":" + tag + ":" + strconv.Itoa(v)
				cfg := blob([]byte(`{"architecture":"amd64","os":"linux","config":{"Labels":{"v":"` + seed + `"}}}`))
				l1 := blob([]byte(seed + "/layer1"))
				l2 := blob([]byte(seed + "/layer2"))
				desc := func(d digest.Digest) string {
					return `{"mediaType":"application/octet-stream","digest":"` + d.String() + `","size":1}`
				}
				m := blob([]byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":` + desc(cfg) + `,"layers":[` + desc(l1) + `,` + desc(l2) + `]}`))
				for _, l := range []digest.Digest{cfg, l1, l2} {
					put(pathFor(layerLinkSpec{repo, l}), []byte(l.String()))
				}
				put(pathFor(revisionLinkSpec{repo, m}), []byte(m.String()))
				put(pathFor(tagIndexLinkSpec{repo, tag, m}), []byte(m.String()))
				if v == versions-1 {
					put(pathFor(tagCurrentSpec{repo, tag}), []byte(m.String()))
				}
			}
		}
	}
	return repos * tags * (versions - 1) * 9
}

// BenchmarkSweep runs an offline gc --grace 0 on a generated filesystem
// storage and reports the cost per deleted file (mark included): "unlinkat"
// is the filesystem sweep, "driver" the same run deleting through the
// driver's Delete as on other storage; "online" the default mode without
// its settle (quarantine, re-scan, purge).
//
//	go test ./gc -run - -bench Sweep -benchtime 5x
//	REGKEEPER_BENCH_SHAPE=200:10:4 go test ./gc -run - -bench Sweep -benchtime 3x
func BenchmarkSweep(b *testing.B) {
	repos, tags, versions := benchShape(b)
	for _, c := range []struct {
		name            string
		driver, offline bool
	}{{"offline/unlinkat", false, true}, {"offline/driver", true, true}, {"online/unlinkat", false, false}} {
		driver := c.driver
		b.Run(c.name, func(b *testing.B) {
			ctx := context.Background()
			var deleted int
			for range b.N {
				b.StopTimer()
				root := b.TempDir()
				deleted = writeShape(b, root, repos, tags, versions)
				d, err := OpenRoot(ctx, root)
				if err != nil {
					b.Fatal(err)
				}
				opts := DefaultOptions()
				opts.Grace, opts.Offline, opts.Jobs, opts.driverDelete, opts.Settle = 0, c.offline, 8, driver, 0
				b.StartTimer()
				rep, err := Run(ctx, d, opts)
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if want := repos * tags * (versions - 1); rep.ManifestsDeleted != want || rep.BlobsDeleted != 4*want {
					b.Fatalf("deleted %d manifests, %d blobs; want %d, %d", rep.ManifestsDeleted, rep.BlobsDeleted, want, 4*want)
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*deleted), "ns/deleted-file")
			b.ReportMetric(float64(deleted), "deleted-files/op")
		})
	}
}
