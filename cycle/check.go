// The check step: everything that can be checked before any work starts,
// so that a cycle that cannot finish fails in seconds, before the backup,
// instead of after hours of it (issue 24: the shipped cron backed up the
// whole registry every week and then failed at gc on an in-memory cache).

package cycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/regkeeper/regkeeper/gc"
	"github.com/regkeeper/regkeeper/internal/client"
)

// StepCheck is the first step of every cycle (and all of `cycle --check`).
const StepCheck = "check"

// ErrCheckFailed: a check of the first step failed; nothing was done.
var ErrCheckFailed = errors.New("a check failed before any work started")

// Check is one check of the check step.
type Check struct {
	// Name is what was checked: registry, storage, gc-mode,
	// restart-command, backup, lock-file, or the flag of an output file
	// (metrics-file, report).
	Name string `json:"name"`
	// Status is "ok" or "failed".
	Status string `json:"status"`
	// Detail says what was found.
	Detail string `json:"detail"`
	// Fix says what to do about a failed check.
	Fix string `json:"fix,omitempty"`
}

// OK tells whether the check passed.
func (c Check) OK() bool { return c.Status == "ok" }

// Output is a file the command writes at the end of a cycle (the metrics
// file, the report): its directory must be writable before the cycle
// starts.
type Output struct {
	// Name is the check's name (the flag without dashes: metrics-file).
	Name string
	Path string
}

// RunChecks checks, before any work, what a cycle with opts needs: the
// registry answers and accepts the credentials (a catalog request, as the
// inventory makes); the storage is a registry's, readable, and writable
// unless gc is a dry run; the registry's blob-descriptor cache allows the
// gc mode; the restart command exists; the backup directory, the lock
// file's directory and every output's directory are writable. Every check
// runs, whatever the others found; the error is ErrCheckFailed naming the
// failed ones.
func RunChecks(ctx context.Context, opts Options) ([]Check, error) {
	var checks []Check
	add := func(name string, err error, detail, fix string) {
		c := Check{Name: name, Status: "ok", Detail: detail}
		if err != nil {
			c.Status, c.Detail, c.Fix = "failed", err.Error(), fix
		}
		checks = append(checks, c)
	}

	err := checkRegistry(ctx, opts.Host, opts.Inventory.Client)
	add("registry", err, fmt.Sprintf("%s answers and accepts the credentials (a catalog request)", opts.Host),
		"check the address; --insecure for plain HTTP; the registry's CA in the system's trust store or SSL_CERT_FILE; the credentials in the Docker config (DOCKER_CONFIG, docker login)")

	if opts.Storage == nil {
		add("storage", errors.New("no storage given"), "", "give --config (the registry's config.yml) or --root")
	} else {
		err = gc.CheckStorage(ctx, opts.Storage, opts.GC)
		what := "readable and writable"
		if opts.GC.DryRun {
			what = "readable (gc is a dry run)"
		}
		add("storage", err, fmt.Sprintf("%s storage: a registry's, %s", opts.Storage.Name(), what),
			"give the registry's own config.yml or root, and run as the user that owns the storage (gc writes its lock and quarantine there and deletes); "+
				"for s3, gcs or azure the storage credentials (REGISTRY_STORAGE_*) must allow listing, writing and deleting")
	}

	if err = gc.CheckMode(opts.GC); err != nil {
		// gc's own refusal explains every way out at length; the check's
		// line says what was found, and its fix what to pass.
		err = errors.New("online gc, and the registry caches blob descriptors in memory (storage.cache.blobdescriptor: inmemory, as distribution's example config.yml)")
	}
	add("gc-mode", err, gcMode(opts),
		"pass --restart-command with the command that restarts it (systemctl restart docker-registry.service; "+
			"kubectl rollout restart deployment/registry), which the cycle runs right after gc; "+
			"or --offline with the registry stopped or read-only; or remove the setting, restart the registry and pass --blob-cache-dropped")

	if len(opts.RestartCommand) > 0 {
		p, err := exec.LookPath(opts.RestartCommand[0])
		add("restart-command", err, fmt.Sprintf("%s runs after gc (%s)", strings.Join(opts.RestartCommand, " "), p),
			"give the command's full path, or install it where the cycle runs")
	}

	target := opts.layout()
	err = target.CheckWritable(ctx)
	if target.Driver() == nil {
		add("backup", err, target.String()+": an OCI layout (or empty), writable",
			"give a directory the cycle's user can write (with systemd: in ReadWritePaths), empty or a regkeeper backup")
	} else {
		add("backup", err, fmt.Sprintf("%s (%s): an OCI layout (or empty), a probe written and deleted in %s", target, target.Driver().Name(), target.TempDir()),
			"give the store's credentials (for s3: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, ~/.aws/credentials, an instance or pod role, "+
				"or --target-config with accesskey and secretkey) allowing list, read, write and delete under the prefix; "+
				"the bucket must exist; the prefix must be empty or a regkeeper backup")
	}
	lockFile := opts.LockFile
	if lockFile == "" {
		lockFile = DefaultLockFile(target)
	}
	lockDir := filepath.Dir(lockFile)
	switch {
	case opts.LockFile != "" || target.Driver() != nil:
		add("lock-file", checkWritableDir(lockDir), lockFile+": its directory is writable",
			"give --lock-file in a directory the cycle's user can write")
	case err == nil:
		// inside the local backup, which the backup check made
		add("lock-file", nil, lockFile+": inside the backup directory", "")
	}
	if opts.Retain != nil && opts.Retain.Journal == "" {
		jdir := JournalDir(opts)
		if target.Driver() == nil {
			// the local backup's private directory: checked with it
			add("retain-journal", nil, jdir+": the retain journal (retain-<time>.jsonl) goes here, inside the backup directory", "")
		} else {
			add("retain-journal", checkWritableDir(jdir), jdir+": the retain journal (retain-<time>.jsonl) goes here, next to the lock; keep it with --lock-file in a lasting directory",
				"give --lock-file in a lasting directory the cycle's user can write: the journal goes next to it")
		}
	}
	for _, o := range opts.Outputs {
		dir := filepath.Dir(o.Path)
		add(o.Name, checkWritableDir(dir), dir+": writable (for "+o.Path+")",
			"create the directory, or give the --"+o.Name+" in one the cycle's user can write (with systemd: in ReadWritePaths)")
	}

	var failed []string
	for _, c := range checks {
		if !c.OK() {
			failed = append(failed, c.Name)
		}
	}
	if len(failed) > 0 {
		return checks, fmt.Errorf("%w: %s", ErrCheckFailed, strings.Join(failed, ", "))
	}
	return checks, nil
}

