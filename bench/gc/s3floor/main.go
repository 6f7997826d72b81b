// Command s3floor measures what an S3 store costs for the objects gc's
// online quarantine sends, without gc: it takes N blob data objects of a
// registry's storage, copies each into a scratch prefix (one CopyObject a
// blob, -jobs at a time, as the quarantine does), deletes the sources
// 1,000 keys a DeleteObjects, then deletes the copies the same way (the
// purge), and prints the seconds each part took as JSON. What online gc
// adds over --offline is the copies and the second deletes: their sum is
// the store's floor for it, which bench/gc/s3online.sh prints beside the
// measured difference.
//
// It deletes blobs: run it on a throwaway copy of a storage.
//
//	go run ./bench/gc/s3floor -config registry.yml -n 6000 [-jobs 16]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"path"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/service/s3"
	"github.com/regkeeper/regkeeper/gc"
)

func main() {
	cfg := flag.String("config", "", "the registry's configuration file (an s3 storage)")
	n := flag.Int("n", 1000, "how many blobs to copy and delete")
	jobs := flag.Int("jobs", 16, "copies at a time (gc's quarantine copies max(--jobs, 16) at a time)")
	acl := flag.String("acl", "private", "the copies' ACL (the s3 driver's default objectacl, which gc's copies set)")
	class := flag.String("storage-class", "STANDARD", "the copies' storage class (the s3 driver's default, which gc's copies set)")
	flag.Parse()
	ctx := context.Background()
	d, err := gc.Open(ctx, *cfg)
	if err != nil {
		log.Fatal(err)
	}
	p := gc.S3PlaceOf(d)
	if p == nil {
		log.Fatalf("%s: not an s3 storage whose client can be reached", *cfg)
	}

	// The first n blob data objects of the blob store, as driver paths.
	const blobs = "/docker/registry/v2/blobs/"
	var paths []string
	prefix := p.Key(blobs)
	err = p.Client.ListObjectsV2PagesWithContext(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(p.Bucket), Prefix: aws.String(prefix)},
		func(out *s3.ListObjectsV2Output, _ bool) bool {
			for _, o := range out.Contents {
				k := aws.StringValue(o.Key)
				if strings.HasSuffix(k, "/data") && len(paths) < *n {
					paths = append(paths, blobs+strings.TrimPrefix(k, prefix))
				}
			}
			return len(paths) < *n
		})
	if err != nil {
		log.Fatalf("listing %s: %v", prefix, err)
	}
	if len(paths) < *n {
		log.Fatalf("the blob store has %d blobs, fewer than -n %d", len(paths), *n)
	}
	copies := make([]string, len(paths))
	for i, src := range paths {
		copies[i] = "/docker/registry/v2/regkeeper-floor/" + path.Base(path.Dir(src))
	}

	opts := gc.S3CopyOptions{ContentType: "application/octet-stream", ACL: *acl, StorageClass: *class}
	t0 := time.Now()
	var next atomic.Int64
	errs := make(chan error, *jobs)
	for range *jobs {
		go func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(paths) {
					errs <- nil
					return
				}
				if err := p.Copy(ctx, p.Key(paths[i]), p.Key(copies[i]), 0, opts); err != nil {
					errs <- fmt.Errorf("copying %s: %w", paths[i], err)
					return
				}
			}
		}()
	}
	for range *jobs {
		if err := <-errs; err != nil {
			log.Fatal(err)
		}
	}
	t1 := time.Now()
	if err := gc.DeleteFiles(ctx, d, paths, 1); err != nil {
		log.Fatal(err)
	}
	t2 := time.Now()
	if err := gc.DeleteFiles(ctx, d, copies, 1); err != nil {
		log.Fatal(err)
	}
	t3 := time.Now()
	out := map[string]any{
		"blobs":                len(paths),
		"jobs":                 *jobs,
		"copySeconds":          t1.Sub(t0).Seconds(),
		"deleteSourcesSeconds": t2.Sub(t1).Seconds(),
		"deleteCopiesSeconds":  t3.Sub(t2).Seconds(),
		"onlineExtraSeconds":   t1.Sub(t0).Seconds() + t3.Sub(t2).Seconds(),
		"copiesPerSecond":      float64(len(paths)) / t1.Sub(t0).Seconds(),
		"deletedKeysPerSecond": float64(len(paths)) / t2.Sub(t1).Seconds(),
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		log.Fatal(err)
	}
}
