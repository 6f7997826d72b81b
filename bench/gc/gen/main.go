// Command gen builds, checks and counts the registry estates bench/gc/run.sh
// collects: REPOS repositories of TAGS tags, each tag pushed VERSIONS times
// (so VERSIONS-1 untagged manifests per tag), every manifest with its own
// config and two small layers. Content is deterministic: two estates
// generated with the same shape are identical but for modification times.
//
//	gen -config registry.yml -repos 200 -tags 10 -versions 4   # write
//	gen -verify http://127.0.0.1:5000 -repos 200 -tags 10 -versions 4
//	gen -count -config registry.yml                            # blobs, revisions
//	gen -mkbucket -config registry.yml                         # s3: create the bucket
//
// Writing goes through distribution's own storage API (storage.NewRegistry
// on the driver the config names), so the layout is exactly the registry's.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/aws/credentials"
	"github.com/aws/aws-sdk-go/aws/session"
	"github.com/aws/aws-sdk-go/service/s3"
	"github.com/distribution/distribution/v3"
	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/manifest/ocischema"
	"github.com/distribution/distribution/v3/registry/storage"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/factory"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/s3-aws"
)

type shape struct{ repos, tags, versions int }

func (s shape) repo(r int) string { return fmt.Sprintf("bench/app%03d", r) }
func (s shape) tag(t int) string  { return fmt.Sprintf("t%03d", t) }

// image is the content of one version of one tag.
type image struct {
	config   []byte
	layers   [2][]byte
	manifest *ocischema.DeserializedManifest
	digest   digest.Digest
}

func build(s shape, r, t, v int) image {
	var im image
	for i := range im.layers {
		seed := sha256.Sum256(fmt.Appendf(nil, "%s:%s:%d:%d", s.repo(r), s.tag(t), v, i))
		b := make([]byte, 0, 1024)
		for len(b) < 1024 {
			b = append(b, seed[:]...)
			seed = sha256.Sum256(seed[:])
		}
		im.layers[i] = b
	}
	cfg := map[string]any{"architecture": "amd64", "os": "linux",
		"config": map[string]any{"Labels": map[string]string{"repo": s.repo(r), "tag": s.tag(t), "version": fmt.Sprint(v)}},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{digest.FromBytes(im.layers[0]).String(), digest.FromBytes(im.layers[1]).String()}}}
	im.config, _ = json.Marshal(cfg)
	m := ocischema.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: v1.MediaTypeImageManifest,
		Config:    v1.Descriptor{MediaType: v1.MediaTypeImageConfig, Digest: digest.FromBytes(im.config), Size: int64(len(im.config))},
	}
	for _, l := range im.layers {
		m.Layers = append(m.Layers, v1.Descriptor{MediaType: v1.MediaTypeImageLayer, Digest: digest.FromBytes(l), Size: int64(len(l))})
	}
	dm, err := ocischema.FromStruct(m)
	if err != nil {
		panic(err)
	}
	_, b, _ := dm.Payload()
	im.manifest, im.digest = dm, digest.FromBytes(b)
	return im
}

func main() {
	var (
		s               shape
		config, verify  string
		count, mkbucket bool
		jobs            int
		ctx, stop       = context.WithCancel(context.Background())
		start           = time.Now()
		progressEvery   = 10 * time.Second
		done, total     atomic.Int64
		lastProgress    = start
		progressMu      sync.Mutex
		reportProgress  func()
	)
	defer stop()
	flag.StringVar(&config, "config", "", "registry config.yml whose storage to write (or count)")
	flag.StringVar(&verify, "verify", "", "registry URL: HEAD every tag and the blobs of its manifest")
	flag.BoolVar(&count, "count", false, "count blobs and manifest revisions in -config's storage")
	flag.BoolVar(&mkbucket, "mkbucket", false, "create the bucket -config's s3 storage names")
	flag.IntVar(&s.repos, "repos", 200, "repositories")
	flag.IntVar(&s.tags, "tags", 10, "tags per repository")
	flag.IntVar(&s.versions, "versions", 4, "pushes of each tag (the last one stays tagged)")
	flag.IntVar(&jobs, "jobs", 16, "concurrent writers or requests")
	flag.Parse()
	reportProgress = func() {
		progressMu.Lock()
		defer progressMu.Unlock()
		if time.Since(lastProgress) > progressEvery {
			lastProgress = time.Now()
			fmt.Fprintf(os.Stderr, "  %d/%d in %s\n", done.Load(), total.Load(), time.Since(start).Round(time.Second))
		}
	}
	var err error
	switch {
	case verify != "":
		err = runVerify(ctx, s, strings.TrimRight(verify, "/"), jobs)
	case mkbucket && config != "":
		err = runMkbucket(ctx, config)
	case count && config != "":
		err = runCount(ctx, config)
	case config != "":
		total.Store(int64(s.repos * s.tags))
		err = runGenerate(ctx, s, config, jobs, func() { done.Add(1); reportProgress() })
		if err == nil {
			fmt.Printf("generated %d repositories x %d tags x %d versions: %d manifests, %d blobs in %s\n",
				s.repos, s.tags, s.versions, s.repos*s.tags*s.versions, s.repos*s.tags*s.versions*4, time.Since(start).Round(time.Millisecond))
		}
	default:
		flag.Usage()
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

func parseConfig(file string) (*configuration.Configuration, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return configuration.Parse(f)
}

// runMkbucket creates the bucket of an s3 storage config (MinIO).
func runMkbucket(ctx context.Context, file string) error {
	cfg, err := parseConfig(file)
	if err != nil {
		return err
	}
	p := cfg.Storage.Parameters()
	str := func(k string) string { v, _ := p[k].(string); return v }
	sess, err := session.NewSession(&aws.Config{
		Endpoint:         aws.String(str("regionendpoint")),
		Region:           aws.String(str("region")),
		S3ForcePathStyle: aws.Bool(true),
		Credentials:      credentials.NewStaticCredentials(str("accesskey"), str("secretkey"), ""),
	})
	if err != nil {
		return err
	}
	_, err = s3.New(sess).CreateBucketWithContext(ctx, &s3.CreateBucketInput{Bucket: aws.String(str("bucket"))})
	return err
}

func openDriver(ctx context.Context, file string) (storagedriver.StorageDriver, error) {
	cfg, err := parseConfig(file)
	if err != nil {
		return nil, err
	}
	return factory.Create(ctx, cfg.Storage.Type(), cfg.Storage.Parameters())
}

// forEach runs fn(r, t) for every tag of the shape, jobs at a time, and
// returns the first error.
func forEach(s shape, jobs int, fn func(r, t int) error) error {
	type item struct{ r, t int }
	items := make(chan item)
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	for range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for it := range items {
				if err := fn(it.r, it.t); err != nil {
					once.Do(func() { first = err })
				}
			}
		}()
	}
	for r := range s.repos {
		for t := range s.tags {
			items <- item{r, t}
		}
	}
	close(items)
	wg.Wait()
	return first
}

