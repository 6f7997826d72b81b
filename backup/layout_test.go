package backup

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func TestLayoutPaths(t *testing.T) {
	l := Layout{Root: "/b"}
	d := v1.Hash{Algorithm: "sha256", Hex: "ab12"}
	for _, tc := range []struct{ got, want string }{
		{l.LayoutFile(), "/b/oci-layout"},
		{l.IndexFile(), "/b/index.json"},
		{l.BlobsDir(), "/b/blobs"},
		{l.AlgorithmDir("sha256"), "/b/blobs/sha256"},
		{l.Blob(d), "/b/blobs/sha256/ab12"},
		{l.PrivateDir(), "/b/.regkeeper"},
		{l.LockFile(), "/b/.regkeeper/lock"},
		{l.TempDir(), "/b/.regkeeper/tmp"},
		{l.SnapshotsDir(), "/b/.regkeeper/snapshots"},
		{l.SnapshotFile("0a1b2c3d"), "/b/.regkeeper/snapshots/0a1b2c3d.json"},
		{filepath.Dir(l.tempBlob(d)), "/b/.regkeeper/tmp"},
		{filepath.Dir(l.tempIndex()), "/b/.regkeeper"},
	} {
		if tc.got != filepath.FromSlash(tc.want) {
			t.Errorf("got %s, want %s", tc.got, tc.want)
		}
	}
}

func TestWriteBlob(t *testing.T) {
	l := Layout{Root: t.TempDir()}
	if err := l.Init(); err != nil {
		t.Fatal(err)
	}
	content := []byte("hello, backup")
	sum := sha256.Sum256(content)
	d := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
	n := int64(len(content))
	for _, tc := range []struct {
		name string
		body []byte
		size int64
	}{
		{"other content", []byte("hello, b4ckup"), n},
		{"short", content[:5], n},
		{"long", append(append([]byte{}, content...), '!'), n},
	} {
		var de *DigestError
		if err := l.WriteBlob(d, tc.size, bytes.NewReader(tc.body), nil); !errors.As(err, &de) {
			t.Errorf("%s: %v, want a DigestError", tc.name, err)
		}
		if l.HasBlob(d, -1) {
			t.Fatalf("%s: a bad blob was put in place", tc.name)
		}
	}
	var progress int64
	if err := l.WriteBlob(d, n, bytes.NewReader(content), func(k int64) { progress += k }); err != nil {
		t.Fatal(err)
	}
	if !l.HasBlob(d, n) || progress != n {
		t.Errorf("blob present %v, progress %d", l.HasBlob(d, n), progress)
	}
	if got, err := l.ReadBlob(d); err != nil || !bytes.Equal(got, content) {
		t.Errorf("ReadBlob: %q %v", got, err)
	}
	if left, _ := os.ReadDir(l.TempDir()); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
	// A second run of Init on the layout keeps it; a lock is exclusive.
	if err := l.Init(); err != nil {
		t.Fatal(err)
	}
	unlock, err := l.lock()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.lock(); lockSupported && !errors.Is(err, ErrLocked) {
		t.Errorf("second lock: %v", err)
	} else if lockSupported && !strings.Contains(err.Error(), fmt.Sprintf("held by regkeeper pid %d on ", os.Getpid())) {
		t.Errorf("second lock does not name its holder: %v", err)
	}
	unlock()
}
