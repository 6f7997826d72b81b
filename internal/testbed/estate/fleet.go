package estate

import (
	"context"
	"fmt"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/sync/errgroup"
)

// FleetOptions sizes a generated fleet for benchmarks: Repos application
// repositories of Tags tags each, every image built on one of Bases base
// images (pushed as base/os-N:latest), with one layer of its own.
type FleetOptions struct {
	Repos, Tags, Bases int
	// LayerSize is the size of each image's own layer; 0 means 1 KiB.
	LayerSize int
	// Jobs concurrent pushes; 0 means 8.
	Jobs int
	// Insecure: the registry speaks plain HTTP.
	Insecure bool
	// Now dates the images; zero means DefaultNow.
	Now time.Time
}

// FleetRepo names the i-th application repository of a fleet.
func FleetRepo(i int) string { return fmt.Sprintf("fleet/app-%04d", i) }

// Fleet pushes a fleet to the registry at host and returns the number of
// tags pushed (bases included).
func Fleet(ctx context.Context, host string, o FleetOptions) (int, error) {
	if o.LayerSize == 0 {
		o.LayerSize = 1 << 10
	}
	if o.Jobs == 0 {
		o.Jobs = 8
	}
	if o.Bases == 0 {
		o.Bases = 1
	}
	if o.Now.IsZero() {
		o.Now = DefaultNow
	}
	var nopts []name.Option
	if o.Insecure {
		nopts = append(nopts, name.Insecure)
	}
	p, err := remote.NewPusher(remote.WithContext(ctx), remote.WithJobs(4))
	if err != nil {
		return 0, err
	}
	push := func(ref string, img v1.Image) error {
		r, err := name.ParseReference(host+"/"+ref, nopts...)
		if err != nil {
			return err
		}
		if err := p.Push(ctx, r, img); err != nil {
			return fmt.Errorf("pushing %s: %w", ref, err)
		}
		return nil
	}

	bases := make([]v1.Image, o.Bases)
	for i := range bases {
		img, err := BuildImage(ImageSpec{
			Platform: v1.Platform{OS: "linux", Architecture: "amd64"},
			Created:  o.Now.AddDate(0, 0, -30*(i+1)),
			Layers:   []LayerSpec{{Seed: fmt.Sprintf("fleet-base-%d-a", i), Size: 4 << 10}, {Seed: fmt.Sprintf("fleet-base-%d-b", i), Size: 4 << 10}},
			Labels:   map[string]string{"org.opencontainers.image.title": fmt.Sprintf("os-%d", i)},
		})
		if err != nil {
			return 0, err
		}
		bases[i] = img
		if err := push(fmt.Sprintf("base/os-%d:latest", i), img); err != nil {
			return 0, err
		}
	}

	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(o.Jobs)
	for r := range o.Repos {
		for t := range o.Tags {
			g.Go(func() error {
				if gctx.Err() != nil {
					return gctx.Err()
				}
				img, err := BuildImage(ImageSpec{
					Base:    bases[(r*o.Tags+t)%o.Bases],
					Created: o.Now.Add(-time.Duration(t) * time.Hour),
					Layers:  []LayerSpec{{Seed: fmt.Sprintf("fleet-%d-%d", r, t), Size: o.LayerSize}},
					Labels:  map[string]string{"org.opencontainers.image.version": fmt.Sprintf("1.%d", t)},
				})
				if err != nil {
					return err
				}
				return push(fmt.Sprintf("%s:1.%d", FleetRepo(r), t), img)
			})
		}
	}
	if err := g.Wait(); err != nil {
		return 0, err
	}
	return o.Bases + o.Repos*o.Tags, nil
}