func runGenerate(ctx context.Context, s shape, config string, jobs int, step func()) error {
	d, err := openDriver(ctx, config)
	if err != nil {
		return err
	}
	reg, err := storage.NewRegistry(ctx, d, storage.EnableDelete)
	if err != nil {
		return err
	}
	return forEach(s, jobs, func(r, t int) error {
		named, err := reference.WithName(s.repo(r))
		if err != nil {
			return err
		}
		repo, err := reg.Repository(ctx, named)
		if err != nil {
			return err
		}
		if err := push(ctx, repo, s, r, t); err != nil {
			return fmt.Errorf("%s:%s: %w", s.repo(r), s.tag(t), err)
		}
		step()
		return nil
	})
}

func push(ctx context.Context, repo distribution.Repository, s shape, r, t int) error {
	bs := repo.Blobs(ctx)
	ms, err := repo.Manifests(ctx)
	if err != nil {
		return err
	}
	for v := range s.versions {
		im := build(s, r, t, v)
		if _, err := bs.Put(ctx, v1.MediaTypeImageConfig, im.config); err != nil {
			return err
		}
		for _, l := range im.layers {
			if _, err := bs.Put(ctx, v1.MediaTypeImageLayer, l); err != nil {
				return err
			}
		}
		dg, err := ms.Put(ctx, im.manifest)
		if err != nil {
			return err
		}
		if dg != im.digest {
			return fmt.Errorf("manifest digest %s, want %s", dg, im.digest)
		}
		if err := repo.Tags(ctx).Tag(ctx, s.tag(t), v1.Descriptor{MediaType: v1.MediaTypeImageManifest, Digest: dg}); err != nil {
			return err
		}
	}
	return nil
}

func runVerify(ctx context.Context, s shape, url string, jobs int) error {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: jobs}, Timeout: time.Minute}
	var failed atomic.Int64
	head := func(p string, accept string) (string, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodHead, url+p, nil)
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		resp, err := client.Do(req)
		if err != nil {
			return "", err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return "", fmt.Errorf("HEAD %s: %s", p, resp.Status)
		}
		return resp.Header.Get("Docker-Content-Digest"), nil
	}
	err := forEach(s, jobs, func(r, t int) error {
		im := build(s, r, t, s.versions-1)
		fail := func(err error) {
			if failed.Add(1) <= 10 {
				fmt.Fprintf(os.Stderr, "gen: %s:%s: %v\n", s.repo(r), s.tag(t), err)
			}
		}
		got, err := head(path.Join("/v2", s.repo(r), "manifests", s.tag(t)), v1.MediaTypeImageManifest)
		if err != nil {
			fail(err)
			return nil
		}
		if got != im.digest.String() {
			fail(fmt.Errorf("digest %s, want %s", got, im.digest))
		}
		for _, b := range [][]byte{im.config, im.layers[0], im.layers[1]} {
			if _, err := head(path.Join("/v2", s.repo(r), "blobs", digest.FromBytes(b).String()), ""); err != nil {
				fail(err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if n := failed.Load(); n > 0 {
		return fmt.Errorf("%d of %d tags or their blobs missing at %s", n, s.repos*s.tags, url)
	}
	fmt.Printf("verified %d tags and their blobs at %s\n", s.repos*s.tags, url)
	return nil
}

func runCount(ctx context.Context, config string) error {
	d, err := openDriver(ctx, config)
	if err != nil {
		return err
	}
	var blobs, revisions, layerLinks int
	err = d.Walk(ctx, "/docker/registry/v2", func(fi storagedriver.FileInfo) error {
		p := fi.Path()
		switch {
		case fi.IsDir():
		case strings.HasPrefix(p, "/docker/registry/v2/blobs/") && path.Base(p) == "data":
			blobs++
		case strings.Contains(p, "/_manifests/revisions/") && path.Base(p) == "link":
			revisions++
		case strings.Contains(p, "/_layers/") && path.Base(p) == "link":
			layerLinks++
		}
		return nil
	})
	if err != nil && !errors.As(err, new(storagedriver.PathNotFoundError)) {
		return err
	}
	fmt.Printf("blobs=%d revisions=%d layerlinks=%d\n", blobs, revisions, layerLinks)
	return nil
}
