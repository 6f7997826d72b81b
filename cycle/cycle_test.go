package cycle

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/distribution/distribution/v3/registry/storage/driver"

	"github.com/regkeeper/regkeeper/audit"
	"github.com/regkeeper/regkeeper/backup"
	"github.com/regkeeper/regkeeper/gc"
	"github.com/regkeeper/regkeeper/internal/testbed/embedded"
	"github.com/regkeeper/regkeeper/internal/testbed/estate"
	"github.com/regkeeper/regkeeper/internal/testbed/regtest"
	"github.com/regkeeper/regkeeper/internal/walk"
	"github.com/regkeeper/regkeeper/inventory"
)

func options(t *testing.T, srv *embedded.Server, e *estate.Estate, dir string) Options {
	t.Helper()
	drv, err := gc.Open(context.Background(), srv.ConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	g := gc.DefaultOptions()
	g.Grace = 0
	return Options{
		Host: srv.Host, Storage: drv, BackupDir: dir,
		Inventory: inventory.Options{Client: regtest.Client()},
		Policy:    audit.Policy{MaxBaseAge: audit.DefaultMaxBaseAge},
		Backup:    backup.DefaultOptions(), GC: g, Now: e.Now,
	}
}

// deadCount is how many of the estate's untagged manifests are still in
// storage.
func deadCount(t *testing.T, d driver.StorageDriver, e *estate.Estate) int {
	t.Helper()
	n := 0
	for _, m := range e.Manifests {
		if m.Live {
			continue
		}
		p := filepath.Join("/docker/registry/v2/repositories", m.Repository, "_manifests/revisions/sha256", m.Digest.Hex, "link")
		if _, err := d.Stat(context.Background(), p); err == nil {
			n++
		}
	}
	return n
}

// A registry with a catalog page limit of 5 and an index-only copy: every
// step runs, the copy is a problem in the registry (once), and gc runs.
func TestCycle(t *testing.T) {
	srv, e := regtest.Seeded(t, embedded.Options{CatalogMaxEntries: 5})
	opts := options(t, srv, e, filepath.Join(t.TempDir(), "backup"))
	res, err := Run(context.Background(), opts)
	if err != nil {
		t.Fatalf("cycle: %v", err)
	}
	for _, st := range res.Steps {
		want := "ok"
		if st.Status != want {
			t.Errorf("step %s: %s (%s), want %s", st.Name, st.Status, st.Error, want)
		}
	}
	if res.Backup.Images != len(e.Tags()) || !res.Verify.OK() || res.GC.ManifestsDeleted != 9 || res.GC.ManifestsKeptAsBase != 1 || res.GC.BytesReclaimed == 0 {
		t.Errorf("backup %d images (want %d), verify ok %v, gc %+v", res.Backup.Images, len(e.Tags()), res.Verify.OK(), res.GC)
	}
	// Of the estate's 10 untagged manifests, gc keeps one: the debian
	// team-b/web:prod names as its base.
	if n := deadCount(t, opts.Storage, e); n != 1 {
		t.Errorf("%d untagged manifests left after the cycle, want 1 (team-b/web's base)", n)
	}
	if len(res.Problems) != 1 || res.Problems[0].Where() != "mirror/alpine:3.20" || res.Problems[0].Kind != walk.KindChildrenAbsent || len(res.Errors) != 0 {
		t.Errorf("problems %+v, errors %+v; want mirror/alpine:3.20's absent children once", res.Problems, res.Errors)
	}
	if s := res.Summary(StepInventory); !strings.Contains(s, "in 10 repositories") || !strings.Contains(s, "1 problem in the registry") {
		t.Errorf("inventory summary %q", s)
	}
	regtest.PullAll(t, srv.Host, e)
}

// A tag that cannot be read (the registry fails on it, after retries) is
// not covered by the backup: gc does not run, and the summary says which.
func TestCycleUnreadableTagStopsGC(t *testing.T) {
	srv, e := regtest.Seeded(t, embedded.Options{})
	inner := srv.Handler()
	srv.SetHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/v2/team-b/web/manifests/") {
			http.Error(w, "storage backend unavailable", http.StatusServiceUnavailable)
			return
		}
		inner.ServeHTTP(w, r)
	}))
	opts := options(t, srv, e, filepath.Join(t.TempDir(), "backup"))
	opts.Inventory.Client.MaxRetries = -1
	res, err := Run(context.Background(), opts)
	if !errors.Is(err, ErrBackupFailed) || res.Step(StepGC).Status != "skipped" {
		t.Errorf("err %v, steps %+v; want the backup failed and gc skipped", err, res.Steps)
	}
	if n := deadCount(t, opts.Storage, e); n != 10 {
		t.Errorf("gc ran with a tag not backed up: %d of 10 untagged manifests left", n)
	}
	if s := res.Summary(StepInventory); !strings.Contains(s, "1 could not be read: team-b/web:prod") {
		t.Errorf("inventory summary %q does not say which tag could not be read", s)
	}
}

