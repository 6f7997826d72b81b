// Command fleet starts the embedded registry, pushes a generated fleet of
// images into it (estate.Fleet), prints "host <addr>" and serves until
// interrupted. The benchmarks in bench/ run against it.
//
//	go run ./bench/fleet --dir /tmp/fleet --repos 200 --tags 10 --bases 4
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/regkeeper/regkeeper/internal/testbed/embedded"
	"github.com/regkeeper/regkeeper/internal/testbed/estate"
)

func main() {
	var (
		dir        = flag.String("dir", "", "registry directory (storage/ and config.yml); required")
		addr       = flag.String("addr", "", "listen address; empty: a free port on 127.0.0.1")
		catalogMax = flag.Int("catalog-max", 1000, "the registry's catalog page limit")
		o          estate.FleetOptions
	)
	flag.IntVar(&o.Repos, "repos", 200, "application repositories")
	flag.IntVar(&o.Tags, "tags", 10, "tags per repository")
	flag.IntVar(&o.Bases, "bases", 4, "shared base images")
	flag.IntVar(&o.LayerSize, "layer-size", 1<<10, "bytes of each image's own layer")
	flag.Parse()
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "fleet: --dir is required")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv, err := embedded.Start(ctx, embedded.Options{Dir: *dir, Addr: *addr, CatalogMaxEntries: *catalogMax})
	if err != nil {
		fmt.Fprintln(os.Stderr, "fleet:", err)
		os.Exit(1)
	}
	defer srv.Close()
	start := time.Now()
	o.Insecure = true
	n, err := estate.Fleet(ctx, srv.Host, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fleet:", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "fleet: pushed %d tags in %d repositories in %.1fs\n", n, o.Repos+o.Bases, time.Since(start).Seconds())
	fmt.Printf("host %s\n", srv.Host)
	<-ctx.Done()
}
