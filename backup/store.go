// A backup on object storage: the layout's files through a distribution
// storage driver.

package backup

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/factory"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/regkeeper/regkeeper/gc"
	"github.com/regkeeper/regkeeper/internal/storeerr"
)

// OpenTarget opens the backup target a command names: with configFile, the
// storage: section of that file (a registry config; the layout is at the
// driver's rootdirectory); an s3://BUCKET[/PREFIX][?region=R&endpoint=URL]
// target, S3 through the registry's s3-aws driver (credentials from the
// environment, ~/.aws or the instance role: never in the URL); anything
// else without a scheme, a local directory. Any other scheme (gs://,
// azure://, http://, a mistyped s3:/) is ErrBadTarget, never a directory
// named after it; so is an s3:// URL that does not parse.
func OpenTarget(ctx context.Context, target, configFile string) (Layout, error) {
	switch {
	case configFile != "":
		d, err := gc.Open(ctx, configFile)
		if err != nil {
			return Layout{}, err
		}
		l := DriverLayout(d, configFile+" ("+d.Name()+")")
		l.config = configFile
		return l, nil
	case strings.HasPrefix(target, "s3://"):
		params, err := s3Params(target)
		if err != nil {
			return Layout{}, err
		}
		d, err := factory.Create(ctx, "s3", params)
		if err != nil {
			return Layout{}, fmt.Errorf("opening %s: %w", target, err)
		}
		return DriverLayout(d, target), nil
	case hasScheme(target):
		return Layout{}, fmt.Errorf("%w: %s: a local directory, s3://BUCKET/PREFIX[?region=R&endpoint=URL], or --target-config FILE for azure, gcs and every other storage", ErrBadTarget, redact(target))
	}
	return Layout{Root: target}, nil
}

// ErrBadTarget: a backup target that is neither a local directory nor an
// s3:// URL this package understands (a usage error).
var ErrBadTarget = errors.New("not a backup target")

// hasScheme tells whether target starts like a URL (scheme:/ or
// scheme://), which a local directory is taken not to.
func hasScheme(target string) bool {
	i := strings.Index(target, ":/")
	if i <= 0 {
		return false
	}
	for _, c := range target[:i] {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// redact is target without the password of a URL's user part.
func redact(target string) string {
	if u, err := url.Parse(target); err == nil && u.User != nil {
		return u.Redacted()
	}
	return target
}

// DriverLayout is the layout at the root of a storage driver, named name in
// messages.
func DriverLayout(d storagedriver.StorageDriver, name string) Layout {
	return Layout{Root: "/", driver: d, name: name}
}

// s3Params turns s3://bucket/prefix?region=&endpoint=&secure= into the
// s3-aws driver's parameters.
func s3Params(target string) (map[string]any, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, fmt.Errorf("%w: parsing %s: %w", ErrBadTarget, redact(target), err)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("%w: %s has no bucket (s3://BUCKET/PREFIX)", ErrBadTarget, target)
	}
	if u.User != nil {
		return nil, fmt.Errorf("%w: %s: credentials do not go on the command line (use AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, ~/.aws/credentials or --target-config)", ErrBadTarget, u.Redacted())
	}
	q := u.Query()
	p := map[string]any{"bucket": u.Host}
	if prefix := strings.Trim(u.Path, "/"); prefix != "" {
		p["rootdirectory"] = "/" + prefix
	}
	region := q.Get("region")
	for _, env := range []string{"AWS_REGION", "AWS_DEFAULT_REGION"} {
		if region == "" {
			region = os.Getenv(env)
		}
	}
	if region == "" {
		region = "us-east-1"
	}
	p["region"] = region
	secure := true
	if ep := q.Get("endpoint"); ep != "" {
		if !strings.Contains(ep, "://") {
			ep = "https://" + ep
		}
		eu, err := url.Parse(ep)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: endpoint: %w", ErrBadTarget, target, err)
		}
		secure = eu.Scheme != "http"
		p["regionendpoint"] = ep
		p["forcepathstyle"] = true // MinIO, Ceph and most S3-compatible stores
	}
	if s := q.Get("secure"); s != "" {
		b, err := strconv.ParseBool(s)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: secure=%q: %w", ErrBadTarget, target, s, err)
		}
		secure = b
	}
	p["secure"] = secure
	for k := range q {
		switch k {
		case "region", "endpoint", "secure":
		default:
			return nil, fmt.Errorf("%w: %s: unknown parameter %q (region, endpoint, secure; anything else goes in --target-config)", ErrBadTarget, u.Redacted(), k)
		}
	}
	return p, nil
}

