// Command usage measures the usage ledger: sustained events per second
// stored as usage serve stores them (one fsynced bbolt transaction per
// envelope of one event, as distribution sends them), and the ledger's size
// per million events (with fsync off, which changes the speed, not the
// size). The events are a realistic mix over -repos repositories of
// -tags tags each: pulls by tag, HEADs, pulls by digest of an index's
// child, pushes, and a share from regkeeper itself.
//
//	go run ./bench/usage -events 5000 -size-events 1000000
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/regkeeper/regkeeper/usage"
)

func main() {
	events := flag.Int("events", 5000, "events for the rate (fsync on, one transaction each)")
	sizeEvents := flag.Int("size-events", 200000, "events for the size (fsync off)")
	repos := flag.Int("repos", 200, "repositories")
	tags := flag.Int("tags", 10, "tags per repository")
	flag.Parse()
	dir, err := os.MkdirTemp("", "usage-bench")
	if err != nil {
		fail(err)
	}
	defer os.RemoveAll(dir)

	rate, size := run(filepath.Join(dir, "rate.db"), *events, *repos, *tags, false)
	fmt.Printf("rate: %d events, one fsynced transaction each: %.0f events/s (ledger %d bytes)\n", *events, rate, size)
	if *sizeEvents > 0 {
		_, size = run(filepath.Join(dir, "size.db"), *sizeEvents, *repos, *tags, true)
		fmt.Printf("size: %d events: %d bytes, %.1f MB per million events (%.0f bytes per event)\n",
			*sizeEvents, size, float64(size)/float64(*sizeEvents)*1e6/1e6, float64(size)/float64(*sizeEvents))
	}
}

func run(path string, n, repos, tags int, noSync bool) (perSec float64, size int64) {
	opts := []usage.Option{}
	if noSync {
		opts = append(opts, usage.WithNoSync())
	}
	l, err := usage.OpenWrite(path, opts...)
	if err != nil {
		fail(err)
	}
	defer l.Close()
	if err := l.StartListening("serve", 30*time.Second); err != nil {
		fail(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	start := time.Now()
	at := time.Now().Add(-24 * time.Hour)
	for i := 0; i < n; i++ {
		env := &usage.Envelope{Events: []usage.Event{event(r, i, at.Add(time.Duration(i)*time.Second), repos, tags)}}
		if _, err := l.Record(context.Background(), env); err != nil {
			fail(err)
		}
	}
	took := time.Since(start)
	if fi, err := os.Stat(path); err == nil {
		size = fi.Size()
	}
	return float64(n) / took.Seconds(), size
}

func event(r *rand.Rand, i int, at time.Time, repos, tags int) usage.Event {
	var e usage.Event
	e.ID = fmt.Sprintf("%08x-%04x-4%03x-8%03x-%012x", r.Uint32(), r.Uint32()&0xffff, i&0xfff, r.Uint32()&0xfff, r.Uint64()&0xffffffffffff)
	e.Timestamp = at
	e.Action = "pull"
	repo, tag := r.IntN(repos), r.IntN(tags)
	e.Target.Repository = fmt.Sprintf("team-%d/app-%d", repo%20, repo)
	e.Target.MediaType = "application/vnd.oci.image.manifest.v1+json"
	e.Target.Digest = fmt.Sprintf("sha256:%064x", repo*1000+tag)
	e.Target.URL = "http://registry/v2/" + e.Target.Repository + "/manifests/" + e.Target.Digest
	e.Request.Method, e.Request.UserAgent = "GET", "containerd/2.0"
	e.Request.Addr = fmt.Sprintf("10.0.%d.%d:40000", r.IntN(4), r.IntN(250))
	switch p := r.IntN(100); {
	case p < 50: // by tag
		e.Target.Tag = fmt.Sprintf("v%d", tag)
	case p < 70: // HEAD by tag
		e.Target.Tag = fmt.Sprintf("v%d", tag)
		e.Request.Method = "HEAD"
	case p < 90: // by digest
	case p < 95: // regkeeper's own
		e.Request.UserAgent = "regkeeper/1.0 go-containerregistry/v0.22"
	default: // a push
		e.Action, e.Request.Method = "push", "PUT"
		e.Target.Tag = fmt.Sprintf("v%d", tag)
	}
	return e
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}
