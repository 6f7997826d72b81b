package cycle

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/distribution/distribution/v3/registry/storage/driver"

	"github.com/regkeeper/regkeeper/audit"
	"github.com/regkeeper/regkeeper/backup"
	"github.com/regkeeper/regkeeper/gc"
	"github.com/regkeeper/regkeeper/internal/testbed/embedded"
	"github.com/regkeeper/regkeeper/internal/testbed/estate"
	"github.com/regkeeper/regkeeper/internal/testbed/regtest"
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

func TestCycle(t *testing.T) {
	srv, e := regtest.Seeded(t, embedded.Options{})
	opts := options(t, srv, e, filepath.Join(t.TempDir(), "backup"))
	res, err := Run(context.Background(), opts)
	if err != nil {
		t.Fatalf("cycle: %v", err)
	}
	for _, st := range res.Steps {
		want := "ok"
		if st.Name == StepInventory {
			want = "partial" // mirror/alpine's children are not in its repository
		}
		if st.Status != want {
			t.Errorf("step %s: %s (%s), want %s", st.Name, st.Status, st.Error, want)
		}
	}
	if res.Backup.Images != len(e.Tags()) || !res.Verify.OK() || res.GC.ManifestsDeleted != 9 || res.GC.KeptAsBase != 1 || res.GC.BytesReclaimed == 0 {
		t.Errorf("backup %d images (want %d), verify ok %v, gc %+v", res.Backup.Images, len(e.Tags()), res.Verify.OK(), res.GC)
	}
	// One dead manifest stays: the untagged base of team-b/web:prod (gc
	// keeps the bases of live images).
	if n := deadCount(t, opts.Storage, e); n != 1 {
		t.Errorf("%d untagged manifests left after the cycle, want 1 (a base)", n)
	}
	regtest.PullAll(t, srv.Host, e)
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

	// A backup whose blob was damaged since the last run (same size, so
	// the incremental run keeps it) does not verify.
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
	dir := filepath.Join(t.TempDir(), "backup")
	unlock, err := lock(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Run(context.Background(), Options{BackupDir: dir})
	if !errors.Is(err, ErrLocked) {
		t.Errorf("second cycle: err %v, want ErrLocked", err)
	}
	unlock()
	if again, err := lock(dir); err != nil {
		t.Errorf("lock after unlock: %v", err)
	} else {
		again()
	}
}
