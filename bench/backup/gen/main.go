// Command gen starts the embedded registry, pushes the backup benchmark's
// images into it, prints "host <addr>" and a summary line, and serves until
// interrupted. Every image is built on one of a few large base images (two
// layers each) and adds one layer of its own, so the registry's unique bytes
// are far fewer than the sum of its images' sizes, as in a real estate.
//
//	go run ./bench/backup/gen --dir /tmp/reg --repos 30 --tags 4 --bases 4 --base-size 24MiB --layer-size 2MiB
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/regkeeper/regkeeper/bench/backup/images"
	"github.com/regkeeper/regkeeper/internal/testbed/embedded"
)

func main() {
	var (
		dir       = flag.String("dir", "", "registry directory; required")
		repos     = flag.Int("repos", 30, "application repositories")
		tags      = flag.Int("tags", 4, "tags per repository")
		bases     = flag.Int("bases", 4, "base images, each pushed as base/os-N:latest")
		baseSize  = flag.Int("base-size", 24<<20, "bytes of each base image (two layers)")
		layerSize = flag.Int("layer-size", 2<<20, "bytes of each application image's own layer")
		jobs      = flag.Int("jobs", 4, "concurrent pushes")
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
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
	defer srv.Close()
	start := time.Now()
	n, unique, err := images.Push(ctx, srv.Host, images.Shape{Repos: *repos, Tags: *tags, Bases: *bases, BaseSize: *baseSize, LayerSize: *layerSize, Jobs: *jobs, Seed: "bench"})
	if err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "gen: pushed %d tags, %.1f MB of unique layers, in %.1fs\n", n, float64(unique)/1e6, time.Since(start).Seconds())
	fmt.Printf("host %s\n", srv.Host)
	<-ctx.Done()
}
