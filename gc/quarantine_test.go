package gc

import (
	"bytes"
	"context"
	"path"
	"testing"

	"github.com/opencontainers/go-digest"
)

// A quarantine an earlier build left, as sha256/<hex>/data, is read and moved
// to the current layout (sha256/<xx>/<hex>) when a run opens it.
func TestQuarantineEarlierLayout(t *testing.T) {
	ctx := context.Background()
	d, err := OpenRoot(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	content := []byte("a blob an earlier build quarantined")
	dg := digest.FromBytes(content)
	legacy := path.Join(pathFor(quarantineBlobsSpec{digest.SHA256}), dg.Encoded(), "data")
	if err := d.PutContent(ctx, legacy, content); err != nil {
		t.Fatal(err)
	}
	if err := d.PutContent(ctx, pathFor(quarantineSinceSpec{}), []byte("then")); err != nil {
		t.Fatal(err)
	}
	var opts Options
	opts.fill()
	q, err := openQuarantine(ctx, d, opts, nil, true)
	if err != nil {
		t.Fatal(err)
	}
	if !q.leftover || !q.holds(dg) || q.held[dg] != int64(len(content)) {
		t.Fatalf("quarantine: leftover %v, held %v; want the blob held with its size", q.leftover, q.held)
	}
	if got, err := d.GetContent(ctx, pathFor(quarantineDataSpec{dg})); err != nil || !bytes.Equal(got, content) {
		t.Fatalf("blob at the current layout: %q, %v", got, err)
	}
	if _, err := d.Stat(ctx, path.Dir(legacy)); !isNotFound(err) {
		t.Errorf("earlier layout's directory still there: %v", err)
	}
}
