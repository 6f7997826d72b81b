package backup

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Layout is a backup directory: an OCI image layout (image-spec v1.1
// image-layout.md) that crane, skopeo and regctl can read, plus a private
// scratch directory. This file is the one place that names paths in it:
//
//	DIR/
//	  oci-layout                 {"imageLayoutVersion": "1.0.0"}; written when DIR is created
//	  index.json                 every backed-up image (see the Annotation* keys);
//	                             written last and atomically (temp file, fsync, rename)
//	  blobs/
//	    sha256/<hex>             every manifest, config and layer, stored once,
//	                             whatever number of images and repositories share it
//	  .regkeeper/                not part of the OCI layout; readers ignore it
//	    lock                     held (flock) by a running backup
//	    cycle.lock               held (flock) by a running regkeeper cycle
//	    tmp/<hex>.<random>       a blob being written: hashed as it streams in,
//	                             checked, fsynced, then renamed to blobs/<alg>/<hex>
//	    index.json.<random>      the next index.json (or snapshot), renamed over it when complete
//	    snapshots/<id>.json      the record of one backup run (snapshot.go): what it
//	                             backed up and whether it finished; written at the
//	                             start of the run ("running") and last, after index.json
//
// A blob is only ever visible under blobs/ complete and verified, and
// index.json only names manifests whose blobs are all under blobs/, so a run
// killed at any moment leaves a valid layout; temp files it leaves behind are
// removed by the next backup.
//
// A layout on object storage (OpenTarget, DriverLayout) has the same files
// at the root of a storage driver; there, a blob is written straight to its
// key where the store makes it visible only when complete (S3, GCS), the
// lock is an object (driverLock) and nothing needs a sync.
type Layout struct {
	Root string

	driver storagedriver.StorageDriver // nil: Root is a local directory
	name   string                      // the target as named, for messages
	config string                      // the --target-config file, "" for an s3:// URL
	ctx    context.Context             // of driver calls; nil: context.Background
}

// The fixed files of the layout.
const (
	layoutFileName = "oci-layout"
	indexFileName  = "index.json"
	blobsDirName   = "blobs"
	privateDirName = ".regkeeper"
	lockFileName   = "lock"
	tempDirName    = "tmp"
	snapshotsDir   = "snapshots"
)

// layoutFileContent is the oci-layout file every layout starts with.
const layoutFileContent = `{"imageLayoutVersion":"1.0.0"}`

// LayoutFile is DIR/oci-layout.
func (l Layout) LayoutFile() string { return filepath.Join(l.Root, layoutFileName) }

// IndexFile is DIR/index.json.
func (l Layout) IndexFile() string { return filepath.Join(l.Root, indexFileName) }

// BlobsDir is DIR/blobs.
func (l Layout) BlobsDir() string { return filepath.Join(l.Root, blobsDirName) }

// AlgorithmDir is DIR/blobs/<algorithm>.
func (l Layout) AlgorithmDir(algorithm string) string {
	return filepath.Join(l.Root, blobsDirName, algorithm)
}

// Blob is DIR/blobs/<algorithm>/<hex>.
func (l Layout) Blob(d v1.Hash) string {
	return filepath.Join(l.Root, blobsDirName, d.Algorithm, d.Hex)
}

// PrivateDir is DIR/.regkeeper.
func (l Layout) PrivateDir() string { return filepath.Join(l.Root, privateDirName) }

// LockFile is DIR/.regkeeper/lock.
func (l Layout) LockFile() string { return filepath.Join(l.Root, privateDirName, lockFileName) }

// SnapshotsDir is DIR/.regkeeper/snapshots.
func (l Layout) SnapshotsDir() string { return filepath.Join(l.Root, privateDirName, snapshotsDir) }

// SnapshotFile is DIR/.regkeeper/snapshots/<id>.json.
func (l Layout) SnapshotFile(id string) string {
	return filepath.Join(l.SnapshotsDir(), id+".json")
}

// TempDir is DIR/.regkeeper/tmp.
func (l Layout) TempDir() string { return filepath.Join(l.Root, privateDirName, tempDirName) }

// tempBlob is a fresh DIR/.regkeeper/tmp/<hex>.<random>.
func (l Layout) tempBlob(d v1.Hash) string {
	return filepath.Join(l.TempDir(), d.Hex+"."+randomSuffix())
}

// tempIndex is a fresh DIR/.regkeeper/index.json.<random>.
func (l Layout) tempIndex() string {
	return filepath.Join(l.PrivateDir(), indexFileName+"."+randomSuffix())
}

func randomSuffix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Check reports whether DIR is a layout this package can read: it must hold
// an oci-layout file. A missing index.json is an empty backup (a first run
// killed before writing it).
func (l Layout) Check() error {
	if l.driver != nil {
		return l.checkLayoutFile()
	}
	fi, err := os.Stat(l.Root)
	if err != nil {
		return fmt.Errorf("opening backup %s: %w", l.Root, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%w: %s is not a directory", ErrNotLayout, l.Root)
	}
	return l.checkLayoutFile()
}

func (l Layout) checkLayoutFile() error {
	b, err := l.readFile(l.LayoutFile())
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %s has no oci-layout file", ErrNotLayout, l)
	}
	if err != nil && l.driver != nil {
		return fmt.Errorf("reading %s in %s: %w", l.LayoutFile(), l, err)
	}
	if err != nil {
		return fmt.Errorf("reading %s: %w", l.LayoutFile(), err)
	}
	var lf struct {
		Version string `json:"imageLayoutVersion"`
	}
	if err := json.Unmarshal(b, &lf); err != nil || lf.Version == "" {
		return fmt.Errorf("%w: %s is not an oci-layout file", ErrNotLayout, l.LayoutFile())
	}
	return nil
}

// Init makes DIR a layout when it does not exist or is empty, and checks it
// is one otherwise. It never removes or overwrites anything but its own
// temporary files.
func (l Layout) Init() error {
	if l.driver != nil {
		return l.driverInit()
	}
	entries, err := os.ReadDir(l.Root)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		var pe *fs.PathError
		if errors.As(err, &pe) && strings.Contains(pe.Err.Error(), "not a directory") {
			return fmt.Errorf("%w: %s is not a directory", ErrNotLayout, l.Root)
		}
		return fmt.Errorf("opening backup directory: %w", err)
	case len(entries) > 0:
		if err := l.Check(); err != nil {
			if errors.Is(err, ErrNotLayout) {
				return fmt.Errorf("%w: %s is not empty and has no oci-layout file; refusing to write into it", ErrNotLayout, l.Root)
			}
			return err
		}
		return os.MkdirAll(l.TempDir(), 0o755)
	}
	for _, d := range []string{l.AlgorithmDir("sha256"), l.TempDir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("creating backup directory: %w", err)
		}
	}
	if err := writeFileAtomic(l, l.LayoutFile(), []byte(layoutFileContent)); err != nil {
		return fmt.Errorf("writing %s: %w", l.LayoutFile(), err)
	}
	return nil
}

