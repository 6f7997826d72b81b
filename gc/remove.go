// Removing files in bulk: the one seam every bulk deletion of the sweep and
// the purge goes through.

package gc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"syscall"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
)

// fsWorkersMin is the least number of directories deleted from at once.
// Deletion on the filesystem is bound by how many unlinks are in flight
// (on a disk mounted with discard each freed block is a synchronous
// discard), not by the CPU: measured on the benchmark disk, 8 to 16 workers
// each in its own parent directory are at the floor.
const fsWorkersMin = 16

// remover deletes files in bulk. Every deletion of the sweep (links, blob
// data on the offline path, quarantined blobs, uploads, tags, empty
// repositories) goes through one, so that a faster implementation for one
// storage (the filesystem's, S3's batches) replaces it in one place.
//
// Contract: paths are driver paths of files, never directories. A path
// already gone is not an error. On storage with directories, the directory
// that held a deleted file is removed when it is left empty; one that has
// gained an entry meanwhile (a push writing into it) is left alone, and that
// is not an error either. Nothing is ever removed recursively: a file a push
// writes while gc runs is never deleted by a directory removal.
type remover interface {
	remove(ctx context.Context, paths []string) error
}

// newRemover picks the remover for a driver: on the filesystem unlinkat
// relative to each parent directory (fs_linux.go), an object store's own
// (store.go: S3's batched DeleteObjects), otherwise the driver's own
// Delete, jobs at a time. With the test hook beforeDelete set, S3 uses the
// driver's, which calls the hook per path; the filesystem's calls it too.
func newRemover(d storagedriver.StorageDriver, opts Options) remover {
	if fr := newFSRemover(d, opts); fr != nil && !opts.driverDelete {
		return fr
	}
	if r := newStoreRemover(d, opts); r != nil {
		return r
	}
	return &driverRemover{d: d, jobs: opts.Jobs, hook: opts.beforeDelete, dirs: newDirRemover(d)}
}

// driverRemover deletes through StorageDriver.Delete.
type driverRemover struct {
	d    storagedriver.StorageDriver
	jobs int
	hook func(path string) error
	dirs *dirRemover // nil on storage without directories
}

func (r *driverRemover) remove(ctx context.Context, paths []string) error {
	return forEach(ctx, r.jobs, len(paths), func(i int) error {
		p := paths[i]
		if r.hook != nil {
			if err := r.hook(p); err != nil {
				return err
			}
		}
		// On the filesystem, Delete of a file is a stat and an unlink; on
		// object stores, a delete of that key (and of nothing else: gc's
		// paths are whole names, no other key has them as a prefix).
		if err := r.d.Delete(ctx, p); err != nil && !isNotFound(err) {
			return fmt.Errorf("deleting %s: %w", p, err)
		}
		return r.dirs.removeEmpty(path.Dir(p))
	})
}

// s3Remover deletes 1,000 keys per request (batch.go).
type s3Remover struct {
	b    *s3Batch
	jobs int
}

func init() {
	storeRemovers = append(storeRemovers, func(d storagedriver.StorageDriver, opts Options) remover {
		if opts.beforeDelete != nil {
			return nil // the driver's Delete calls the hook per path
		}
		if b := newS3Batch(d); b != nil {
			return &s3Remover{b: b, jobs: opts.Jobs}
		}
		return nil
	})
}

func (r *s3Remover) remove(ctx context.Context, paths []string) error {
	return r.b.deleteFiles(ctx, paths, r.jobs)
}

// dirRemover removes directories of the filesystem driver only when they
// are empty (rmdir). Object stores have no directories: it is nil there.
type dirRemover struct{ root string }

// newDirRemover returns a dirRemover for the filesystem driver, nil for
// any other.
func newDirRemover(d storagedriver.StorageDriver) *dirRemover {
	if root, ok := fsRoot(d); ok {
		return &dirRemover{root: root}
	}
	return nil
}

// removeEmpty removes the directory dir (a driver path) if it is empty.
// A directory that is not empty (a push wrote into it) or already gone is
// left as it is, without error.
func (r *dirRemover) removeEmpty(dir string) error {
	if r == nil {
		return nil
	}
	err := os.Remove(filepath.Join(r.root, filepath.FromSlash(dir)))
	if err == nil || errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ENOTEMPTY) || errors.Is(err, syscall.EEXIST) {
		return nil
	}
	var pe *os.PathError
	if errors.As(err, &pe) && errors.Is(pe.Err, syscall.ENOTDIR) {
		return nil
	}
	return fmt.Errorf("removing empty directory %s: %w", dir, err)
}

// fsRoot returns the root directory of a filesystem driver. The driver
// keeps it unexported, behind its base and regulator wrappers; it is read
// by reflection (as batch.go reads S3's client), following embedded
// fields only, and a driver of another shape is simply not the filesystem.
func fsRoot(d storagedriver.StorageDriver) (string, bool) {
	if d == nil || d.Name() != "filesystem" {
		return "", false
	}
	var find func(v reflect.Value, depth int) (string, bool)
	find = func(v reflect.Value, depth int) (string, bool) {
		for v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
			if v.IsNil() {
				return "", false
			}
			v = v.Elem()
		}
		if v.Kind() != reflect.Struct || depth > 8 {
			return "", false
		}
		if f := v.FieldByName("rootDirectory"); f.IsValid() && f.Kind() == reflect.String && f.String() != "" {
			return f.String(), true
		}
		for i := 0; i < v.NumField(); i++ {
			if sf := v.Type().Field(i); sf.Anonymous || sf.Name == "StorageDriver" {
				if root, ok := find(v.Field(i), depth+1); ok {
					return root, true
				}
			}
		}
		return "", false
	}
	return find(reflect.ValueOf(d), 0)
}

// removeTree deletes every file under dir that keep (nil: none) does not
// keep, then, on the filesystem, every
// directory under dir (and dir) left empty, deepest first. Kept files (a
// push into the tree) and the directories holding them stay. It returns whether the whole tree is gone.
func removeTree(ctx context.Context, d storagedriver.StorageDriver, rm remover, dr *dirRemover, dir string, keep func(storagedriver.FileInfo) bool) (bool, error) {
	var files, dirs []string
	kept := false
	err := d.Walk(ctx, dir, func(fi storagedriver.FileInfo) error {
		if fi.IsDir() {
			dirs = append(dirs, fi.Path())
			return nil
		}
		if keep != nil && keep(fi) {
			kept = true
			return nil
		}
		files = append(files, fi.Path())
		return ctx.Err()
	})
	if err != nil {
		if isNotFound(err) {
			return true, nil
		}
		return false, fmt.Errorf("listing %s: %w", dir, err)
	}
	if err := rm.remove(ctx, files); err != nil {
		return false, err
	}
	dirs = append(dirs, dir)
	sort.Slice(dirs, func(i, j int) bool { return strings.Count(dirs[i], "/") > strings.Count(dirs[j], "/") })
	for _, sub := range dirs {
		if err := dr.removeEmpty(sub); err != nil {
			return false, err
		}
	}
	return !kept, nil
}
