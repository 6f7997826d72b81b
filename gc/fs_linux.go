//go:build linux

// The filesystem driver at the disk's floor: deleting and reading registry
// storage with the system calls the layout needs and no more.
//
// gc knows the shape of what it touches: a blob is a directory <hex>
// holding one file, data; a link is a directory <hex> holding one file,
// link. The driver does not: its Delete stats the path, tries unlink, then
// rmdir, then lists and removes recursively (about 17 system calls per
// directory, plus Go's os.Open registering every directory with the
// poller), and its Walk stats every entry it lists. Here a deletion is
// unlinkat(parent, "<hex>/data") and unlinkat(parent, "<hex>",
// AT_REMOVEDIR) relative to a parent directory opened once, and a listing
// is getdents on a directory opened once, with fstatat(parent,
// "<hex>/link") for the one file of each entry.

package gc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"golang.org/x/sys/unix"
)

// fsRemover is the remover for the filesystem driver (remove.go's
// contract): files are grouped by the directory that holds their holder
// directory (blobs/sha256/ab for blobs/sha256/ab/<hex>/data), and each such
// parent is given to one worker, which opens it once and unlinks relative
// to it. Two workers never contend for one directory's lock.
type fsRemover struct {
	root    string
	workers int
	// fallback deletes through the driver what does not have the expected
	// shape.
	fallback storagedriver.StorageDriver
	// hook is the test hook Options.beforeDelete.
	hook func(string) error
}

// newFSRemover returns the filesystem remover for d, or nil when d is not
// the filesystem driver.
func newFSRemover(d storagedriver.StorageDriver, opts Options) remover {
	root, ok := fsRoot(d)
	if !ok {
		return nil
	}
	return &fsRemover{root: root, workers: max(opts.Jobs, fsWorkersMin), fallback: d, hook: opts.beforeDelete}
}

// fsGroup is the deletions under one parent directory.
type fsGroup struct {
	parent string   // driver path
	rel    []string // "<holder>/<file>", relative to parent
}

// groupByParent groups driver paths of files by the parent of the directory
// holding each, in sorted order.
func groupByParent(paths []string) []fsGroup {
	idx := map[string]int{}
	var groups []fsGroup
	for _, p := range paths {
		holder := path.Dir(p)
		parent := path.Dir(holder)
		rel := p[len(parent)+1:]
		if parent == "/" {
			rel = p[1:]
		}
		i, ok := idx[parent]
		if !ok {
			i = len(groups)
			idx[parent] = i
			groups = append(groups, fsGroup{parent: parent})
		}
		groups[i].rel = append(groups[i].rel, rel)
	}
	sort.Slice(groups, func(i, j int) bool { return groups[i].parent < groups[j].parent })
	return groups
}

// splitLarge splits a parent holding more than its share of the work
// (the quarantine is one directory) into chunks, so that it is not left to
// one worker; workers then share that directory.
func splitLarge(groups []fsGroup, total, workers int) []fsGroup {
	chunk := max(256, (total+workers-1)/workers)
	var out []fsGroup
	for _, g := range groups {
		for len(g.rel) > chunk {
			out = append(out, fsGroup{parent: g.parent, rel: g.rel[:chunk]})
			g.rel = g.rel[chunk:]
		}
		out = append(out, g)
	}
	return out
}

func (r *fsRemover) abs(p string) string { return filepath.Join(r.root, filepath.FromSlash(p)) }

func (r *fsRemover) remove(ctx context.Context, paths []string) error {
	groups := splitLarge(groupByParent(paths), len(paths), r.workers)
	return forEach(ctx, r.workers, len(groups), func(i int) error { return r.removeGroup(ctx, groups[i]) })
}

// removeGroup deletes one parent's files and the holder directories they
// leave empty, then the parent itself when it is a blob prefix directory
// (blobs/sha256/ab) or a repository's _layers/sha256 and became empty.
func (r *fsRemover) removeGroup(ctx context.Context, g fsGroup) error {
	fd, err := unix.Open(r.abs(g.parent), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return nil // everything under it is gone already
	}
	if err != nil {
		return r.fallbackAll(ctx, g)
	}
	defer unix.Close(fd)
	removedAll := true
	for i, rel := range g.rel {
		if err := ctx.Err(); err != nil {
			return err
		}
		p := g.parent + "/" + rel
		if r.hook != nil {
			if err := r.hook(p); err != nil {
				return err
			}
		}
		err := unix.Unlinkat(fd, rel, 0)
		switch {
		case err == nil, errors.Is(err, unix.ENOENT):
		case errors.Is(err, unix.EISDIR):
			// Not a file: gc never removes a tree it did not read.
			return fmt.Errorf("deleting %s: a directory where gc expects a file", p)
		default:
			// Not the shape gc expects (a permission, another file system
			// mounted there): let the driver try and say what it is.
			if err := r.fallback.Delete(ctx, p); err != nil && !isNotFound(err) {
				return fmt.Errorf("deleting %s: %w", p, err)
			}
		}
		holder, _, _ := strings.Cut(rel, "/")
		if i+1 < len(g.rel) && strings.HasPrefix(g.rel[i+1], holder+"/") {
			continue // the next file is in the same directory (the quarantine's)
		}
		switch err := unix.Unlinkat(fd, holder, unix.AT_REMOVEDIR); {
		case err == nil, errors.Is(err, unix.ENOENT):
		case errors.Is(err, unix.ENOTEMPTY), errors.Is(err, unix.EEXIST):
			// A push wrote into it, or it holds more than gc deletes: it stays.
			removedAll = false
		default:
			return fmt.Errorf("removing empty directory %s: %w", path.Join(g.parent, holder), err)
		}
	}
	if removedAll && removableParent(g.parent) && !strings.HasPrefix(g.parent, pathFor(quarantineSpec{})) {
		switch err := unix.Rmdir(r.abs(g.parent)); {
		case err == nil, errors.Is(err, unix.ENOENT), errors.Is(err, unix.ENOTEMPTY), errors.Is(err, unix.EEXIST):
		default:
			return fmt.Errorf("removing empty directory %s: %w", g.parent, err)
		}
	}
	return nil
}

