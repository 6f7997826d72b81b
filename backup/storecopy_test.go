package backup

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// syncBuffer is a bytes.Buffer a logger writes from many goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// storeSideCopyReplaced is the body of the store-side copy tests where a
// registry blob is written again (same bytes, a new ETag) by rewrite
// between its check and its copy: the copy's source condition fails and
// that blob is pulled through the registry instead, said in an info line
// (naming why, when why is not ""); the run completes with no error, every
// other blob is still copied in the store (one fewer than a run without
// the rewrite), the bytes written are the same, the pulled blob's bytes in
// the backup hash to its digest, and verify finds the backup whole.
// target opens a fresh backup under prefix, in the registry's store.
func storeSideCopyReplaced(t *testing.T, host string, source storagedriver.StorageDriver, target func(prefix string) Layout,
	rewrite func(ctx context.Context, d v1.Hash) error, why string) {
	t.Helper()
	ctx := context.Background()
	run := func(prefix string, logs io.Writer) (*Result, *blobGets, Layout) {
		t.Helper()
		l := target(prefix)
		bg := &blobGets{inner: http.DefaultTransport, got: map[string]int{}}
		opts := testOptions()
		opts.Client.Transport = bg
		opts.Source = source
		opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
		res, err := RunLayout(ctx, host, l, opts)
		if err != nil || len(res.Errors) > 0 || !res.Complete {
			t.Fatalf("backup to %s: %v %+v", prefix, err, res.Errors)
		}
		return res, bg, l
	}
	copied, copiedGets, _ := run("copied", io.Discard)
	if len(copiedGets.got) != 0 {
		t.Fatalf("store-side copy pulled %v", copiedGets.got)
	}

	// The first blob checked is written again; the others are left alone.
	var (
		mu       sync.Mutex
		replaced v1.Hash
	)
	storeCopyChecked = func(ctx context.Context, d v1.Hash) {
		mu.Lock()
		defer mu.Unlock()
		if replaced.Hex != "" {
			return
		}
		replaced = d
		if err := rewrite(ctx, d); err != nil {
			t.Errorf("writing blob %s again in the registry's storage: %v", d, err)
		}
	}
	t.Cleanup(func() { storeCopyChecked = nil })
	logs := &syncBuffer{}
	res, gets, l := run("replaced", logs)
	storeCopyChecked = nil

	if replaced.Hex == "" {
		t.Fatal("no blob was checked for a store-side copy")
	}
	if diff := cmp.Diff(map[string]int{replaced.String(): 1}, gets.got); diff != "" {
		t.Errorf("blobs pulled (-want +got):\n%s", diff)
	}
	type counts struct {
		Written, Copied int
		Bytes           int64
	}
	if diff := cmp.Diff(counts{copied.BlobsWritten, copied.BlobsCopiedInStore - 1, copied.BytesWritten}, counts{res.BlobsWritten, res.BlobsCopiedInStore, res.BytesWritten}); diff != "" {
		t.Errorf("blobs written and copied in the store, bytes written (-want +got):\n%s", diff)
	}
	if out := logs.String(); !strings.Contains(out, "pulled instead of copied in the store") || !strings.Contains(out, replaced.String()) || !strings.Contains(out, why) {
		t.Errorf("no info line says blob %s was pulled (for %q); logs:\n%s", replaced, why, out)
	}
	// The pulled blob's bytes, as the store has them.
	if _, err := l.ReadBlob(replaced); err != nil {
		t.Errorf("blob %s in the backup: %v", replaced, err)
	}
	v, err := VerifyLayout(ctx, l, VerifyOptions{})
	if err != nil || !v.OK() || v.Blobs != res.BlobsWritten {
		t.Fatalf("verify: %v, %d blobs, %+v", err, v.Blobs, v.Problems)
	}
}
