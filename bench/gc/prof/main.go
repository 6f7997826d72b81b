// Command prof runs gc on a storage and writes a heap profile (allocations
// over the whole run, live objects at its end): a tool for finding what a
// run allocates, beside bench/gc/run.sh.
//
//	go run ./bench/gc/prof -config registry.yml -out heap.prof [-online]
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"runtime"
	"runtime/pprof"

	"github.com/regkeeper/regkeeper/gc"
)

func main() {
	cfg := flag.String("config", "", "the registry's configuration file")
	out := flag.String("out", "heap.prof", "where the heap profile goes")
	online := flag.Bool("online", false, "run online (quarantine, settle 0, re-scan) instead of --offline")
	flag.Parse()
	ctx := context.Background()
	d, err := gc.Open(ctx, *cfg)
	if err != nil {
		log.Fatal(err)
	}
	o := gc.DefaultOptions()
	o.Grace, o.Jobs, o.Offline, o.Settle = 0, 8, !*online, 0
	rep, err := gc.Run(ctx, d, o)
	if err != nil {
		log.Fatal(err)
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fmt.Printf("%d blobs deleted; allocated %d MB in %d objects, %d GC cycles\n", rep.BlobsDeleted, ms.TotalAlloc>>20, ms.Mallocs, ms.NumGC)
	f, err := os.Create(*out)
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		log.Fatal(err)
	}
}