// removableParent: blobs/<alg>/<xx> and repositories/<name>/_layers/<alg>
// may go when they become empty; the registry creates them again on its
// next write there. Other parents (a repository's revisions, a tag's
// index) are left as the registry left them.
func removableParent(p string) bool {
	if rest, ok := strings.CutPrefix(p, pathFor(blobsSpec{"sha256"})+"/"); ok {
		return len(rest) == 2 && !strings.Contains(rest, "/")
	}
	return strings.HasPrefix(p, pathFor(repositoriesSpec{})+"/") && strings.HasSuffix(p, "/_layers/sha256")
}

// fallbackAll deletes a group through the driver (a parent that cannot be
// opened is not the shape gc expects).
func (r *fsRemover) fallbackAll(ctx context.Context, g fsGroup) error {
	dirs := &dirRemover{root: r.root}
	for _, rel := range g.rel {
		p := g.parent + "/" + rel
		if r.hook != nil {
			if err := r.hook(p); err != nil {
				return err
			}
		}
		if err := r.fallback.Delete(ctx, p); err != nil && !isNotFound(err) {
			return fmt.Errorf("deleting %s: %w", p, err)
		}
		if err := dirs.removeEmpty(path.Dir(p)); err != nil {
			return err
		}
	}
	return nil
}

// fsQuarantine moves blobs' data into the quarantine with one renameat(2)
// each: blobs/sha256/ab/<hex>/data becomes regkeeper-quarantine/sha256/ab/<hex>,
// relative to the two prefix directories opened once, and the directory
// <hex> it leaves is removed when empty (unlinkat AT_REMOVEDIR), as
// quarantine.go's driver path does. Blobs are grouped by prefix and each
// prefix is given to one worker. The prefix directory ab of blobs/ stays,
// so that a concurrent upload's mkdir -p of blobs/sha256/ab/<hex2> never
// races with its removal.
type fsQuarantine struct{ root string }

func newFSQuarantine(d storagedriver.StorageDriver) *fsQuarantine {
	if root, ok := fsRoot(d); ok {
		return &fsQuarantine{root: root}
	}
	return nil
}

func (f *fsQuarantine) abs(p string) string { return filepath.Join(f.root, filepath.FromSlash(p)) }

// put moves blobs, calling hook (a test hook, may be nil) before each and
// held after each one moved. It returns the blobs it could not move for
// lack of the expected shape, for the driver to move and say why; a blob
// already gone is neither moved nor returned.
func (f *fsQuarantine) put(ctx context.Context, blobs []BlobDeletion, workers int, hook func(string) error, held func(BlobDeletion)) ([]BlobDeletion, error) {
	sorted := append([]BlobDeletion(nil), blobs...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Digest < sorted[j].Digest })
	var groups [][]BlobDeletion
	for start := 0; start < len(sorted); {
		end := start + 1
		prefix := path.Dir(pathFor(blobSpec{sorted[start].Digest}))
		for end < len(sorted) && path.Dir(pathFor(blobSpec{sorted[end].Digest})) == prefix {
			end++
		}
		groups = append(groups, sorted[start:end])
		start = end
	}
	var mu sync.Mutex
	var rest []BlobDeletion
	err := forEach(ctx, workers, len(groups), func(i int) error {
		r, err := f.putGroup(ctx, groups[i], hook, held)
		mu.Lock()
		rest = append(rest, r...)
		mu.Unlock()
		return err
	})
	return rest, err
}

// putGroup moves blobs sharing one prefix.
func (f *fsQuarantine) putGroup(ctx context.Context, blobs []BlobDeletion, hook func(string) error, held func(BlobDeletion)) (rest []BlobDeletion, err error) {
	first := blobs[0].Digest
	src, err := unix.Open(f.abs(path.Dir(pathFor(blobSpec{first}))), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return nil, nil // every blob under it is gone already
	}
	if err != nil {
		return blobs, nil
	}
	defer unix.Close(src)
	to := f.abs(pathFor(quarantinePrefixSpec{first}))
	if err := os.MkdirAll(to, 0o777); err != nil {
		return nil, fmt.Errorf("creating %s: %w", pathFor(quarantinePrefixSpec{first}), err)
	}
	dst, err := unix.Open(to, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return blobs, nil
	}
	defer unix.Close(dst)
	for _, b := range blobs {
		if err := ctx.Err(); err != nil {
			return rest, err
		}
		if hook != nil {
			if err := hook(pathFor(blobDataSpec{b.Digest})); err != nil {
				return rest, err
			}
		}
		hex := b.Digest.Encoded()
		switch err := unix.Renameat(src, hex+"/data", dst, hex); {
		case err == nil:
		case errors.Is(err, unix.ENOENT):
			continue // gone already
		default:
			// Not the shape gc expects (data is a directory, a permission):
			// the driver tries and says what it is.
			rest = append(rest, b)
			continue
		}
		switch err := unix.Unlinkat(src, hex, unix.AT_REMOVEDIR); {
		case err == nil, errors.Is(err, unix.ENOENT), errors.Is(err, unix.ENOTEMPTY), errors.Is(err, unix.EEXIST):
		default:
			return rest, fmt.Errorf("removing empty directory %s: %w", pathFor(blobSpec{b.Digest}), err)
		}
		held(b)
	}
	return rest, nil
}
