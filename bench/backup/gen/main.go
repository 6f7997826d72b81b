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
	"sync"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/regkeeper/regkeeper/internal/testbed/embedded"
	"github.com/regkeeper/regkeeper/internal/testbed/estate"
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
	n, unique, err := generate(ctx, srv.Host, *repos, *tags, *bases, *baseSize, *layerSize, *jobs)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "gen: pushed %d tags, %.1f MB of unique layers, in %.1fs\n", n, float64(unique)/1e6, time.Since(start).Seconds())
	fmt.Printf("host %s\n", srv.Host)
	<-ctx.Done()
}

func generate(ctx context.Context, host string, repos, tags, bases, baseSize, layerSize, jobs int) (int, int64, error) {
	p, err := remote.NewPusher(remote.WithContext(ctx), remote.WithJobs(4))
	if err != nil {
		return 0, 0, err
	}
	push := func(ref string, img v1.Image) error {
		r, err := name.ParseReference(host+"/"+ref, name.Insecure)
		if err != nil {
			return err
		}
		return p.Push(ctx, r, img)
	}
	now := estate.DefaultNow
	var unique int64
	baseImgs := make([]v1.Image, bases)
	for i := range baseImgs {
		img, err := estate.BuildImage(estate.ImageSpec{
			Platform: v1.Platform{OS: "linux", Architecture: "amd64"},
			Created:  now.AddDate(0, 0, -30*(i+1)),
			Layers: []estate.LayerSpec{
				{Seed: fmt.Sprintf("bench-base-%d-a", i), Size: baseSize * 3 / 4},
				{Seed: fmt.Sprintf("bench-base-%d-b", i), Size: baseSize / 4},
			},
		})
		if err != nil {
			return 0, 0, err
		}
		if err := push(fmt.Sprintf("base/os-%d:latest", i), img); err != nil {
			return 0, 0, err
		}
		baseImgs[i] = img
		unique += int64(baseSize)
	}
	type job struct{ r, t int }
	ch := make(chan job)
	errs := make(chan error, repos*tags)
	var wg sync.WaitGroup
	for range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range ch {
				img, err := estate.BuildImage(estate.ImageSpec{
					Base:    baseImgs[j.r%bases], // a service stays on one base
					Created: now.Add(-time.Duration(j.t) * time.Hour),
					Layers:  []estate.LayerSpec{{Seed: fmt.Sprintf("bench-app-%d-%d", j.r, j.t), Size: layerSize}},
				})
				if err == nil {
					err = push(fmt.Sprintf("app/svc-%03d:1.%d", j.r, j.t), img)
				}
				if err != nil {
					errs <- err
				}
			}
		}()
	}
	for r := range repos {
		for t := range tags {
			ch <- job{r, t}
		}
	}
	close(ch)
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return 0, 0, err
	}
	return bases + repos*tags, unique + int64(repos*tags*layerSize), nil
}
