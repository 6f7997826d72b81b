//go:build linux

// Reading the filesystem driver's tree without waste (see fs_linux.go): a
// directory is opened once and listed with getdents, whose entry types say
// what is a directory without a stat; the one file of a link or blob
// directory is stat'ed relative to its parent (fstatat(parent,
// "<hex>/link")) instead of opening every <hex> directory; small files are
// read with open, read, close.

package gc

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"sync"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// fsReader reads a filesystem driver's root directly.
type fsReader struct{ root string }

var fsReaders sync.Map // storagedriver.StorageDriver -> *fsReader (nil: not the filesystem)

// fsReaderFor returns the direct reader of a filesystem driver, nil for
// any other driver.
func fsReaderFor(d storagedriver.StorageDriver) *fsReader {
	if d == nil {
		return nil
	}
	if v, ok := fsReaders.Load(d); ok {
		return v.(*fsReader)
	}
	var r *fsReader
	if root, ok := fsRoot(d); ok {
		r = &fsReader{root: root}
	}
	fsReaders.Store(d, r)
	return r
}

func (f *fsReader) abs(p string) string { return filepath.Join(f.root, filepath.FromSlash(p)) }

type dirent struct {
	name string
	typ  uint8 // unix.DT_*
}

// openDir opens name relative to dirfd (unix.AT_FDCWD for an absolute
// name) for listing.
func openDir(dirfd int, name string) (int, error) {
	for {
		fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

// direntBuffers are getdents64 buffers, reused: a run lists thousands of
// directories.
var direntBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// listDir lists an open directory with getdents64, without "." and "..",
// calling fn with each name (valid only during the call) and type. Entry
// types the filesystem does not give (DT_UNKNOWN) are asked with an fstatat.
func listDir(fd int, fn func(name []byte, typ uint8) error) error {
	bp := direntBuffers.Get().(*[]byte)
	defer direntBuffers.Put(bp)
	buf := *bp
	for {
		n, err := unix.Getdents(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n <= 0 {
			return nil
		}
		for off := 0; off < n; {
			// struct linux_dirent64 { u64 ino; s64 off; u16 reclen; u8 type; char name[]; }
			reclen := int(binary.NativeEndian.Uint16(buf[off+16:]))
			typ := buf[off+18]
			name := buf[off+19 : off+reclen]
			if i := bytes.IndexByte(name, 0); i >= 0 {
				name = name[:i]
			}
			off += reclen
			if string(name) == "." || string(name) == ".." {
				continue
			}
			if typ == unix.DT_UNKNOWN {
				var st unix.Stat_t
				if err := unix.Fstatat(fd, string(name), &st, unix.AT_SYMLINK_NOFOLLOW); err == nil {
					switch st.Mode & unix.S_IFMT {
					case unix.S_IFDIR:
						typ = unix.DT_DIR
					case unix.S_IFREG:
						typ = unix.DT_REG
					}
				}
			}
			if err := fn(name, typ); err != nil {
				return err
			}
		}
	}
}

// readDir lists an open directory (listDir) into entries.
func readDir(fd int) ([]dirent, error) {
	var out []dirent
	err := listDir(fd, func(name []byte, typ uint8) error {
		out = append(out, dirent{string(name), typ})
		return nil
	})
	return out, err
}

// isDirEntry: a directory, or a symbolic link that may lead to one (the
// driver follows links).
func (e dirent) isDirEntry() bool { return isDirType(e.typ) }

func isDirType(typ uint8) bool { return typ == unix.DT_DIR || typ == unix.DT_LNK }

// statFile stats name relative to dirfd; ok is false when it is absent or
// not a regular file.
func statFile(dirfd int, name string) (st unix.Stat_t, ok bool, err error) {
	err = unix.Fstatat(dirfd, name, &st, 0)
	ok, err = regular(&st, err)
	return st, ok, err
}

// statFileZ is statFile of a NUL-terminated name (fstatatz).
func statFileZ(dirfd int, name []byte) (st unix.Stat_t, ok bool, err error) {
	err = fstatatz(dirfd, name, &st, 0)
	ok, err = regular(&st, err)
	return st, ok, err
}

// regular reads a stat's outcome: ok when it found a regular file; an
// absent name is not an error.
func regular(st *unix.Stat_t, err error) (bool, error) {
	switch {
	case err == nil:
		return st.Mode&unix.S_IFMT == unix.S_IFREG, nil
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ENOTDIR):
		return false, nil
	}
	return false, err
}

func mtime(st *unix.Stat_t) time.Time { return time.Unix(st.Mtim.Sec, st.Mtim.Nsec) }

func absent(err error) bool { return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) }

// scanLinks lists dir (relative to dirfd) of <hex>/<file> entries and calls
// fn with each digest (interned by in) and its file's modification time and
// size.
func scanLinks(in *interner, dirfd int, dir, file string, fn func(dg digest.Digest, mtime time.Time, size int64)) error {
	return scanLinkSums(dirfd, dir, file, func(name []byte, st *unix.Stat_t) {
		fn(in.digest(name), mtime(st), st.Size)
	})
}

// scanLinkSums is scanLinks without a string per entry: fn gets the
// digest's spelling ("sha256:<hex>", valid only during the call) and the
// file's stat.
func scanLinkSums(dirfd int, dir, file string, fn func(name []byte, st *unix.Stat_t)) error {
	fd, err := openDir(dirfd, dir)
	if absent(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("opening %s: %w", dir, err)
	}
	defer unix.Close(fd)
	// name is "sha256:<hex>/<file>\x00": the digest and the name to stat
	// share one buffer.
	name := make([]byte, 0, 73+len(file))
	name = append(name, "sha256:"...)
	err = listDir(fd, func(hex []byte, typ uint8) error {
		if !isDirType(typ) || !isSHA256Hex(hex) {
			return nil
		}
		name = append(append(append(append(name[:7], hex...), '/'), file...), 0)
		st, ok, err := statFileZ(fd, name[7:])
		if err != nil {
			return fmt.Errorf("reading %s/%s/%s: %w", dir, hex, file, err)
		}
		if ok {
			fn(name[:7+64], &st)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("listing %s: %w", dir, err)
	}
	return nil
}

// scanRepository is scan.go's scanRepository on the filesystem: the same
// repoScan, from the directories the layout names.
func (f *fsReader) scanRepository(ctx context.Context, in *interner, repo string, tagsOnly bool) (*repoScan, error) {
	s := &repoScan{revisions: map[digest.Digest]time.Time{}, current: map[string]time.Time{},
		history: map[string]map[digest.Digest]time.Time{}, layers: map[digest.Digest]time.Time{}}
	rfd, err := openDir(unix.AT_FDCWD, f.abs(pathFor(repositorySpec{repo})))
	if absent(err) {
		return s, nil
	}
	if err != nil {
		return nil, err
	}
	defer unix.Close(rfd)
	if err := f.scanTags(ctx, in, rfd, s); err != nil || tagsOnly {
		return s, err
	}
	err = scanLinks(in, rfd, "_manifests/revisions/sha256", "link", func(dg digest.Digest, t time.Time, _ int64) { s.revisions[dg] = t })
	if err != nil {
		return nil, err
	}
	err = scanLinks(in, rfd, "_layers/sha256", "link", func(dg digest.Digest, t time.Time, _ int64) { s.layers[dg] = t })
	if err != nil {
		return nil, err
	}
	ufd, err := openDir(rfd, "_uploads")
	switch {
	case absent(err):
	case err != nil:
		return nil, fmt.Errorf("opening _uploads: %w", err)
	default:
		ents, err := readDir(ufd)
		unix.Close(ufd)
		if err != nil {
			return nil, fmt.Errorf("listing _uploads: %w", err)
		}
		for _, e := range ents {
			if e.isDirEntry() {
				s.uploads = append(s.uploads, e.name)
			}
		}
		sort.Strings(s.uploads)
	}
	return s, ctx.Err()
}

func (f *fsReader) scanTags(ctx context.Context, in *interner, rfd int, s *repoScan) error {
	tfd, err := openDir(rfd, "_manifests/tags")
	if absent(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("opening tags: %w", err)
	}
	defer unix.Close(tfd)
	ents, err := readDir(tfd)
	if err != nil {
		return fmt.Errorf("listing tags: %w", err)
	}
	for _, e := range ents {
		if !e.isDirEntry() {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		tag := e.name
		h := map[digest.Digest]time.Time{}
		s.history[tag] = h
		st, ok, err := statFile(tfd, tag+"/current/link")
		if err != nil {
			return fmt.Errorf("reading tag %s: %w", tag, err)
		}
		if ok {
			s.current[tag] = mtime(&st)
		}
		err = scanLinks(in, tfd, tag+"/index/sha256", "link", func(dg digest.Digest, t time.Time, _ int64) { h[dg] = t })
		if err != nil {
			return err
		}
	}
	return nil
}

// listBlobs is scan.go's listBlobs on the filesystem: every prefix
// directory listed once, each blob's data stat'ed relative to it.
func (f *fsReader) listBlobs(ctx context.Context, _ *interner, opts Options) (blobList, error) {
	root := f.abs(pathFor(blobsSpec{digest.SHA256}))
	fd, err := openDir(unix.AT_FDCWD, root)
	if absent(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing blobs: %w", err)
	}
	ents, err := readDir(fd)
	unix.Close(fd)
	if err != nil {
		return nil, fmt.Errorf("listing blobs: %w", err)
	}
	var prefixes []string
	for _, e := range ents {
		if e.isDirEntry() {
			prefixes = append(prefixes, e.name)
		}
	}
	sort.Strings(prefixes)
	bar := opts.Progress.Count(-1, "reading blobs")
	defer bar.Done()
	found := make(blobList, len(prefixes))
	err = forEach(ctx, opts.Jobs, len(prefixes), func(i int) error {
		err := scanLinkSums(unix.AT_FDCWD, root+"/"+prefixes[i], "data", func(name []byte, st *unix.Stat_t) {
			s, _ := sumOfHex(name[7:])
			found[i] = append(found[i], blobInfo{s: s, size: st.Size, mod: st.Mtim.Nano()})
			bar.Add(1)
		})
		found[i] = sortBlobs(found[i])
		return err
	})
	if err != nil {
		return nil, err
	}
	return found, nil
}

// readBuffers are readFile's buffers, reused: a run reads thousands of
// small files.
var readBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// readFile reads a small file (a link, a manifest): open, read until a
// short read, close; it returns a copy of exactly the file's size. A
// missing file is the driver's PathNotFoundError.
func (f *fsReader) readFile(p string) ([]byte, error) {
	fd, err := unix.Open(f.abs(p), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if absent(err) {
		return nil, storagedriver.PathNotFoundError{Path: p, DriverName: "filesystem"}
	}
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", p, err)
	}
	defer unix.Close(fd)
	bp := readBuffers.Get().(*[]byte)
	defer func() { readBuffers.Put(bp) }()
	buf := (*bp)[:0]
	for {
		n, err := unix.Read(fd, buf[len(buf):cap(buf)])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", p, err)
		}
		buf = buf[:len(buf)+n]
		if n == 0 || len(buf) < cap(buf) {
			// A short read of a regular file is its end.
			return bytes.Clone(buf), nil
		}
		buf = append(buf, 0)[:len(buf)]
		*bp = buf
	}
}