// checkRegistry asks the registry for one catalog entry, with the
// credentials the walk uses: the address, TLS and the credentials at once.
func checkRegistry(ctx context.Context, host string, c client.Options) error {
	reg, err := c.Registry(host)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if _, err := remote.CatalogPage(reg, "", 1, c.Remote(ctx)...); err != nil {
		return errors.New(client.Describe(err))
	}
	return nil
}

// gcMode says how gc will run.
func gcMode(opts Options) string {
	o := opts.GC
	switch {
	case o.DryRun:
		return "gc is a dry run: it deletes nothing"
	case o.Offline || o.Registry.ReadOnly:
		return "gc runs offline: the registry is stopped or read-only"
	}
	switch o.Registry.BlobDescriptorCache {
	case gc.CacheRedis:
		return "gc runs online and clears what it deletes from the registry's redis cache"
	case gc.CacheInMemory:
		switch {
		case o.CacheDropped:
			return "gc runs online: the registry was restarted without its in-memory cache (--blob-cache-dropped)"
		case len(opts.RestartCommand) > 0:
			return "gc runs online; the registry's in-memory cache goes with the restart right after gc (--restart-command)"
		}
		return "gc runs online; the registry is restarted right after gc (--restart-after)"
	}
	return "gc runs online: the registry has no blob-descriptor cache to clear"
}

// checkWritableDir creates and removes a file in dir.
func checkWritableDir(dir string) error {
	f, err := os.CreateTemp(dir, ".regkeeper-check-*")
	if err != nil {
		return fmt.Errorf("%s is not writable: %w", dir, err)
	}
	f.Close()
	return os.Remove(f.Name())
}

// Restart is how the registry's restart after gc went.
type Restart struct {
	Command string `json:"command"`
	// Error is why it failed; empty when it succeeded.
	Error string `json:"error,omitempty"`
	// Output is what the command printed, trimmed.
	Output          string  `json:"output,omitempty"`
	DurationSeconds float64 `json:"durationSeconds"`
}

// touched tells whether a gc that returned err may have deleted anything:
// every error but the refusals made before the first deletion.
func touched(err error) bool {
	for _, refusal := range []error{gc.ErrLocked, gc.ErrNotRegistry, gc.ErrNoDriver, gc.ErrDeleteAll, gc.ErrNoTags, gc.ErrDeleteRatio, gc.ErrInMemoryCache} {
		if errors.Is(err, refusal) {
			return false
		}
	}
	return true
}

// restart runs the restart command, even when the cycle was interrupted
// during gc (the cache is stale all the same), for at most 10 minutes.
func restart(ctx context.Context, log *slog.Logger, argv []string) *Restart {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Minute)
	defer cancel()
	r := &Restart{Command: strings.Join(argv, " ")}
	start := time.Now()
	log.Info("cycle: restarting the registry", "command", r.Command)
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	r.DurationSeconds = time.Since(start).Seconds()
	r.Output = strings.TrimSpace(string(out))
	if err != nil {
		r.Error = fmt.Sprintf("%s: %v", r.Command, err)
		if r.Output != "" {
			r.Error += ": " + r.Output
		}
	}
	return r
}
