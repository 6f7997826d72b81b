package usage

import (
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	bolt "go.etcd.io/bbolt"

	"github.com/regkeeper/regkeeper/internal/client"
	"github.com/regkeeper/regkeeper/internal/testbed/stock"
)

// An index the ledger never saw pushed (the registry sends no push events
// here): serve with an IndexReader reads it from the registry the first
// time it is pulled, so a later pull of a child by digest, by another
// client, is credited to the index's tag; serve's own read of the index,
// with regkeeper's user agent, is an ignored request, not a pull.
func TestServeLearnsIndexFromRegistry(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	reg := stock.Start(t, stock.Options{Endpoints: []stock.Endpoint{{Name: "usage", URL: "http://" + ln.Addr().String() + "/events", IgnoreActions: []string{"push"}}}})
	l, err := OpenWrite(filepath.Join(t.TempDir(), "usage.db"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, l, ServeOptions{Listener: ln, Every: time.Hour, Indexes: RegistryIndexes(reg.Host, client.Options{Insecure: true})})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		l.Close()
	}()
	ref := func(s string) name.Reference {
		r, err := name.ParseReference(reg.Host+"/"+s, name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	idx, _ := random.Index(64, 1, 2)
	if err := remote.WriteIndex(ref("multi:v1"), idx); err != nil {
		t.Fatal(err)
	}
	im, _ := idx.IndexManifest()
	dIdx, _ := idx.Digest()
	if _, err := remote.Get(ref("multi:v1")); err != nil {
		t.Fatal(err)
	}
	if _, err := remote.Get(ref("multi@"+im.Manifests[1].Digest.String()), remote.WithUserAgent("containerd/2.0")); err != nil {
		t.Fatal(err)
	}
	// wait until the child's pull and serve's own read of the index are in
	var childPulls, ignored int64
	for i := 0; ; i++ {
		err := l.db.View(func(tx *bolt.Tx) error {
			c, err := get[digestRecord](tx.Bucket(bDigests), key("multi", im.Manifests[1].Digest.String()))
			if err != nil {
				return err
			}
			d, err := get[digestRecord](tx.Bucket(bDigests), key("multi", dIdx.String()))
			childPulls, ignored = c.Pulls, d.Ignored
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if childPulls == 1 && ignored == 1 {
			break
		}
		if i > 600 {
			t.Fatalf("events not delivered after 30s: child pulls %d, ignored reads of the index %d", childPulls, ignored)
		}
		time.Sleep(50 * time.Millisecond)
	}
	n, _, err := l.Pulls("multi", "v1", time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("multi:v1 pulls: %d, want 2 (the index by tag, and its child by another client credited to it)", n)
	}
}
