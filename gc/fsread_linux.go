//go:build linux

// Reading the filesystem driver's tree without waste (see fs_linux.go): a
// directory is opened once and listed with getdents, whose entry types say
// what is a directory without a stat; the one file of a link or blob
// directory is stat'ed relative to its parent (fstatat(parent,
// "<hex>/link")) instead of opening every <hex> directory; small files are
// read with open, read, close.

package gc

import (
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

// readDir lists an open directory with getdents64, without "." and "..".
// Entry types the filesystem does not give (DT_UNKNOWN) are asked with an
// fstatat.
func readDir(fd int) ([]dirent, error) {
	buf := make([]byte, 32<<10)
	var out []dirent
	for {
		n, err := unix.Getdents(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n <= 0 {
			break
		}
		for off := 0; off < n; {
			// struct linux_dirent64 { u64 ino; s64 off; u16 reclen; u8 type; char name[]; }
			reclen := int(binary.NativeEndian.Uint16(buf[off+16:]))
			typ := buf[off+18]
			name := buf[off+19 : off+reclen]
			for i, c := range name {
				if c == 0 {
					name = name[:i]
					break
				}
			}
			off += reclen
			if s := string(name); s != "." && s != ".." {
				out = append(out, dirent{s, typ})
			}
		}
	}
	for i, e := range out {
		if e.typ != unix.DT_UNKNOWN {
			continue
		}
		var st unix.Stat_t
		if err := unix.Fstatat(fd, e.name, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil {
			switch st.Mode & unix.S_IFMT {
			case unix.S_IFDIR:
				out[i].typ = unix.DT_DIR
			case unix.S_IFREG:
				out[i].typ = unix.DT_REG
			}
		}
	}
	return out, nil
}

// isDirEntry: a directory, or a symbolic link that may lead to one (the
// driver follows links).
func (e dirent) isDirEntry() bool { return e.typ == unix.DT_DIR || e.typ == unix.DT_LNK }

// statFile stats name relative to dirfd; ok is false when it is absent or
// not a regular file.
func statFile(dirfd int, name string) (st unix.Stat_t, ok bool, err error) {
	err = unix.Fstatat(dirfd, name, &st, 0)
	switch {
	case err == nil:
		return st, st.Mode&unix.S_IFMT == unix.S_IFREG, nil
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ENOTDIR):
		return st, false, nil
	}
	return st, false, err
}

func mtime(st *unix.Stat_t) time.Time { return time.Unix(st.Mtim.Sec, st.Mtim.Nsec) }

// isSHA256Hex: 64 lowercase hex digits, as digest.Validate wants them.
func isSHA256Hex(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func absent(err error) bool { return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) }

// scanLinks lists dir (relative to dirfd) of <hex>/<file> entries and calls
// fn with each digest and its file's stat.
func scanLinks(dirfd int, dir, file string, fn func(digest.Digest, *unix.Stat_t)) error {
	fd, err := openDir(dirfd, dir)
	if absent(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("opening %s: %w", dir, err)
	}
	defer unix.Close(fd)
	ents, err := readDir(fd)
	if err != nil {
		return fmt.Errorf("listing %s: %w", dir, err)
	}
	for _, e := range ents {
		if !e.isDirEntry() || !isSHA256Hex(e.name) {
			continue
		}
		st, ok, err := statFile(fd, e.name+"/"+file)
		if err != nil {
			return fmt.Errorf("reading %s/%s/%s: %w", dir, e.name, file, err)
		}
		if ok {
			fn(digest.NewDigestFromEncoded(digest.SHA256, e.name), &st)
		}
	}
	return nil
}

// scanRepository is scan.go's scanRepository on the filesystem: the same
// repoScan, from the directories the layout names.
func (f *fsReader) scanRepository(ctx context.Context, repo string, tagsOnly bool) (*repoScan, error) {
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
	if err := f.scanTags(ctx, rfd, s); err != nil || tagsOnly {
		return s, err
	}
	err = scanLinks(rfd, "_manifests/revisions/sha256", "link", func(dg digest.Digest, st *unix.Stat_t) { s.revisions[dg] = mtime(st) })
	if err != nil {
		return nil, err
	}
	err = scanLinks(rfd, "_layers/sha256", "link", func(dg digest.Digest, st *unix.Stat_t) { s.layers[dg] = mtime(st) })
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

func (f *fsReader) scanTags(ctx context.Context, rfd int, s *repoScan) error {
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
		err = scanLinks(tfd, tag+"/index/sha256", "link", func(dg digest.Digest, st *unix.Stat_t) { h[dg] = mtime(st) })
		if err != nil {
			return err
		}
	}
	return nil
}

// listBlobs is scan.go's listBlobs on the filesystem: every prefix
// directory listed once, each blob's data stat'ed relative to it.
func (f *fsReader) listBlobs(ctx context.Context, opts Options) ([]blobInfo, error) {
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
	found := make([][]blobInfo, len(prefixes))
	err = forEach(ctx, opts.Jobs, len(prefixes), func(i int) error {
		return scanLinks(unix.AT_FDCWD, root+"/"+prefixes[i], "data", func(dg digest.Digest, st *unix.Stat_t) {
			found[i] = append(found[i], blobInfo{digest: dg, size: st.Size, modTime: mtime(st)})
			bar.Add(1)
		})
	})
	if err != nil {
		return nil, err
	}
	var out []blobInfo
	for _, fb := range found {
		out = append(out, fb...)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].digest < out[j].digest })
	return out, nil
}

// readFile reads a small file (a link, a manifest): open, read until a
// short read, close. A missing file is the driver's PathNotFoundError.
func (f *fsReader) readFile(p string) ([]byte, error) {
	fd, err := unix.Open(f.abs(p), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if absent(err) {
		return nil, storagedriver.PathNotFoundError{Path: p, DriverName: "filesystem"}
	}
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", p, err)
	}
	defer unix.Close(fd)
	buf := make([]byte, 0, 4096)
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
			return buf, nil
		}
		buf = append(buf, 0)[:len(buf)]
	}
}