// HasBlob reports whether blob d is present with the given size (size < 0:
// any size). Presence is trusted; Verify re-hashes.
func (l Layout) HasBlob(d v1.Hash, size int64) bool {
	if l.driver != nil {
		n, _, regular, err := l.stat(l.Blob(d))
		return err == nil && regular && (size < 0 || n == size)
	}
	fi, err := os.Stat(l.Blob(d))
	return err == nil && fi.Mode().IsRegular() && (size < 0 || fi.Size() == size)
}

// verifiedTime is the modification time a blob is given once its content
// has been hashed and found to match its name (when backup writes it, or
// finds it unmarked). Any later write to the file sets its mtime to the
// time of that write, so backup tells a blob changed in place (a flipped
// byte keeps the size) from a verified one with a stat it makes anyway,
// and re-hashes only those. Corruption that does not touch the mtime (bit
// rot below the file system) is found by verify, not by backup.
var verifiedTime = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// markVerified stamps a blob whose content was just checked.
func markVerified(path string) { _ = os.Chtimes(path, time.Time{}, verifiedTime) }

// HasGoodBlob reports whether blob d is present with the given size and
// its content is trusted: marked verified, or re-hashed now and found
// right (then marked). A blob that fails is left for the caller to write
// again.
//
// On object storage a blob present with its size is trusted: objects are
// written whole and checked before they become visible, and are not
// changed in place; verify re-hashes them.
func (l Layout) HasGoodBlob(d v1.Hash, size int64) bool {
	if l.driver != nil {
		return l.HasBlob(d, size)
	}
	path := l.Blob(d)
	fi, err := os.Stat(path)
	if err != nil || !fi.Mode().IsRegular() || (size >= 0 && fi.Size() != size) {
		return false
	}
	if fi.ModTime().Equal(verifiedTime) {
		return true
	}
	got, err := l.hashBlob(path, d.Algorithm, func(int64) {})
	if err != nil || got != d.Hex {
		return false
	}
	markVerified(path)
	return true
}

