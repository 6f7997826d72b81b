// The azure driver's own client, for the requests its interface has no call
// for (a copy inside the store).
//
// A small duplicate of what package gc does for Azure's batch calls: the
// driver keeps its client in unexported fields, read here by reflection.

package backup

import (
	"reflect"
	"strings"
	"unsafe"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	azuredriver "github.com/distribution/distribution/v3/registry/storage/driver/azure"
)

// azurePlace is an azure driver's configured container client (its
// credentials, service URL and container) and root directory.
type azurePlace struct {
	Container *container.Client
	Root      string
	// Account is the scheme, host and account of the service URL: two
	// places with the same Account are in one storage account.
	Account string
}

// azurePlaceOf reaches into distribution's azure driver (v3.1.2: Driver →
// base.Base.StorageDriver → *driver{client, rootDirectory}) for
// its container client and root; nil for any other driver or when the
// fields are not where they were (then blobs are pulled).
func azurePlaceOf(d storagedriver.StorageDriver) *azurePlace {
	ad, ok := d.(*azuredriver.Driver)
	if !ok || ad.StorageDriver == nil {
		return nil
	}
	v := reflect.ValueOf(ad.StorageDriver)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return nil
	}
	e := v.Elem()
	client, ok1 := hidden[*container.Client](e, "client")
	root, ok2 := hidden[string](e, "rootDirectory")
	if !ok1 || !ok2 || client == nil {
		return nil
	}
	p := &azurePlace{Container: client, Root: root}
	parts, err := azblob.ParseURL(client.URL())
	if err != nil {
		return nil
	}
	p.Account = parts.Scheme + "://" + parts.Host + "/" + parts.IPEndpointStyleInfo.AccountName
	return p
}

// hidden reads the unexported field name of the addressable struct v.
func hidden[T any](v reflect.Value, name string) (T, bool) {
	var zero T
	f := v.FieldByName(name)
	if !f.IsValid() || !f.CanAddr() {
		return zero, false
	}
	t, ok := reflect.NewAt(f.Type(), unsafe.Pointer(f.UnsafeAddr())).Elem().Interface().(T)
	return t, ok
}

// name maps a driver path to its blob name, as the driver does.
func (p *azurePlace) name(path string) string {
	return strings.TrimLeft(strings.TrimRight(p.Root, "/")+path, "/")
}
