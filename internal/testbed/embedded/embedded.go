// Package embedded runs a real distribution v3 registry in-process, on
// 127.0.0.1, with filesystem storage in a directory of the caller's choice
// (or another storage driver, Options.Storage, such as s3 on a local MinIO).
// The demo and the tests use it; nothing here is a mock.
//
// Directory layout of a Server started with Options.Dir = D:
//
//	D/config.yml   the registry configuration, usable as `regkeeper gc --config`
//	D/storage/     the filesystem driver's rootdirectory (`regkeeper gc --root`);
//	               created but unused when Options.Storage is set
//	D/htpasswd     only when Options.Username is set
package embedded

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/handlers"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	storagemiddleware "github.com/distribution/distribution/v3/registry/storage/driver/middleware"
	"github.com/sirupsen/logrus"
	"golang.org/x/crypto/bcrypt"

	// Storage drivers and auth the embedded registry can be configured with.
	_ "github.com/distribution/distribution/v3/registry/auth/htpasswd"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/s3-aws"
)

// Options configures an embedded registry. The zero value is not usable:
// Dir is required.
type Options struct {
	// Dir holds config.yml and the storage root (Dir/storage). Required.
	Dir string
	// Addr to listen on; default "127.0.0.1:0" (a free port).
	Addr string
	// CatalogMaxEntries is the registry's page limit for /v2/_catalog;
	// default 1000, as in distribution.
	CatalogMaxEntries int
	// TagsMaxTags is the registry's page limit for tag lists (a larger n is
	// clamped to it, with a Link to the next page); default 1000, as in
	// distribution.
	TagsMaxTags int
	// Username and Password, when set, protect the registry with htpasswd
	// basic auth.
	Username, Password string
	// Verbose keeps the registry's own logs (logrus, on stderr).
	Verbose bool
	// Storage replaces the filesystem driver: the driver's YAML as it
	// stands under `storage:` in config.yml, unindented, e.g.
	// "s3:\n  bucket: b\n  region: us-east-1\n". Default: filesystem at
	// Dir/storage. delete, maintenance and redirect stay as ConfigYAML sets
	// them.
	Storage string
	// BlobDescriptorCache sets storage.cache.blobdescriptor: "inmemory" or
	// "redis" (then RedisAddr is the redis, host:port). Default: no cache.
	BlobDescriptorCache, RedisAddr string
	// WrapStorage, when set, wraps the registry's storage driver (as a
	// storage middleware of distribution's, applied inside the registry
	// only: config.yml does not name it, so gc opening the same config
	// gets the plain driver). Tests hold requests with it
	// (internal/testbed/stall).
	WrapStorage func(storagedriver.StorageDriver) storagedriver.StorageDriver
}

// Server is a running embedded registry.
type Server struct {
	// Host is "127.0.0.1:PORT", the registry name clients use.
	Host string
	// URL is "http://127.0.0.1:PORT".
	URL string
	// Root is the filesystem storage root.
	Root string
	// ConfigFile is the path of the registry configuration.
	ConfigFile string
	// Config is the parsed configuration the registry runs with.
	Config *configuration.Configuration

	srv    *http.Server
	app    *handlers.App
	ln     net.Listener
	done   chan struct{}
	once   sync.Once
	cancel context.CancelFunc
}

// logOnce quiets distribution's global logrus logger unless asked otherwise.
var logOnce sync.Once

// ConfigYAML returns the registry configuration the embedded registry uses for
// a storage root, with deletes enabled and index validation relaxed (so that an
// index can be copied into a repository without its children, as mirrors do).
func ConfigYAML(root string, catalogMax int, htpasswdFile string) string {
	return configYAML(fmt.Sprintf("filesystem:\n  rootdirectory: %q\n", root), catalogMax, htpasswdFile)
}

// configYAML is ConfigYAML with any storage driver section (unindented YAML).
func configYAML(driver string, catalogMax int, htpasswdFile string) string {
	if catalogMax <= 0 {
		catalogMax = 1000
	}
	var b strings.Builder
	fmt.Fprintf(&b, `version: 0.1
log:
  level: error
storage:
%s  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
  redirect:
    disable: true
http:
  addr: 127.0.0.1:0
  secret: regkeeper-embedded
catalog:
  maxentries: %d
validation:
  manifests:
    indexes:
      platforms: none
`, indent(driver, "  "), catalogMax)
	if htpasswdFile != "" {
		fmt.Fprintf(&b, `auth:
  htpasswd:
    realm: regkeeper
    path: %q
`, htpasswdFile)
	}
	return b.String()
}

// withCache adds a blob-descriptor cache (and its redis) to a
// configuration ConfigYAML wrote.
func withCache(cfg, cache, redisAddr string) string {
	if cache == "" {
		return cfg
	}
	cfg = strings.Replace(cfg, "storage:\n", fmt.Sprintf("storage:\n  cache:\n    blobdescriptor: %s\n", cache), 1)
	if redisAddr != "" {
		cfg += fmt.Sprintf("redis:\n  addrs: [%q]\n", redisAddr)
	}
	return cfg
}

