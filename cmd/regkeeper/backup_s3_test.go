package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/regkeeper/regkeeper/backup"
	"github.com/regkeeper/regkeeper/internal/testbed/embedded"
	"github.com/regkeeper/regkeeper/internal/testbed/minio"
	"github.com/regkeeper/regkeeper/internal/testbed/regtest"
)

// The backup commands on MinIO: backup to an s3:// URL (credentials from
// the environment) and, into another prefix, to a --target-config file;
// snapshots, verify and restore read each where it is; the restored
// registry has every tag at its digest.
func TestBackupCommandsS3(t *testing.T) {
	const bucket = "backups"
	m := minio.ForTest(t, bucket)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	minio.UseCredentials(t)
	srv, e := regtest.Seeded(t, embedded.Options{})

	url := m.TargetURL(bucket, "by-url")
	cfg := m.TargetConfig(t, bucket, "/by-config")
	for _, tc := range []struct {
		name   string
		target []string // in place of DIR
		prefix string
	}{
		{"url", []string{url}, "by-url"},
		{"config", []string{"--target-config", cfg}, "by-config"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			run := func(want int, argv ...string) string {
				t.Helper()
				code, out, stderr := runCLI(t, argv...)
				if code != want {
					t.Fatalf("%s: exit %d, want %d: %s", strings.Join(argv, " "), code, want, stderr)
				}
				return out
			}
			run(0, append([]string{"backup", srv.Host, "--insecure"}, tc.target...)...)
			if objs, err := m.Objects(ctx, bucket, tc.prefix+"/"); err != nil || objs[tc.prefix+"/index.json"] == 0 || objs[tc.prefix+"/oci-layout"] == 0 {
				t.Fatalf("no layout under %s/: %v %v", tc.prefix, err, len(objs))
			}
			if out := run(0, append([]string{"backup", "snapshots", "-o", "json"}, tc.target...)...); !strings.Contains(out, `"status": "complete"`) {
				t.Errorf("snapshots: %s", out)
			}
			run(0, append([]string{"verify"}, tc.target...)...)
			dst := regtest.Registry(t, embedded.Options{})
			run(0, append(append([]string{"restore"}, tc.target...), dst.Host, "--insecure")...)
			got := map[string]v1.Hash{}
			for ref := range e.Tags() {
				desc, err := remote.Head(regtest.Ref(t, dst, ref))
				if err != nil {
					t.Errorf("%s: %v", ref, err)
					continue
				}
				got[ref] = desc.Digest
			}
			if diff := cmp.Diff(e.Tags(), got); diff != "" {
				t.Errorf("restored tags (-want +got):\n%s", diff)
			}
			run(0, append([]string{"backup", "forget", "--keep-last", "1", "--prune", "--dry-run"}, tc.target...)...)
		})
	}
	// A registry on the same MinIO, backed up with its config: every blob
	// is copied inside the store.
	if err := m.CreateBucket(ctx, "registry"); err != nil {
		t.Fatal(err)
	}
	onS3, _ := regtest.Seeded(t, embedded.Options{Storage: m.StorageYAML("registry")})
	code, out, stderr := runCLI(t, "backup", onS3.Host, "s3://"+bucket+"/copied?endpoint="+m.Endpoint, "--config", onS3.ConfigFile, "--insecure", "-o", "json")
	var res backup.Result
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil {
		t.Fatalf("backup --config: exit %d: %s%s", code, out, stderr)
	}
	if res.BlobsCopiedInStore == 0 || res.BytesCopiedInStore == 0 || !strings.Contains(out, `"blobsCopiedInStore"`) {
		t.Errorf("backup --config copied nothing in the store: %s", out)
	}

	// DIR and --target-config together, or neither: usage errors.
	for _, argv := range [][]string{
		{"backup", srv.Host, "/tmp/x", "--target-config", cfg},
		{"verify"},
		{"restore", "--target-config", cfg},
	} {
		if code, _, _ := runCLI(t, argv...); code != exitUsage {
			t.Errorf("%s: exit %d, want %d", strings.Join(argv, " "), code, exitUsage)
		}
	}
}
