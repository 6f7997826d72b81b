// Azure Blob Storage: distribution's azure driver reached for its own
// container client, so that gc lists a tree in one flat listing and
// deletes and moves blobs by exact name (azureremove.go, azuremove.go).

package gc

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	azuredriver "github.com/distribution/distribution/v3/registry/storage/driver/azure"
)

// AzurePlace is an azure driver's own container client (its credentials,
// service URL and container) and root directory: what gc's listings, batch
// deletes and copies and backup's store-side copies send their requests
// through, for the requests the driver's interface has no call for.
type AzurePlace struct {
	Client *container.Client
	Root   string
}

// AzurePlaceOf reaches into an azure driver (distribution v3.1.2: Driver →
// base.Base.StorageDriver → *driver{client, rootDirectory}, or gc's
// azureDriver around one) for its container client and root directory;
// nil for any other driver, or when the driver is not of the shape this
// build knows (then the driver's own calls are used). The driver keeps both in unexported
// fields of its unexported driver type behind base.Base: they are read by
// reflection, checking each field's type before taking it.
func AzurePlaceOf(d storagedriver.StorageDriver) *AzurePlace {
	if w, ok := d.(*azureDriver); ok {
		return w.p
	}
	ad, ok := d.(*azuredriver.Driver)
	if !ok || ad.StorageDriver == nil {
		return nil
	}
	v := reflect.ValueOf(ad.StorageDriver)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return nil
	}
	e := v.Elem()
	c := e.FieldByName("client")
	r := e.FieldByName("rootDirectory")
	if !c.IsValid() || c.Type() != reflect.TypeFor[*container.Client]() || c.IsNil() ||
		!r.IsValid() || r.Kind() != reflect.String {
		return nil
	}
	return &AzurePlace{Client: (*container.Client)(c.UnsafePointer()), Root: r.String()}
}

// Name is a driver path's blob name, as the driver makes it.
func (p *AzurePlace) Name(path string) string {
	return strings.TrimLeft(strings.TrimRight(p.Root, "/")+path, "/")
}

// Account is the scheme, host and account name of the service URL: two
// places with the same Account are in one storage account. "" when the
// URL cannot be read.
func (p *AzurePlace) Account() string {
	parts, err := azblob.ParseURL(p.Client.URL())
	if err != nil {
		return ""
	}
	return parts.Scheme + "://" + parts.Host + "/" + parts.IPEndpointStyleInfo.AccountName
}

// prefix is the blob name prefix of every driver path ("" without a root
// directory, "root/" with one).
func (p *AzurePlace) prefix() string { return p.Name("/") }

// path is a blob name's driver path.
func (p *AzurePlace) path(name string) string {
	return "/" + strings.TrimPrefix(name, p.prefix())
}

// dirPrefix is the blob name prefix of everything under the driver
// directory dir.
func (p *AzurePlace) dirPrefix(dir string) string {
	if dir == "/" || dir == "" {
		return p.prefix()
	}
	return p.Name(strings.TrimSuffix(dir, "/")) + "/"
}

// errStopListing, returned by eachBlob's fn, ends the listing without
// error.
var errStopListing = errors.New("stop listing")

// eachBlob calls fn for every blob whose name starts with prefix, in name
// order, with its size and modification time: one flat listing, 5,000
// names a request. An error of fn ends the listing and is returned
// (errStopListing: nil).
func (p *AzurePlace) eachBlob(ctx context.Context, prefix string, fn func(name string, size int64, mod time.Time) error) error {
	pager := p.Client.NewListBlobsFlatPager(&container.ListBlobsFlatOptions{Prefix: &prefix})
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return err
		}
		for _, b := range page.Segment.BlobItems {
			if b.Name == nil || b.Properties == nil || b.Properties.LastModified == nil {
				return errors.New("listing " + prefix + ": a blob without name or modification time")
			}
			var size int64
			if b.Properties.ContentLength != nil {
				size = *b.Properties.ContentLength
			}
			if err := fn(*b.Name, size, *b.Properties.LastModified); err != nil {
				if err == errStopListing {
					return nil
				}
				return err
			}
		}
	}
	return nil
}

// azureIs404 is the driver's test for a missing blob (is404).
func azureIs404(err error) bool {
	return bloberror.HasCode(err, bloberror.BlobNotFound, bloberror.ContainerNotFound,
		bloberror.ResourceNotFound, bloberror.CannotVerifyCopySource)
}