// ReadBlob returns the whole of a (small) blob, checked against its digest.
func (l Layout) ReadBlob(d v1.Hash) ([]byte, error) {
	b, err := l.readFile(l.Blob(d))
	if err != nil {
		return nil, err
	}
	h, err := newHash(d.Algorithm)
	if err != nil {
		return nil, err
	}
	h.Write(b)
	if got := hex.EncodeToString(h.Sum(nil)); got != d.Hex {
		return nil, &DigestError{Want: d, Got: v1.Hash{Algorithm: d.Algorithm, Hex: got}, WantSize: -1, GotSize: int64(len(b))}
	}
	return b, nil
}

// WriteBlob streams r into the layout as blob d of the given size: into a
// temporary file, hashed as it is written, checked against digest and size,
// fsynced and renamed into place. progress (may be nil) is told of every
// byte written. A mismatch returns a *DigestError and leaves nothing behind.
func (l Layout) WriteBlob(d v1.Hash, size int64, r io.Reader, progress func(int64)) (err error) {
	if l.driver != nil {
		return l.driverWriteBlob(d, size, r, progress)
	}
	h, err := newHash(d.Algorithm)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(l.AlgorithmDir(d.Algorithm), 0o755); err != nil {
		return &WriteError{Path: l.AlgorithmDir(d.Algorithm), Err: err}
	}
	tmp := l.tempBlob(d)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return &WriteError{Path: tmp, Err: err}
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	var w io.Writer = io.MultiWriter(fileWriter{f, tmp}, h)
	if progress != nil {
		w = io.MultiWriter(w, progressWriter(progress))
	}
	// Read one byte more than expected, to catch an over-long body.
	n, err := io.Copy(w, io.LimitReader(r, size+1))
	if err != nil {
		return fmt.Errorf("writing blob %s: %w", d, err)
	}
	got := v1.Hash{Algorithm: d.Algorithm, Hex: hex.EncodeToString(h.Sum(nil))}
	if n != size || got != d {
		return &DigestError{Want: d, Got: got, WantSize: size, GotSize: n}
	}
	if err := f.Sync(); err != nil {
		return &WriteError{Path: tmp, Err: err}
	}
	if err := f.Close(); err != nil {
		return &WriteError{Path: tmp, Err: err}
	}
	if err := os.Rename(tmp, l.Blob(d)); err != nil {
		return &WriteError{Path: l.Blob(d), Err: err}
	}
	markVerified(l.Blob(d))
	return nil
}

// fileWriter tells a failed write into the backup (a full disk) from a
// failed read of what is copied into it.
type fileWriter struct {
	f    *os.File
	path string
}

func (w fileWriter) Write(b []byte) (int, error) {
	n, err := w.f.Write(b)
	if err != nil {
		return n, &WriteError{Path: w.path, Err: err}
	}
	return n, nil
}

type progressWriter func(int64)

func (p progressWriter) Write(b []byte) (int, error) {
	p(int64(len(b)))
	return len(b), nil
}

// syncBlobDirs makes the renames of blobs durable before an index.json that
// names them is written.
func (l Layout) syncBlobDirs() error {
	if l.driver != nil {
		return nil
	}
	entries, err := os.ReadDir(l.BlobsDir())
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.IsDir() {
			if err := syncDir(filepath.Join(l.BlobsDir(), e.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}

// removeTemp deletes temporary files a killed run left behind. Only called
// with the lock held.
func (l Layout) removeTemp() error {
	entries, err := l.readDir(l.TempDir())
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	for _, e := range entries {
		if err := l.remove(filepath.Join(l.TempDir(), e)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	priv, err := l.readDir(l.PrivateDir())
	if err != nil {
		if l.driver != nil && errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	for _, e := range priv {
		if strings.HasPrefix(e, indexFileName+".") {
			if err := l.remove(filepath.Join(l.PrivateDir(), e)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
	}
	return nil
}

// writeFileAtomic writes path through a temporary file in DIR/.regkeeper,
// fsynced and renamed over path, then fsyncs path's directory.
func writeFileAtomic(l Layout, path string, data []byte) error {
	if l.driver != nil {
		return l.driverPut(path, data)
	}
	if err := os.MkdirAll(l.PrivateDir(), 0o755); err != nil {
		return err
	}
	tmp := l.tempIndex()
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return err
	}
	return nil
}

func newHash(algorithm string) (hash.Hash, error) {
	switch algorithm {
	case "sha256":
		return sha256.New(), nil
	case "sha512":
		return sha512.New(), nil
	}
	return nil, fmt.Errorf("unsupported digest algorithm %q", algorithm)
}
