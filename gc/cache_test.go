package gc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/redis/go-redis/v9"

	"github.com/regkeeper/regkeeper/internal/testbed/embedded"
	"github.com/regkeeper/regkeeper/internal/testbed/pull"
	"github.com/regkeeper/regkeeper/internal/testbed/regtest"
)

// A registry with an in-memory blob-descriptor cache: gc refuses to run
// online, names the setting and the ways out, and touches nothing; each way
// out is accepted.
func TestGCInMemoryCacheRefused(t *testing.T) {
	srv := regtest.Registry(t, embedded.Options{BlobDescriptorCache: CacheInMemory})
	pushStormEstate(t, srv.Host, 1, 1, 2)
	d, err := Open(context.Background(), srv.ConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	settings, err := ReadSettings(srv.ConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	if settings.BlobDescriptorCache != CacheInMemory {
		t.Fatalf("settings %+v, want the in-memory cache", settings)
	}
	opts := aged()
	opts.Registry = settings
	_, err = Run(context.Background(), d, opts)
	if !errors.Is(err, ErrInMemoryCache) {
		t.Fatalf("run: %v, want ErrInMemoryCache", err)
	}
	for _, want := range []string{"storage.cache.blobdescriptor: inmemory", "read-only", "--offline", "drop the cache", "--blob-cache-dropped", "restart the registry right after gc", "--restart-after"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal does not say %q: %v", want, err)
		}
	}
	for _, p := range []string{pathFor(lockSpec{}), pathFor(quarantineSpec{})} {
		if _, err := d.Stat(context.Background(), p); !isNotFound(err) {
			t.Errorf("refused run left %s (%v)", p, err)
		}
	}
	dry := opts
	dry.DryRun = true
	if _, err := Run(context.Background(), d, dry); err != nil {
		t.Errorf("dry run: %v", err)
	}
	for name, set := range map[string]func(*Options){
		"--offline":            func(o *Options) { o.Offline = true },
		"--blob-cache-dropped": func(o *Options) { o.CacheDropped = true },
		"--restart-after":      func(o *Options) { o.RestartAfter = true },
		"read-only":            func(o *Options) { o.Registry.ReadOnly = true },
	} {
		o := opts
		set(&o)
		m, err := cacheRules(o)
		if err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if wantOffline := name == "--offline" || name == "read-only"; m.offline != wantOffline {
			t.Errorf("%s: offline = %v, want %v", name, m.offline, wantOffline)
		}
	}
	// Offline, the blobs go at once: no quarantine is ever written.
	o := opts
	o.Offline = true
	moved := false
	o.beforeDelete = func(p string) error {
		if strings.Contains(p, "regkeeper-quarantine/sha256") {
			moved = true
		}
		return nil
	}
	rep, err := Run(context.Background(), d, o)
	if err != nil {
		t.Fatal(err)
	}
	if rep.BlobsDeleted == 0 || moved {
		t.Errorf("offline run: %+v, quarantine used: %v", rep, moved)
	}
}

func TestGCReadOnlySetting(t *testing.T) {
	dir := t.TempDir()
	cfg := dir + "/config.yml"
	yml := embedded.ConfigYAML(dir, 0, "") + ""
	yml = strings.Replace(yml, "  maintenance:\n", "  maintenance:\n    readonly:\n      enabled: true\n", 1)
	if err := os.WriteFile(cfg, []byte(yml), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := ReadSettings(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !s.ReadOnly {
		t.Fatalf("read-only not read from\n%s", yml)
	}
	m, err := cacheRules(Options{Registry: s})
	if err != nil || !m.offline {
		t.Errorf("read-only registry: offline=%v, %v", m.offline, err)
	}
}

// startRedis runs Debian's redis-server on 127.0.0.1 for one test, or
// skips the test when it is not installed.
func startRedis(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("skipping: redis-server not installed (Debian's redis-server package; scripts/setup-redis)")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	dir := t.TempDir()
	cmd := exec.Command(bin, "--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	for i := 0; ; i++ {
		if c.Ping(context.Background()).Err() == nil {
			return addr
		}
		if i > 100 {
			t.Fatalf("redis on %s not ready", addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A registry with a redis blob-descriptor cache that knows every dead blob
// (its clients pulled them): after gc, the cache holds none of what gc
// deleted, globally or in the repository, and the registry refuses a
// manifest that needs a deleted blob instead of answering from the cache.
func TestGCRedisCacheCleared(t *testing.T) {
	addr := startRedis(t)
	srv := regtest.Registry(t, embedded.Options{BlobDescriptorCache: CacheRedis, RedisAddr: addr})
	e := pushStormEstate(t, srv.Host, 1, 2, 3)
	ctx := context.Background()
	for _, im := range e.dead() {
		if err := pull.Pull(ctx, ref(t, srv.Host, im.repo+"@"+im.digest.String())); err != nil {
			t.Fatal(err)
		}
	}
	rc := redis.NewClient(&redis.Options{Addr: addr})
	defer rc.Close()
	cached := func(repo string, dg v1.Hash) (global, scoped bool) {
		g, err := rc.HGet(ctx, "blobs::"+dg.String(), "digest").Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			t.Fatal(err)
		}
		s, err := rc.SIsMember(ctx, "repository::"+repo+"::blobs", dg.String()).Result()
		if err != nil {
			t.Fatal(err)
		}
		return g != "", s
	}
	var deadLayers []v1.Hash
	dead := e.dead()
	for _, im := range dead {
		layers, _ := im.img.Layers()
		for _, l := range layers {
			dg, _ := l.Digest()
			deadLayers = append(deadLayers, dg)
			if g, s := cached(im.repo, dg); !g || !s {
				t.Fatalf("before gc, the cache does not know dead layer %s (global %v, %s %v)", dg, g, im.repo, s)
			}
		}
	}

	d, err := Open(ctx, srv.ConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	opts := aged()
	opts.Settle = 100 * time.Millisecond
	if opts.Registry, err = ReadSettings(srv.ConfigFile); err != nil {
		t.Fatal(err)
	}
	rep, err := Run(ctx, d, opts)
	if err != nil {
		t.Fatal(err)
	}
	if rep.BlobsDeleted < len(deadLayers) {
		t.Fatalf("gc deleted %d blobs, want the %d dead layers at least", rep.BlobsDeleted, len(deadLayers))
	}
	for _, dg := range deadLayers {
		if g, s := cached(dead[0].repo, dg); g || s {
			t.Errorf("after gc, the cache still has deleted layer %s (global %v, repository %v)", dg, g, s)
		}
	}
	for _, im := range dead {
		if _, s := cached(im.repo, im.digest); s {
			t.Errorf("after gc, the cache still has deleted manifest %s in %s", im.digest, im.repo)
		}
	}
	// A manifest that needs a deleted layer, pushed without the layer: the
	// registry checks storage (the cache no longer answers) and refuses.
	layers, _ := dead[0].img.Layers()
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if err := uploadBytes(ctx, srv.Host, dead[0].repo, cfg); err != nil {
		t.Fatal(err)
	}
	if err := remote.Put(ref(t, srv.Host, dead[0].repo+":needs-deleted"), img); err == nil {
		t.Error("the registry accepted a manifest whose layers gc deleted")
	}
	e.pullTags(t)
}

// The storm with a redis blob-descriptor cache in front of the storage: the
// registry answers from the cache, and gc's clearing keeps it honest.
func TestGCStormRedis(t *testing.T) {
	addr := startRedis(t)
	srv := regtest.Registry(t, embedded.Options{BlobDescriptorCache: CacheRedis, RedisAddr: addr})
	e := pushStormEstate(t, srv.Host, 3, 3, 3)
	ctx := context.Background()
	for _, im := range e.dead() { // the cache knows every dead blob
		if err := pull.Pull(ctx, ref(t, srv.Host, im.repo+"@"+im.digest.String())); err != nil {
			t.Fatal(err)
		}
	}
	d, err := Open(ctx, srv.ConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	opts := aged()
	if opts.Registry, err = ReadSettings(srv.ConfigFile); err != nil {
		t.Fatal(err)
	}
	// Pushes go on for a second after gc: a stale cache would accept a
	// manifest needing a purged blob then.
	storm(t, srv.Host, d, e, 4, opts, time.Second)
}
