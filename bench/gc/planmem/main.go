// Command planmem measures what gc's mark holds: it makes a plan (gc.PlanGC,
// deleting nothing) on a storage and prints the peak and the end of the
// heap, with the manifests read from storage, optionally writing a
// heap profile of what the plan keeps. With -write-cache the plan writes
// the mark cache, as a real run does, so the next run's reads can be
// counted.
//
//	go run ./bench/gc/planmem -config registry.yml [-write-cache] [-no-cache] [-out heap.prof]
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"os"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"sync/atomic"
	"time"

	"github.com/regkeeper/regkeeper/gc"
)

func main() {
	cfg := flag.String("config", "", "the registry's configuration file")
	write := flag.Bool("write-cache", false, "write the mark cache, as a real run does")
	noCache := flag.Bool("no-cache", false, "neither read nor write the mark cache")
	out := flag.String("out", "", "write a heap profile of the plan here")
	flag.Parse()
	ctx := context.Background()
	d, err := gc.Open(ctx, *cfg)
	if err != nil {
		log.Fatal(err)
	}
	o := gc.DefaultOptions()
	o.Grace, o.Jobs, o.DryRun, o.NoMarkCache = 0, 8, !*write, *noCache
	o.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))

	// The peaks of the heap in use (live and garbage not yet collected)
	// and of the live heap (what the last collection found reachable),
	// sampled every 5 ms.
	var peak, livePeak atomic.Uint64
	stop := make(chan struct{})
	go func() {
		var ms runtime.MemStats
		live := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			runtime.ReadMemStats(&ms)
			if ms.HeapAlloc > peak.Load() {
				peak.Store(ms.HeapAlloc)
			}
			metrics.Read(live)
			if v := live[0].Value.Uint64(); v > livePeak.Load() {
				livePeak.Store(v)
			}
		}
	}()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	t := time.Now()
	p, err := gc.PlanGC(ctx, d, o)
	if err != nil {
		log.Fatal(err)
	}
	el := time.Since(t)
	close(stop)
	runtime.GC()
	runtime.ReadMemStats(&ms)
	rep := p.Report()
	fmt.Printf("plan in %.1fs: %d manifests, %d layer links, %d blobs to delete; heap before %.1f MB, peak %.1f MB (live %.1f MB), plan held %.1f MB\n",
		el.Seconds(), rep.ManifestsDeleted, rep.LayerLinksDeleted, rep.BlobsDeleted, mb(base), mb(peak.Load()), mb(livePeak.Load()), mb(ms.HeapAlloc))
	if *out != "" {
		f, err := os.Create(*out)
		if err != nil {
			log.Fatal(err)
		}
		defer f.Close()
		if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
			log.Fatal(err)
		}
	}
	runtime.KeepAlive(p)
}

func mb(n uint64) float64 { return float64(n) / (1 << 20) }
