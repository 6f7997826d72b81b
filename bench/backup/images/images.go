// Package images pushes the backup benchmarks' registry: a few large base
// images (two layers each) and repositories of application images that each
// add one layer of their own on a base, so the registry's unique bytes are
// far fewer than the sum of its images' sizes, as in a real estate. The
// layers are deterministic for a seed.
package images

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/regkeeper/regkeeper/internal/testbed/estate"
)

// Shape is what Push pushes: Bases base images of BaseSize bytes (pushed as
// base/os-N:latest) and Repos × Tags application images (app/svc-NNN:1.T)
// of one LayerSize layer each on a base, Jobs pushes at a time; Seed makes
// the layers' bytes.
type Shape struct {
	Repos, Tags, Bases  int
	BaseSize, LayerSize int
	Jobs                int
	Seed                string
}

// Push pushes s into the registry at host, and returns how many tags it
// pushed and the unique bytes of their layers.
func Push(ctx context.Context, host string, s Shape) (int, int64, error) {
	repos, tags, bases, baseSize, layerSize, jobs := s.Repos, s.Tags, s.Bases, s.BaseSize, s.LayerSize, s.Jobs
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
				{Seed: fmt.Sprintf("%s-base-%d-a", s.Seed, i), Size: baseSize * 3 / 4},
				{Seed: fmt.Sprintf("%s-base-%d-b", s.Seed, i), Size: baseSize / 4},
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
					Layers:  []estate.LayerSpec{{Seed: fmt.Sprintf("%s-app-%d-%d", s.Seed, j.r, j.t), Size: layerSize}},
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
