package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/regkeeper/regkeeper/backup"
	"github.com/regkeeper/regkeeper/cycle"
	"github.com/regkeeper/regkeeper/internal/testbed/embedded"
	"github.com/regkeeper/regkeeper/internal/testbed/minio"
	"github.com/regkeeper/regkeeper/internal/testbed/regtest"
)

// cycle --backup s3://... (issue 26): the backup goes into the bucket and
// nothing of it is written locally (the old cycle made a directory named
// "s3:"), it verifies, retention and gc run; the lock is in $TMPDIR named
// after the target and the retain journal beside it, as the README says;
// --check says so. Without credentials --check fails the backup check
// (exit 6) saying which credentials to give, not the SDK's
// NoCredentialProviders; gs:// is a usage error, for cycle and backup.
func TestCycleS3Backup(t *testing.T) {
	const bucket = "backups"
	m := minio.ForTest(t, bucket)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	minio.UseCredentials(t)
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	cwd := t.TempDir()
	t.Chdir(cwd)

	srv, _ := regtest.Seeded(t, embedded.Options{})
	url := m.TargetURL(bucket, "reg")
	target, err := backup.OpenTarget(ctx, url, "")
	if err != nil {
		t.Fatal(err)
	}
	lock := cycle.DefaultLockFile(target)
	if filepath.Dir(lock) != tmp || !strings.HasPrefix(filepath.Base(lock), "regkeeper-cycle-") {
		t.Errorf("default lock of an s3 backup: %s, want $TMPDIR/regkeeper-cycle-<hash>.lock", lock)
	}
	pol := writeFile(t, "retain.yml", "policies:\n  - repositories: [\"team-a/**\"]\n    keep:\n      - tags: ['^latest$']\n")
	base := []string{"cycle", srv.Host, "--insecure", "--config", srv.ConfigFile, "--backup", url,
		"--repo", "^(base|team)", "--grace", "0", "--settle", "100ms", "--retain-policy", pol}

	code, out, stderr := runCLI(t, append(base, "--check")...)
	if code != 0 {
		t.Fatalf("--check: exit %d:\n%s\n%s", code, out, stderr)
	}
	checks := checkLines(out)
	for name, want := range map[string]string{
		"backup":         "probe written and deleted",
		"lock-file":      lock,
		"retain-journal": tmp,
	} {
		if l := checks[name]; !strings.Contains(l, " ok ") || !strings.Contains(l, want) {
			t.Errorf("check %s: %q, want ok and %q\n%s", name, l, want, out)
		}
	}

	code, out, stderr = runCLI(t, append(base, "-o", "json")...)
	if code != 0 {
		t.Fatalf("cycle: exit %d: %s\n%s", code, stderr, out)
	}
	var doc struct {
		Steps  []struct{ Name, Status string }
		Verify struct{ Blobs int }
		GC     struct{ BytesReclaimed int64 }
		Retain struct {
			Removed int
			Journal string
		}
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatal(err)
	}
	for _, st := range doc.Steps {
		if st.Status != "ok" {
			t.Errorf("step %s: %s", st.Name, st.Status)
		}
	}
	if doc.GC.BytesReclaimed == 0 || doc.Retain.Removed == 0 {
		t.Errorf("gc reclaimed %d bytes, retain removed %d tags", doc.GC.BytesReclaimed, doc.Retain.Removed)
	}
	if filepath.Dir(doc.Retain.Journal) != tmp {
		t.Errorf("retain journal at %s, want in %s beside the lock", doc.Retain.Journal, tmp)
	} else if _, err := os.Stat(doc.Retain.Journal); err != nil {
		t.Errorf("retain journal: %v", err)
	}
	if _, err := os.Stat(lock); err != nil {
		t.Errorf("the cycle's lock: %v", err)
	}
	objs, err := m.Objects(ctx, bucket, "reg/")
	if err != nil {
		t.Fatal(err)
	}
	blobs := 0
	for k := range objs {
		if strings.HasPrefix(k, "reg/blobs/sha256/") {
			blobs++
		}
	}
	if objs["reg/index.json"] == 0 || objs["reg/oci-layout"] == 0 || blobs == 0 {
		t.Errorf("no layout in the bucket under reg/: %d objects, %d blobs", len(objs), blobs)
	}
	if ents, _ := os.ReadDir(cwd); len(ents) != 0 {
		t.Errorf("the cycle wrote in the working directory: %v", ents)
	}

	// --target-config in place of --backup: the same checks, the lock
	// named after that target; both at once, or neither, a usage error.
	cfg := m.TargetConfig(t, bucket, "/by-config")
	byConfig := append(append([]string{}, base[:5]...), "--target-config", cfg, "--check")
	code, out, stderr = runCLI(t, byConfig...)
	if l := checkLines(out)["backup"]; code != 0 || !strings.Contains(l, " ok ") || !strings.Contains(l, "s3aws") {
		t.Errorf("--check --target-config: exit %d, backup %q:\n%s\n%s", code, l, out, stderr)
	}
	if l := checkLines(out)["lock-file"]; !strings.Contains(l, tmp) || strings.Contains(l, lock) {
		t.Errorf("--target-config lock-file: %q, want in %s and not %s's", l, tmp, lock)
	}
	for _, argv := range [][]string{
		append(append([]string{}, byConfig...), "--backup", url),
		base[:5],
	} {
		if code, _, _ := runCLI(t, argv...); code != exitUsage {
			t.Errorf("%s: exit %d, want %d", strings.Join(argv, " "), code, exitUsage)
		}
	}

	// A bucket that does not exist fails the check, said plainly.
	noBucket := append(append([]string{}, base[:5]...), "--backup", "s3://no-such-bucket/reg?endpoint="+m.Endpoint, "--check")
	code, out, _ = runCLI(t, noBucket...)
	if l := checkLines(out)["backup"]; code != exitCheckFailed || !strings.Contains(l, "FAIL") || !strings.Contains(l, "bucket does not exist") {
		t.Errorf("--check with a missing bucket: exit %d, want %d, backup: %q", code, exitCheckFailed, l)
	}

	// No credentials at all: the backup check fails with what to give.
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"} {
		t.Setenv(k, "")
	}
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(tmp, "none"))
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(tmp, "none"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	code, out, stderr = runCLI(t, append(base, "--check")...)
	l := checkLines(out)["backup"]
	if code != exitCheckFailed || !strings.Contains(l, "FAIL") || !strings.Contains(l, "AWS_ACCESS_KEY_ID") || strings.Contains(out, "NoCredentialProviders") {
		t.Errorf("--check without credentials: exit %d, want %d, backup: %q\n%s\n%s", code, exitCheckFailed, l, out, stderr)
	}
	code, _, stderr = runCLI(t, "verify", url)
	if code == 0 || !strings.Contains(stderr, "AWS_ACCESS_KEY_ID") || strings.Contains(stderr, "NoCredentialProviders") {
		t.Errorf("verify without credentials: exit %d: %s", code, stderr)
	}

	// A scheme that is not s3: a usage error naming what is taken, and no
	// directory made.
	for _, argv := range [][]string{
		append(append([]string{}, base[:5]...), "--backup", "gs://x/reg", "--check"),
		{"cycle", srv.Host, "--config", srv.ConfigFile, "--backup", "azure://c/reg"},
		{"backup", srv.Host, "gs://x/reg"},
		{"backup", srv.Host, "http://127.0.0.1:9/reg"},
	} {
		code, _, stderr := runCLI(t, argv...)
		if code != exitUsage || !strings.Contains(stderr, "s3://BUCKET/PREFIX") || !strings.Contains(stderr, "--target-config") {
			t.Errorf("%s: exit %d, want %d: %s", strings.Join(argv, " "), code, exitUsage, stderr)
		}
	}
	if ents, _ := os.ReadDir(cwd); len(ents) != 0 {
		t.Errorf("a target with a scheme made a local directory: %v", ents)
	}
}

// checkLines are the lines of cycle --check's table by check name.
func checkLines(out string) map[string]string {
	lines := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 1 {
			lines[f[0]] = l
		}
	}
	return lines
}
