// Opening a registry's storage and taking its lock.

package gc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/factory"
	"go.yaml.in/yaml/v3"

	"github.com/regkeeper/regkeeper/internal/storeerr"

	// The storage drivers regkeeper gc can open from a registry config.
	_ "github.com/distribution/distribution/v3/registry/storage/driver/azure"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/gcs"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/s3-aws"
)

// Open opens the storage driver a registry configuration file names.
func Open(ctx context.Context, configFile string) (storagedriver.StorageDriver, error) {
	f, err := os.Open(configFile)
	if err != nil {
		return nil, fmt.Errorf("reading registry config: %w", err)
	}
	defer f.Close()
	cfg, err := parseConfig(f)
	if err != nil {
		return nil, fmt.Errorf("parsing registry config %s: %w", configFile, err)
	}
	typ, err := storageType(cfg)
	if err != nil {
		return nil, fmt.Errorf("registry config %s: %w", configFile, err)
	}
	d, err := factory.Create(ctx, typ, cfg.Storage.Parameters())
	if err != nil {
		return nil, fmt.Errorf("opening %s storage of %s: %w", typ, configFile, storeerr.Describe(err, configFile))
	}
	return wrapAzure(d), nil // azure.go: one listing per tree walked
}

// parseConfig parses a registry configuration. A file with no version
// (a storage: section alone, as backup's --target-config takes) is read as
// version 0.1, the only one there is; distribution's parser refuses it.
func parseConfig(f *os.File) (cfg *configuration.Configuration, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	raw, err := io.ReadAll(f)
	if err != nil {
		return nil, err
	}
	var top map[string]any
	if yaml.Unmarshal(raw, &top) == nil && top != nil {
		if _, ok := top["version"]; !ok {
			raw = append([]byte("version: 0.1\n"), raw...)
		}
	}
	return configuration.Parse(bytes.NewReader(raw))
}

func storageType(cfg *configuration.Configuration) (typ string, err error) {
	defer func() {
		if r := recover(); r != nil { // distribution panics on two drivers
			err = fmt.Errorf("%v", r)
		}
	}()
	if typ = cfg.Storage.Type(); typ == "" {
		return "", ErrNoDriver
	}
	return typ, nil
}

// OpenRoot opens a filesystem storage root (the filesystem driver's
// rootdirectory).
func OpenRoot(ctx context.Context, root string) (storagedriver.StorageDriver, error) {
	if fi, err := os.Stat(root); err != nil {
		return nil, fmt.Errorf("opening storage root: %w", err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("opening storage root %s: not a directory", root)
	}
	return factory.Create(ctx, "filesystem", map[string]any{"rootdirectory": root})
}

// describe says in one line what a refusal of the registry's storage
// means and what to check in the registry's config (storeerr.Describe): gc
// runs with the registry's own credentials, and the SDKs' errors name
// neither the setting nor where it is. The first read of every run
// (checkRegistry) and the lock go through it.
func describe(err error) error {
	return storeerr.Describe(err, "the registry's config")
}

// checkRegistry reads the registry's root: the first read of a run, where
// wrong credentials or a missing bucket show.
func checkRegistry(ctx context.Context, d storagedriver.StorageDriver) error {
	fi, err := d.Stat(ctx, pathFor(registryRootSpec{}))
	if err != nil {
		var nf storagedriver.PathNotFoundError
		if errors.As(err, &nf) {
			return fmt.Errorf("%w: no %s in %s storage", ErrNotRegistry, pathFor(registryRootSpec{}), d.Name())
		}
		return fmt.Errorf("reading %s: %w", pathFor(registryRootSpec{}), describe(err))
	}
	if !fi.IsDir() {
		return fmt.Errorf("%w: %s is not a directory", ErrNotRegistry, pathFor(registryRootSpec{}))
	}
	return nil
}

// lockFile is the content of the lock.
type lockFile struct {
	Holder string    `json:"holder"`
	Time   time.Time `json:"time"`
	lockHolder
}

// Lock takes the gc lock in storage, refusing with ErrLocked when another
// run holds a lock younger than opts.StaleLock; the lock of a run on this
// host whose process is gone (killed) is taken over at once (lock.go). The
// returned func releases it. Object stores have no atomic create, so the
// lock is written, read back and compared: two runs starting in the same
// instant are caught by the read-back in all but the most adversarial
// timing.
func Lock(ctx context.Context, d storagedriver.StorageDriver, opts Options) (func(), error) {
	opts.fill()
	p := pathFor(lockSpec{})
	now := opts.Now()
	if b, err := d.GetContent(ctx, p); err == nil {
		var lf lockFile
		switch {
		case json.Unmarshal(b, &lf) != nil || now.Sub(lf.Time) >= opts.StaleLock:
			opts.Logger.Warn("taking over a stale gc lock", "path", p, "content", string(b))
		default:
			pid, dead := lf.deadHere() // lock.go
			if !dead {
				return nil, fmt.Errorf("%w: %s since %s (lock %s; taken over after --stale-lock %s, or at once on its host once that process is gone)",
					ErrLocked, lf.Holder, lf.Time.Format(time.RFC3339), p, opts.StaleLock)
			}
			opts.Logger.Warn("taking over the gc lock of a dead run on this host", "path", p, "pid", pid, "since", lf.Time, "content", string(b))
		}
	} else if !isNotFound(err) {
		return nil, fmt.Errorf("reading gc lock %s: %w", p, describe(err))
	}
	me := newLockFile(now)
	b, _ := json.Marshal(me)
	if err := d.PutContent(ctx, p, b); err != nil {
		return nil, fmt.Errorf("writing gc lock %s: %w", p, describe(err))
	}
	if back, err := d.GetContent(ctx, p); err != nil || string(back) != string(b) {
		return nil, fmt.Errorf("%w: lost the race for %s", ErrLocked, p)
	}
	return func() {
		if back, err := d.GetContent(context.WithoutCancel(ctx), p); err == nil && string(back) == string(b) {
			_ = d.Delete(context.WithoutCancel(ctx), p)
		}
	}, nil
}

func isNotFound(err error) bool {
	var nf storagedriver.PathNotFoundError
	return errors.As(err, &nf)
}