func indent(s, prefix string) string {
	lines := strings.SplitAfter(strings.TrimRight(s, "\n")+"\n", "\n")
	var b strings.Builder
	for _, l := range lines {
		if strings.TrimSpace(l) != "" {
			b.WriteString(prefix)
		}
		b.WriteString(l)
	}
	return b.String()
}

// Start starts a registry and returns once it accepts connections. Close
// stops it; the directory is left in place.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if opts.Dir == "" {
		return nil, errors.New("embedded registry: no directory given")
	}
	logOnce.Do(func() {
		if !opts.Verbose {
			logrus.SetLevel(logrus.FatalLevel)
		}
	})
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, err
	}
	root := filepath.Join(dir, "storage")
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, fmt.Errorf("creating storage root: %w", err)
	}
	var htpasswd string
	if opts.Username != "" {
		hash, err := bcrypt.GenerateFromPassword([]byte(opts.Password), bcrypt.MinCost)
		if err != nil {
			return nil, err
		}
		htpasswd = filepath.Join(dir, "htpasswd")
		if err := os.WriteFile(htpasswd, []byte(opts.Username+":"+string(hash)+"\n"), 0o600); err != nil {
			return nil, err
		}
	}
	cfgText := ConfigYAML(root, opts.CatalogMaxEntries, htpasswd)
	if opts.Storage != "" {
		cfgText = configYAML(opts.Storage, opts.CatalogMaxEntries, htpasswd)
	}
	if opts.TagsMaxTags > 0 {
		cfgText += fmt.Sprintf("tags:\n  maxtags: %d\n", opts.TagsMaxTags)
	}
	cfgText = withCache(cfgText, opts.BlobDescriptorCache, opts.RedisAddr)
	cfgFile := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgFile, []byte(cfgText), 0o644); err != nil {
		return nil, fmt.Errorf("writing registry config: %w", err)
	}
	cfg, err := configuration.Parse(strings.NewReader(cfgText))
	if err != nil {
		return nil, fmt.Errorf("parsing registry config: %w", err)
	}

	if opts.WrapStorage != nil {
		wrapStorage(cfg, opts.WrapStorage)
	}

	addr := opts.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", addr, err)
	}

	appCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	app, err := newApp(appCtx, cfg)
	if err != nil {
		cancel()
		ln.Close()
		return nil, err
	}
	s := &Server{
		Host:       ln.Addr().String(),
		URL:        "http://" + ln.Addr().String(),
		Root:       root,
		ConfigFile: cfgFile,
		Config:     cfg,
		srv:        &http.Server{Handler: app},
		app:        app,
		ln:         ln,
		done:       make(chan struct{}),
		cancel:     cancel,
	}
	go func() {
		defer close(s.done)
		_ = s.srv.Serve(ln)
	}()
	return s, nil
}

// wrapMiddleware is the storage middleware WrapStorage goes through; its
// one option, "id", names the wrap function in wraps.
const wrapMiddleware = "regkeeper-testbed-wrap"

var (
	wrapOnce sync.Once
	wraps    sync.Map // id (string) -> func(storagedriver.StorageDriver) storagedriver.StorageDriver
	wrapSeq  atomic.Int64
)

// wrapStorage adds the wrap middleware, with a new id for wrap, to cfg.
func wrapStorage(cfg *configuration.Configuration, wrap func(storagedriver.StorageDriver) storagedriver.StorageDriver) {
	wrapOnce.Do(func() {
		_ = storagemiddleware.Register(wrapMiddleware, func(_ context.Context, d storagedriver.StorageDriver, options map[string]any) (storagedriver.StorageDriver, error) {
			id, _ := options["id"].(string)
			w, ok := wraps.Load(id)
			if !ok {
				return nil, fmt.Errorf("no storage wrap %q", id)
			}
			return w.(func(storagedriver.StorageDriver) storagedriver.StorageDriver)(d), nil
		})
	})
	id := fmt.Sprint(wrapSeq.Add(1))
	wraps.Store(id, wrap)
	if cfg.Middleware == nil {
		cfg.Middleware = map[string][]configuration.Middleware{}
	}
	cfg.Middleware["storage"] = append(cfg.Middleware["storage"], configuration.Middleware{Name: wrapMiddleware, Options: configuration.Parameters{"id": id}})
}

// newApp turns the panics handlers.NewApp uses for bad configuration into an
// error.
func newApp(ctx context.Context, cfg *configuration.Configuration) (app *handlers.App, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("starting registry: %v", r)
		}
	}()
	return handlers.NewApp(ctx, cfg), nil
}

// Handler is the registry's HTTP handler, for callers that want to wrap it
// (to inject faults, or count requests).
func (s *Server) Handler() http.Handler { return s.app }

// SetHandler replaces the handler that serves requests from now on.
func (s *Server) SetHandler(h http.Handler) { s.srv.Handler = h }

// Close stops the server. It is safe to call more than once.
func (s *Server) Close() error {
	var err error
	s.once.Do(func() {
		err = s.srv.Close()
		<-s.done
		s.cancel()
		_ = s.app.Shutdown()
	})
	return err
}
