// The registry's blob-descriptor cache: what gc must do about it.

package gc

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/distribution/distribution/v3"
	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/storage/cache"
	rediscache "github.com/distribution/distribution/v3/registry/storage/cache/redis"
	"github.com/opencontainers/go-digest"
	"github.com/redis/go-redis/v9"
)

// ErrInMemoryCache: the registry caches blob descriptors in its own memory,
// so an online run cannot be made safe; see cacheRules.
var ErrInMemoryCache = errors.New("the registry caches blob descriptors in memory")

// Blob-descriptor cache kinds of a registry configuration.
const (
	CacheNone     = ""
	CacheInMemory = "inmemory"
	CacheRedis    = "redis"
)

// RegistrySettings is what gc reads from a registry's configuration besides
// its storage.
type RegistrySettings struct {
	// BlobDescriptorCache is storage.cache.blobdescriptor (or its old name
	// layerinfo): "", "inmemory" or "redis".
	BlobDescriptorCache string
	// ReadOnly is storage.maintenance.readonly.enabled.
	ReadOnly bool
	// Redis is the registry's redis section, used to clear a redis cache.
	Redis configuration.Redis
}

// Settings reads the settings gc acts on from a parsed registry
// configuration.
func Settings(cfg *configuration.Configuration) RegistrySettings {
	var s RegistrySettings
	if cfg == nil {
		return s
	}
	if cc, ok := cfg.Storage["cache"]; ok {
		v, ok := cc["blobdescriptor"]
		if !ok {
			v = cc["layerinfo"]
		}
		s.BlobDescriptorCache, _ = v.(string)
	}
	if mc, ok := cfg.Storage["maintenance"]; ok {
		if ro, ok := mc["readonly"].(map[any]any); ok {
			s.ReadOnly, _ = ro["enabled"].(bool)
		}
	}
	s.Redis = cfg.Redis
	return s
}

// runMode is how a run sweeps: online (quarantine, settle, re-scan) or
// offline, and which cache it clears.
type runMode struct {
	offline bool
	cache   *redisCache // nil: no cache to clear
	// why says what made the run offline or accepted the in-memory cache,
	// for the log.
	why string
}

// cacheRules decides the mode of a run from its options and the registry's
// settings:
//
//   - storage.maintenance.readonly.enabled, or Options.Offline: offline,
//     no quarantine and no settle;
//   - cache inmemory: refused with ErrInMemoryCache unless the run is
//     offline, or Options.CacheDropped (the running registry was restarted
//     without the cache) or Options.RestartAfter (it is restarted right
//     after gc) says how the stale cache goes away;
//   - cache redis: the run clears every digest it deletes from it, globally
//     and in each repository, with distribution's own redis cache code.
func cacheRules(opts Options) (runMode, error) {
	s := opts.Registry
	m := runMode{offline: opts.Offline}
	if opts.Offline {
		m.why = "--offline"
	}
	if s.ReadOnly {
		m.offline, m.why = true, "storage.maintenance.readonly.enabled: true"
	}
	switch s.BlobDescriptorCache {
	case CacheInMemory:
		switch {
		case opts.DryRun:
		case m.offline:
		case opts.CacheDropped:
			m.why = "--blob-cache-dropped"
		case opts.RestartAfter:
			m.why = "--restart-after"
		default:
			return m, fmt.Errorf("%w (storage.cache.blobdescriptor: inmemory): while it runs it keeps answering that the blobs gc deletes exist, "+
				"and accepts pushes that need them, which then cannot be pulled. Ways out: "+
				"stop the registry or make it read-only (storage.maintenance.readonly.enabled: true) and run gc with --offline; "+
				"or drop the cache (remove storage.cache.blobdescriptor, restart the registry) and run gc with --blob-cache-dropped; "+
				"or restart the registry right after gc and run gc with --restart-after", ErrInMemoryCache)
		}
	case CacheRedis:
		if opts.DryRun {
			break
		}
		c, err := newRedisCache(s.Redis)
		if err != nil {
			return m, err
		}
		m.cache = c
	}
	return m, nil
}

// redisCache clears digests from the registry's redis blob-descriptor
// cache through distribution's own cache provider, so that the keys are the
// registry's by construction.
type redisCache struct {
	client   redis.UniversalClient
	provider cache.BlobDescriptorCacheProvider
}

func newRedisCache(cfg configuration.Redis) (*redisCache, error) {
	if len(cfg.Options.Addrs) == 0 {
		return nil, errors.New("the registry's blob-descriptor cache is redis, but its config has no redis.addrs")
	}
	o := cfg.Options
	client := redis.NewUniversalClient(&redis.UniversalOptions{
		Addrs: o.Addrs, ClientName: o.ClientName, DB: o.DB, Protocol: o.Protocol, Username: o.Username, Password: o.Password,
		SentinelUsername: o.SentinelUsername, SentinelPassword: o.SentinelPassword, MaxRetries: o.MaxRetries,
		DialTimeout: o.DialTimeout, ReadTimeout: o.ReadTimeout, WriteTimeout: o.WriteTimeout,
		PoolSize: o.PoolSize, MasterName: o.MasterName, MaxRedirects: o.MaxRedirects,
	})
	return &redisCache{client: client, provider: rediscache.NewRedisBlobDescriptorCacheProvider(client)}, nil
}

// clear removes each global digest from the cache, and each repository's
// digest from that repository's scope, jobs at a time. A digest the cache
// does not hold is not an error.
func (c *redisCache) clear(ctx context.Context, jobs int, global []digest.Digest, scoped []BlobRef) error {
	if c == nil || removed.redisClear {
		return nil
	}
	ok := func(err error) bool { return err == nil || errors.Is(err, distribution.ErrBlobUnknown) }
	err := forEach(ctx, jobs, len(global), func(i int) error {
		if err := c.provider.Clear(ctx, global[i]); !ok(err) {
			return fmt.Errorf("clearing %s from the registry's redis cache: %w", global[i], err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return forEach(ctx, jobs, len(scoped), func(i int) error {
		ref := scoped[i]
		svc, err := c.provider.RepositoryScoped(ref.Repository)
		if err != nil {
			return nil // a name the registry itself cannot have cached
		}
		if err := svc.Clear(ctx, ref.Digest); !ok(err) {
			return fmt.Errorf("clearing %s of %s from the registry's redis cache: %w", ref.Digest, ref.Repository, err)
		}
		return nil
	})
}

func (c *redisCache) close() {
	if c != nil {
		_ = c.client.Close()
	}
}

// ReadSettings reads the settings gc acts on from a registry configuration
// file (the one Open opens the storage of).
func ReadSettings(configFile string) (RegistrySettings, error) {
	f, err := os.Open(configFile)
	if err != nil {
		return RegistrySettings{}, fmt.Errorf("reading registry config: %w", err)
	}
	defer f.Close()
	cfg, err := parseConfig(f)
	if err != nil {
		return RegistrySettings{}, fmt.Errorf("parsing registry config %s: %w", configFile, err)
	}
	return Settings(cfg), nil
}