// String names the layout: its directory, or the target it was opened as.
func (l Layout) String() string {
	if l.name != "" {
		return l.name
	}
	return l.Root
}

// Driver is the storage driver holding the layout, nil for a local
// directory.
func (l Layout) Driver() storagedriver.StorageDriver { return l.driver }

// directBlobs: the driver's writer makes an object visible only at Commit
// (S3 multipart upload, GCS resumable upload), so a blob is written in
// place, hashed as it goes, and cancelled unless it matches its digest. On
// the others (filesystem, azure append blobs) it goes to .regkeeper/tmp
// first and is moved into place.
func (l Layout) directBlobs() bool {
	switch l.driver.Name() {
	case "s3aws", "gcs":
		return true
	}
	return false
}

// atomicPut: PutContent replaces an object whole (a single PUT).
func (l Layout) atomicPut() bool {
	switch l.driver.Name() {
	case "s3aws", "gcs", "azure":
		return true
	}
	return false
}

// bg is the context of the driver calls that must be made even when a run
// is cancelled: cleaning up after a failed write, and the lock.
var bg = context.Background()

// withContext returns the layout making its storage calls with ctx, so a
// cancelled run stops at its next call to the store rather than at its
// next read from the registry. What a run records after it ends (index.json,
// its snapshot) goes through a layout without one.
func (l Layout) withContext(ctx context.Context) Layout {
	l.ctx = ctx
	return l
}

// context is the context of the layout's driver calls.
func (l Layout) context() context.Context {
	if l.ctx != nil {
		return l.ctx
	}
	return bg
}

// driverErr makes a driver's path-not-found an fs.ErrNotExist, and says
// what a store's refusal means (describe).
func (l Layout) driverErr(err error) error {
	var nf storagedriver.PathNotFoundError
	if errors.As(err, &nf) {
		return fmt.Errorf("%w: %w", fs.ErrNotExist, err)
	}
	return l.describe(err)
}

// describe returns err in one line with what to check when it is the
// store refusing for want of credentials, of a bucket or of a container
// (storeerr.Describe): the SDKs' own words say neither what is missing
// nor where to give it. Other errors are returned as they are. Every
// driver call of a backup target goes through it (driverErr), and the
// first call of every command reads the oci-layout file, so backup,
// verify, restore, snapshots, forget and cycle all say it.
func (l Layout) describe(err error) error {
	return storeerr.Describe(err, l.config)
}

// DescribeStorageError returns err described as for a backup target opened
// from an s3:// URL (storeerr.Describe): what to set when the store found
// no credentials, refused them, or has no such bucket or container; other
// errors as they are.
func DescribeStorageError(err error) error {
	return storeerr.Describe(err, "")
}

// ErrNoCredentials: the backup target's store found no credentials
// (storeerr.ErrNoCredentials, which gc's errors wrap too).
var ErrNoCredentials = storeerr.ErrNoCredentials

func (l Layout) readFile(p string) ([]byte, error) {
	if l.driver == nil {
		return os.ReadFile(p)
	}
	b, err := l.driver.GetContent(l.context(), p)
	return b, l.driverErr(err)
}

func (l Layout) open(p string) (io.ReadCloser, error) {
	if l.driver == nil {
		return os.Open(p)
	}
	r, err := l.driver.Reader(l.context(), p, 0)
	return r, l.driverErr(err)
}

func (l Layout) mkdirAll(dir string) error {
	if l.driver == nil {
		return os.MkdirAll(dir, 0o755)
	}
	return nil // object stores have no directories
}

func (l Layout) remove(p string) error {
	if l.driver == nil {
		return os.Remove(p)
	}
	return l.driverErr(l.driver.Delete(l.context(), p))
}

func (l Layout) syncDir(dir string) error {
	if l.driver == nil {
		return syncDir(dir)
	}
	return nil
}

// statBlob is the size and modification time of a file, and whether it is
// a regular file.
func (l Layout) stat(p string) (size int64, mtime time.Time, regular bool, err error) {
	if l.driver == nil {
		fi, err := os.Stat(p)
		if err != nil {
			return 0, time.Time{}, false, err
		}
		return fi.Size(), fi.ModTime(), fi.Mode().IsRegular(), nil
	}
	fi, err := l.driver.Stat(l.context(), p)
	if err != nil {
		return 0, time.Time{}, false, l.driverErr(err)
	}
	return fi.Size(), fi.ModTime(), !fi.IsDir(), nil
}

