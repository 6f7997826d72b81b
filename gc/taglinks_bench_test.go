package gc

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkTagLinks compares reading 5,000 tags' links by listing the tags
// directory (TagLinks on the filesystem) and by gc's scan (which also reads
// every tag's index).
func BenchmarkTagLinks(b *testing.B) {
	root := b.TempDir()
	tags := filepath.Join(root, "docker/registry/v2/repositories/ci/app/_manifests/tags")
	hex := fmt.Sprintf("%064d", 1)
	for i := range 5000 {
		for _, p := range []string{filepath.Join(tags, fmt.Sprint("t", i), "current/link"), filepath.Join(tags, fmt.Sprint("t", i), "index/sha256", hex, "link")} {
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				b.Fatal(err)
			}
			if err := os.WriteFile(p, []byte("sha256:"+hex), 0o644); err != nil {
				b.Fatal(err)
			}
		}
	}
	drv, err := OpenRoot(context.Background(), root)
	if err != nil {
		b.Fatal(err)
	}
	for _, scan := range []bool{false, true} {
		b.Run(fmt.Sprintf("scan=%v", scan), func(b *testing.B) {
			tagLinksByScan = scan
			defer func() { tagLinksByScan = false }()
			for b.Loop() {
				l, err := TagLinks(context.Background(), drv, "ci/app", 8)
				if err != nil || len(l) != 5000 {
					b.Fatal(err, len(l))
				}
			}
		})
	}
}
