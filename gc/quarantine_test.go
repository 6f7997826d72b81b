package gc

import (
	"bytes"
	"context"
	"fmt"
	"path"
	"strings"
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
	s, _ := sumOf(dg)
	if size, ok := q.held.get(s); !q.leftover || !q.holds(dg) || !ok || size != int64(len(content)) {
		t.Fatalf("quarantine: leftover %v, held %v (size %d); want the blob held with its size", q.leftover, ok, size)
	}
	if got, err := d.GetContent(ctx, pathFor(quarantineDataSpec{dg})); err != nil || !bytes.Equal(got, content) {
		t.Fatalf("blob at the current layout: %q, %v", got, err)
	}
	if _, err := d.Stat(ctx, path.Dir(legacy)); !isNotFound(err) {
		t.Errorf("earlier layout's directory still there: %v", err)
	}
}

// TestHeldBlobs: the quarantine's held blobs are one sorted slice, a blob
// set aside twice (a leftover quarantined again) held once with its last
// size, looked up after any order of adds.
func TestHeldBlobs(t *testing.T) {
	dg := func(i int) digest.Digest { return digest.FromString(fmt.Sprint(i)) }
	var h heldBlobs
	for i := 9; i >= 0; i-- {
		h.add(dg(i), int64(i))
	}
	h.add(dg(3), 33)
	h.add("sha512:"+digest.Digest(strings.Repeat("a", 128)), 1) // not gc's: not held
	if n := h.len(); n != 10 {
		t.Fatalf("held %d blobs, want 10", n)
	}
	h.add(dg(10), 10) // after a lookup: sorted again on the next
	for i := 0; i <= 10; i++ {
		s, _ := sumOf(dg(i))
		want := int64(i)
		if i == 3 {
			want = 33
		}
		if size, ok := h.get(s); !ok || size != want {
			t.Errorf("blob %d: held %v, size %d; want held, %d", i, ok, size, want)
		}
	}
	s, _ := sumOf(dg(11))
	if _, ok := h.get(s); ok {
		t.Error("a blob never added is held")
	}
	for i := 1; i < len(h.s); i++ {
		if compareSums(h.s[i-1].s, h.s[i].s) >= 0 {
			t.Fatalf("held blobs not sorted and unique at %d", i)
		}
	}
}