// readDir lists the names in dir (files and directories).
func (l Layout) readDir(dir string) ([]string, error) {
	if l.driver == nil {
		ents, err := os.ReadDir(dir)
		names := make([]string, len(ents))
		for i, e := range ents {
			names[i] = e.Name()
		}
		return names, err
	}
	ps, err := l.driver.List(l.context(), dir)
	if err != nil {
		return nil, l.driverErr(err)
	}
	names := make([]string, len(ps))
	for i, p := range ps {
		names[i] = path.Base(p)
	}
	return names, nil
}

// blobFile is a file under blobs/.
type blobFile struct {
	d    v1.Hash
	path string
	size int64
}

// listBlobs lists every regular file blobs/<algorithm>/<hex>. Object
// storage is walked with the driver's listing (sizes come with it).
func (l Layout) listBlobs() ([]blobFile, error) {
	var out []blobFile
	if l.driver != nil {
		err := l.driver.Walk(l.context(), l.BlobsDir(), func(fi storagedriver.FileInfo) error {
			if fi.IsDir() {
				return nil
			}
			dir, name := path.Split(fi.Path())
			alg := path.Base(dir)
			if path.Clean(path.Dir(path.Clean(dir))) != path.Clean(l.BlobsDir()) {
				return nil // deeper than blobs/<algorithm>/
			}
			out = append(out, blobFile{v1.Hash{Algorithm: alg, Hex: name}, fi.Path(), fi.Size()})
			return nil
		})
		if err != nil && !errors.Is(l.driverErr(err), fs.ErrNotExist) {
			return nil, err
		}
		return out, nil
	}
	algs, err := os.ReadDir(l.BlobsDir())
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	for _, a := range algs {
		if !a.IsDir() {
			continue
		}
		names, err := os.ReadDir(l.AlgorithmDir(a.Name()))
		if err != nil {
			return nil, err
		}
		for _, n := range names {
			info, err := n.Info()
			if err != nil || !info.Mode().IsRegular() {
				continue
			}
			d := v1.Hash{Algorithm: a.Name(), Hex: n.Name()}
			out = append(out, blobFile{d, l.Blob(d), info.Size()})
		}
	}
	return out, nil
}