// azureDriver is the azure driver with a Walk and a List of their own.
// The driver's Walk is distribution's WalkFallback: a List of every
// directory and a Stat (GetProperties) of every entry, and its List is a
// flat listing of everything under the directory, cut to its direct
// children, so that walking a tree lists its files once per level above
// them. Here a Walk is one flat listing of the tree (5,000 names a
// request, with sizes and modification times), as the s3-aws driver's
// is, and a List one listing with a delimiter.
type azureDriver struct {
	storagedriver.StorageDriver
	p *AzurePlace
}

// wrapAzure returns d with gc's Walk and List if it is an azure driver
// whose client gc can reach, d itself otherwise.
func wrapAzure(d storagedriver.StorageDriver) storagedriver.StorageDriver {
	if _, ok := d.(*azureDriver); ok {
		return d
	}
	if p := AzurePlaceOf(d); p != nil {
		return &azureDriver{StorageDriver: d, p: p}
	}
	return d
}

// List returns the direct children of dir (files and directories).
func (d *azureDriver) List(ctx context.Context, dir string) ([]string, error) {
	prefix := d.p.dirPrefix(dir)
	var out []string
	pager := d.p.Client.NewListBlobsHierarchyPager("/", &container.ListBlobsHierarchyOptions{Prefix: &prefix})
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		for _, bp := range page.Segment.BlobPrefixes {
			if bp.Name != nil {
				out = append(out, d.p.path(strings.TrimSuffix(*bp.Name, "/")))
			}
		}
		for _, b := range page.Segment.BlobItems {
			if b.Name != nil {
				out = append(out, d.p.path(*b.Name))
			}
		}
	}
	if len(out) == 0 && dir != "/" {
		return nil, storagedriver.PathNotFoundError{Path: dir, DriverName: d.Name()}
	}
	return out, nil
}

// Walk calls f on every file and directory under from, listing the tree
// flat. Names come in the store's order (by bytes), so each directory's
// contents are contiguous: its entry is made when its first file comes.
// ErrSkipDir on a directory skips what is under it (on a file it is
// nothing, as in the driver's walk); ErrFilledBuffer stops the walk
// without error. A walk with options (a start-after hint, which gc does
// not use) is the driver's.
func (d *azureDriver) Walk(ctx context.Context, from string, f storagedriver.WalkFn, options ...func(*storagedriver.WalkOptions)) error {
	if len(options) > 0 {
		return d.StorageDriver.Walk(ctx, from, f, options...)
	}
	from = strings.TrimSuffix(from, "/")
	prefix := d.p.dirPrefix(from)
	var (
		open  []string // the directories holding the previous file, outermost first
		skip  string   // a directory skipped (its path + "/")
		found bool
	)
	err := d.p.eachBlob(ctx, prefix, func(name string, size int64, mod time.Time) error {
		found = true
		p := d.p.path(name)
		if skip != "" && strings.HasPrefix(p, skip) {
			return nil
		}
		// Close the directories p is not in; open those it is in.
		for len(open) > 0 && !strings.HasPrefix(p, open[len(open)-1]+"/") {
			open = open[:len(open)-1]
		}
		base := from
		if len(open) > 0 {
			base = open[len(open)-1]
		}
		for j := len(base) + 1; j < len(p); j++ {
			if p[j] != '/' {
				continue
			}
			dir := p[:j]
			open = append(open, dir)
			switch err := f(storagedriver.FileInfoInternal{FileInfoFields: storagedriver.FileInfoFields{Path: dir, IsDir: true}}); {
			case err == storagedriver.ErrSkipDir:
				skip = dir + "/"
				return nil
			case err == storagedriver.ErrFilledBuffer:
				return errStopListing
			case err != nil:
				return err
			}
		}
		switch err := f(storagedriver.FileInfoInternal{FileInfoFields: storagedriver.FileInfoFields{
			Path: p, Size: size, ModTime: mod}}); {
		case err == storagedriver.ErrSkipDir: // on a file: nothing to skip
		case err == storagedriver.ErrFilledBuffer:
			return errStopListing
		case err != nil:
			return err
		}
		return nil
	})
	if err != nil {
		return err
	}
	if !found && from != "" && from != "/" {
		return storagedriver.PathNotFoundError{Path: from, DriverName: d.Name()}
	}
	return nil
}
