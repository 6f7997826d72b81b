// Command gen starts the embedded registry with one repository of many
// tags (default 100,000) on a few distinct images, prints "host <addr>"
// and serves until interrupted. The images are pushed through the
// registry API; the tags are written into its storage directly, as
// distribution lays them out (a current link and an index link per tag),
// with push times spread over a year, because pushing 100,000 tags takes
// longer than the plan being measured.
//
//	go run ./bench/retain/gen --dir /tmp/many --tags 100000
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/regkeeper/regkeeper/internal/testbed/embedded"
)

func main() {
	var (
		dir    = flag.String("dir", "", "registry directory (storage/ and config.yml); required")
		tags   = flag.Int("tags", 100000, "tags in the repository")
		images = flag.Int("images", 50, "distinct images the tags point at")
		repo   = flag.String("repo", "ci/app", "the repository")
	)
	flag.Parse()
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "gen: --dir is required")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv, err := embedded.Start(ctx, embedded.Options{Dir: *dir})
	if err != nil {
		fail(err)
	}
	defer srv.Close()
	start := time.Now()
	var digests []v1.Hash
	for i := range *images {
		img, err := random.Image(256, 1)
		if err != nil {
			fail(err)
		}
		ref, _ := name.ParseReference(fmt.Sprintf("%s/%s:seed-%d", srv.Host, *repo, i), name.Insecure)
		if err := remote.Write(ref, img, remote.WithContext(ctx)); err != nil {
			fail(err)
		}
		d, _ := img.Digest()
		digests = append(digests, d)
	}
	tagsDir := filepath.Join(srv.Root, "docker/registry/v2/repositories", *repo, "_manifests/tags")
	now := time.Now()
	for i := range *tags {
		// main-N, feat-<k>-N and semantic versions, a push every few minutes
		// over the last year.
		var tag string
		switch i % 4 {
		case 0, 1:
			tag = fmt.Sprintf("main-%d", i)
		case 2:
			tag = fmt.Sprintf("feat-%d-%d", i%97, i)
		default:
			tag = fmt.Sprintf("%d.%d.%d", i%7, i%13, i)
		}
		d := digests[i%len(digests)]
		at := now.Add(-time.Duration(*tags-i) * 5 * time.Minute)
		cur := filepath.Join(tagsDir, tag, "current", "link")
		idx := filepath.Join(tagsDir, tag, "index", d.Algorithm, d.Hex, "link")
		for _, p := range []string{cur, idx} {
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				fail(err)
			}
			if err := os.WriteFile(p, []byte(d.String()), 0o644); err != nil {
				fail(err)
			}
			if err := os.Chtimes(p, at, at); err != nil {
				fail(err)
			}
		}
	}
	fmt.Fprintf(os.Stderr, "gen: %d tags on %d images in %s in %.1fs\n", *tags, *images, *repo, time.Since(start).Seconds())
	fmt.Printf("host %s\nroot %s\n", srv.Host, srv.Root)
	<-ctx.Done()
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "gen:", err)
	os.Exit(1)
}