// hashBlob hashes the file at p.
func (l Layout) hashBlob(p, algorithm string, progress func(int64)) (string, error) {
	h, err := newHash(algorithm)
	if err != nil {
		return "", err
	}
	f, err := l.open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if _, err := io.Copy(io.MultiWriter(h, progressWriter(progress)), f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// driverWriteBlob is WriteBlob on a storage driver.
func (l Layout) driverWriteBlob(d v1.Hash, size int64, r io.Reader, progress func(int64)) (err error) {
	h, err := newHash(d.Algorithm)
	if err != nil {
		return err
	}
	dest := l.Blob(d)
	p := dest
	if !l.directBlobs() {
		p = l.tempBlob(d)
	}
	fw, err := l.driver.Writer(l.context(), p, false)
	if err != nil {
		return &WriteError{Path: p, Err: err}
	}
	defer func() {
		if err != nil {
			_ = fw.Cancel(bg)
			fw.Close()
			if p != dest {
				_ = l.driver.Delete(bg, p)
			}
		}
	}()
	var w io.Writer = io.MultiWriter(driverWriter{fw, p}, h)
	if progress != nil {
		w = io.MultiWriter(w, progressWriter(progress))
	}
	n, err := io.Copy(w, io.LimitReader(r, size+1))
	if err != nil {
		return fmt.Errorf("writing blob %s: %w", d, err)
	}
	got := v1.Hash{Algorithm: d.Algorithm, Hex: hex.EncodeToString(h.Sum(nil))}
	if n != size || got != d {
		return &DigestError{Want: d, Got: got, WantSize: size, GotSize: n}
	}
	if err := fw.Commit(l.context()); err != nil {
		return &WriteError{Path: p, Err: err}
	}
	if err := fw.Close(); err != nil {
		return &WriteError{Path: p, Err: err}
	}
	if p != dest {
		if err := l.driver.Move(l.context(), p, dest); err != nil {
			return &WriteError{Path: dest, Err: err}
		}
	}
	return nil
}

type driverWriter struct {
	w    storagedriver.FileWriter
	path string
}

func (w driverWriter) Write(b []byte) (int, error) {
	n, err := w.w.Write(b)
	if err != nil {
		return n, &WriteError{Path: w.path, Err: err}
	}
	return n, nil
}

// driverPut writes a small file whole: one PUT where that replaces the
// object atomically, else through a temporary file moved over it.
func (l Layout) driverPut(p string, data []byte) error {
	if l.atomicPut() {
		return l.describe(l.driver.PutContent(l.context(), p, data))
	}
	tmp := l.tempIndex()
	if err := l.driver.PutContent(l.context(), tmp, data); err != nil {
		return err
	}
	if err := l.driver.Move(l.context(), tmp, p); err != nil {
		_ = l.driver.Delete(bg, tmp)
		return err
	}
	return nil
}

// driverLock takes .regkeeper/lock on object storage, which has no
// exclusive create: the lock is refused when the object exists, else
// written with who holds it and read back. A run killed outright leaves
// it; the refusal names it and its holder, to be deleted by hand once no
// run holds it.
func (l Layout) driverLock() (func(), error) {
	p := l.LockFile()
	if b, err := l.driver.GetContent(bg, p); err == nil {
		h := strings.TrimSpace(string(b))
		return nil, fmt.Errorf("%w: held by %s (%s in %s; delete it if that run is gone)", ErrLocked, h, p, l)
	} else if !errors.Is(l.driverErr(err), fs.ErrNotExist) {
		return nil, fmt.Errorf("reading the lock %s: %w", p, l.driverErr(err))
	}
	host, _ := os.Hostname()
	me := []byte(fmt.Sprintf("regkeeper pid %d on %s since %s\n", os.Getpid(), host, time.Now().UTC().Format(time.RFC3339Nano)))
	if err := l.driver.PutContent(bg, p, me); err != nil {
		return nil, &WriteError{Path: p, Err: l.describe(err)}
	}
	if back, err := l.driver.GetContent(bg, p); err != nil || string(back) != string(me) {
		return nil, fmt.Errorf("%w: lost the race for %s", ErrLocked, p)
	}
	return func() {
		if back, err := l.driver.GetContent(bg, p); err == nil && string(back) == string(me) {
			_ = l.driver.Delete(bg, p)
		}
	}, nil
}

// driverInit is Init on object storage: an empty root (no object under
// it) becomes a layout; a root with objects must hold an oci-layout file.
func (l Layout) driverInit() error {
	err := l.checkLayoutFile()
	if err == nil || !errors.Is(err, ErrNotLayout) {
		return err
	}
	names, lerr := l.readDir(l.Root)
	if lerr != nil && !errors.Is(lerr, fs.ErrNotExist) {
		return fmt.Errorf("opening backup %s: %w", l, lerr)
	}
	if len(names) > 0 {
		return fmt.Errorf("%w: %s is not empty and has no oci-layout file; refusing to write into it", ErrNotLayout, l)
	}
	if err := l.driverPut(l.LayoutFile(), []byte(layoutFileContent)); err != nil {
		return &WriteError{Path: l.LayoutFile(), Err: err}
	}
	return nil
}

// CheckWritable makes the layout (Init: an empty place becomes one, a
// place with other things in it is refused) and writes and deletes a probe
// in its .regkeeper/tmp, where a backup writes first: missing credentials,
// a missing bucket or a read-only directory fail here, before any work.
func (l Layout) CheckWritable(ctx context.Context) error {
	l = l.withContext(ctx)
	if err := l.Init(); err != nil {
		return err
	}
	if l.driver == nil {
		f, err := os.CreateTemp(l.TempDir(), ".regkeeper-check-*")
		if err != nil {
			return fmt.Errorf("%s is not writable: %w", l.TempDir(), err)
		}
		f.Close()
		return os.Remove(f.Name())
	}
	p := path.Join(l.TempDir(), "check-"+randomSuffix())
	if err := l.driver.PutContent(l.context(), p, []byte("regkeeper cycle --check\n")); err != nil {
		return fmt.Errorf("writing %s in %s: %w", p, l, l.describe(err))
	}
	if err := l.driver.Delete(l.context(), p); err != nil {
		return fmt.Errorf("deleting %s in %s: %w", p, l, l.describe(err))
	}
	return nil
}