// A backup that fails, or that does not verify, stops the cycle before gc:
// nothing is deleted.
func TestCycleStopsBeforeGC(t *testing.T) {
	srv, e := regtest.Seeded(t, embedded.Options{})

	// The backup directory is not a layout: the backup refuses it.
	notLayout := t.TempDir()
	os.WriteFile(filepath.Join(notLayout, "precious.txt"), []byte("not a backup"), 0o644)
	opts := options(t, srv, e, notLayout)
	res, err := Run(context.Background(), opts)
	if !errors.Is(err, ErrBackupFailed) || res.Step(StepGC).Status != "skipped" || res.Step(StepVerify).Status != "skipped" {
		t.Errorf("backup into a non-layout: err %v, steps %+v", err, res.Steps)
	}
	if n := deadCount(t, opts.Storage, e); n != 10 {
		t.Errorf("gc ran after a failed backup: %d of 10 untagged manifests left", n)
	}

	// A backup whose blob was damaged since the last run, in a way backup
	// cannot see (same size, and the mtime backup marks verified blobs
	// with left alone, as bit rot does), does not verify.
	dir := filepath.Join(t.TempDir(), "backup")
	if _, err := backup.Run(context.Background(), srv.Host, dir, backup.Options{Client: regtest.Client()}); err != nil {
		t.Fatal(err)
	}
	var victim string
	filepath.WalkDir(filepath.Join(dir, "blobs"), func(p string, d os.DirEntry, err error) error {
		if info, _ := d.Info(); err == nil && !d.IsDir() && info.Size() > 64<<10 && victim == "" {
			victim = p
		}
		return nil
	})
	raw, _ := os.ReadFile(victim)
	raw[len(raw)/2] ^= 0xff
	os.WriteFile(victim, raw, 0o644)
	os.Chtimes(victim, time.Time{}, time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC))
	opts = options(t, srv, e, dir)
	res, err = Run(context.Background(), opts)
	if !errors.Is(err, ErrVerifyFailed) || res.Step(StepGC).Status != "skipped" || res.Step(StepBackup).Status != "ok" {
		t.Errorf("damaged backup: err %v, steps %+v", err, res.Steps)
	}
	if n := deadCount(t, opts.Storage, e); n != 10 {
		t.Errorf("gc ran after a failed verify: %d of 10 untagged manifests left", n)
	}
}

func TestCycleLock(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "backup")
	// A cycle holds its lock inside the backup directory, so that a
	// sandbox that lets it write only there (systemd ReadWritePaths) works.
	if got, want := DefaultLockFile(backup.Layout{Root: dir}), filepath.Join(dir, ".regkeeper", "cycle.lock"); got != want {
		t.Errorf("DefaultLockFile = %s, want %s", got, want)
	}
	if err := (backup.Layout{Root: dir}).Init(); err != nil {
		t.Fatal(err)
	}
	unlock, err := lock(DefaultLockFile(backup.Layout{Root: dir}))
	if err != nil {
		t.Fatal(err)
	}
	_, err = Run(context.Background(), Options{BackupDir: dir})
	if !errors.Is(err, ErrLocked) {
		t.Errorf("second cycle: err %v, want ErrLocked", err)
	}
	unlock()
	if again, err := lock(DefaultLockFile(backup.Layout{Root: dir})); err != nil {
		t.Errorf("lock after unlock: %v", err)
	} else {
		again()
	}
	if entries, _ := os.ReadDir(parent); len(entries) != 1 {
		t.Errorf("the cycle wrote beside the backup directory: %v", entries)
	}

	// --lock-file puts it elsewhere.
	custom := filepath.Join(t.TempDir(), "cycle.lock")
	unlock, err = lock(custom)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	if _, err = Run(context.Background(), Options{BackupDir: dir, LockFile: custom}); !errors.Is(err, ErrLocked) {
		t.Errorf("cycle with a held --lock-file: err %v, want ErrLocked", err)
	}
}
