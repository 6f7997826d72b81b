package main

import (
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/regkeeper/regkeeper/backup"
	"github.com/regkeeper/regkeeper/internal/testbed/embedded"
	"github.com/regkeeper/regkeeper/internal/testbed/regtest"
)

// backupTags maps repo:tag to digest for the tag entries of a backup.
func backupTags(t *testing.T, dir string) map[string]v1.Hash {
	t.Helper()
	entries, err := backup.Layout{Root: dir}.ReadIndex()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]v1.Hash{}
	for _, e := range entries {
		if e.Kind() == backup.KindTag {
			if _, dup := out[e.Repository()+":"+e.Tag()]; dup {
				t.Errorf("duplicate entry %s:%s", e.Repository(), e.Tag())
			}
			out[e.Repository()+":"+e.Tag()] = e.Digest
		}
	}
	return out
}

func TestBackupRestoreVerifyCommands(t *testing.T) {
	srv, e := regtest.Seeded(t, embedded.Options{})
	dir := filepath.Join(t.TempDir(), "b")

	code, out, stderr := runCLI(t, "backup", srv.Host, dir, "--insecure", "-o", "json")
	if code != 0 {
		t.Fatalf("backup exit %d: %s", code, stderr)
	}
	for _, key := range []string{"images", "blobsWritten", "bytesWritten", "blobsSkipped", "bytesSkipped"} {
		if !strings.Contains(out, `"`+key+`"`) {
			t.Errorf("JSON lacks %q:\n%s", key, out)
		}
	}
	var first backup.Result
	if err := json.Unmarshal([]byte(out), &first); err != nil {
		t.Fatal(err)
	}
	if first.Images != len(e.Tags()) || first.Added != len(e.Tags()) || first.Updated != 0 || first.BytesWritten == 0 || len(first.Absent) != 2 || !first.Complete {
		t.Errorf("first backup: %+v", first)
	}
	if diff := cmp.Diff(e.Tags(), backupTags(t, dir)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}

	code, out, stderr = runCLI(t, "backup", srv.Host, dir, "--insecure", "-o", "json")
	var second backup.Result
	if code != 0 || json.Unmarshal([]byte(out), &second) != nil {
		t.Fatalf("second backup exit %d: %s\n%s", code, stderr, out)
	}
	if second.BytesWritten != 0 || second.BlobsWritten != 0 || second.BytesSkipped != first.BytesWritten {
		t.Errorf("second backup of an unchanged registry: %+v", second)
	}
	code, out, _ = runCLI(t, "backup", srv.Host, dir, "--insecure")
	if code != 0 || !strings.Contains(out, "BYTES WRITTEN") || !strings.Contains(out, "15 images") {
		t.Errorf("table output, exit %d:\n%s", code, out)
	}

	code, out, stderr = runCLI(t, "verify", dir)
	if code != 0 || !strings.HasPrefix(out, "ok: ") || !strings.Contains(out, "latest complete snapshot: ") {
		t.Errorf("verify exit %d: %s%s", code, out, stderr)
	}
	// Three runs, three complete snapshots, listed; forget keeps the last.
	code, out, stderr = runCLI(t, "backup", "snapshots", dir, "-o", "json")
	var snaps []backup.SnapshotInfo
	if code != 0 || json.Unmarshal([]byte(out), &snaps) != nil || len(snaps) != 3 || snaps[1].ID != second.Snapshot ||
		snaps[2].Status != backup.SnapshotComplete || snaps[2].Images != len(e.Tags()) {
		t.Errorf("backup snapshots exit %d: %s%s", code, out, stderr)
	}
	code, out, stderr = runCLI(t, "backup", "forget", dir, "--keep-last", "1", "--prune", "--dry-run")
	if code != 0 || !strings.Contains(out, "kept 1 snapshot, would remove 2 snapshots") || !strings.Contains(out, "prune would delete 0 blobs (0 B)") {
		t.Errorf("backup forget --dry-run exit %d:\n%s%s", code, out, stderr)
	}
	if code, _, stderr = runCLI(t, "backup", "forget", dir); code != 2 || !strings.Contains(stderr, "needs a policy") {
		t.Errorf("backup forget without a policy: exit %d %s", code, stderr)
	}

	dst := regtest.Registry(t, embedded.Options{})
	code, out, _ = runCLI(t, "restore", dir, dst.Host, "--insecure", "--repo", "^team-a/api$", "--tag", `^1\.0$`, "--dry-run")
	if code != 0 || !strings.Contains(out, "dry run: would push 1 image, ") || !strings.Contains(out, "team-a/api") {
		t.Errorf("restore --dry-run exit %d:\n%s", code, out)
	}
	code, out, stderr = runCLI(t, "restore", dir, dst.Host, "--insecure", "-o", "json")
	var rres backup.RestoreResult
	if code != 0 || json.Unmarshal([]byte(out), &rres) != nil {
		t.Fatalf("restore exit %d: %s\n%s", code, stderr, out)
	}
	if rres.Images != len(e.Tags()) || len(rres.Errors) != 0 {
		t.Errorf("restore: %+v", rres)
	}
	regtest.PullAll(t, dst.Host, e)

	// A damaged blob: verify names it and exits 1.
	var victim v1.Hash
	for _, m := range e.Manifests {
		if m.Repository == "base/centos" {
			victim = m.Blobs[len(m.Blobs)-1]
		}
	}
	p := backup.Layout{Root: dir}.Blob(victim)
	b, _ := os.ReadFile(p)
	b[0] ^= 1
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, stderr = runCLI(t, "verify", dir)
	if code != 1 || !strings.Contains(out, victim.String()) || !strings.Contains(out, "corrupt") || !strings.Contains(out, "base/centos:") ||
		!strings.Contains(stderr, "1 blob is corrupt or missing") {
		t.Errorf("verify of a damaged backup: exit %d\n%s%s", code, out, stderr)
	}
	code, out, stderr = runCLI(t, "verify", dir, "--repair", srv.Host, "--insecure")
	if code != 0 || !strings.HasPrefix(out, "repaired: fetched 1 blob again") {
		t.Errorf("verify --repair: exit %d\n%s%s", code, out, stderr)
	}
	if code, out, stderr = runCLI(t, "verify", dir); code != 0 {
		t.Errorf("verify after --repair: exit %d\n%s%s", code, out, stderr)
	}
}

func TestBackupCommandErrors(t *testing.T) {
	foreign := t.TempDir()
	if err := os.WriteFile(filepath.Join(foreign, "notes.txt"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		argv []string
		code int
		msg  string
	}{
		{[]string{"backup", "127.0.0.1:1"}, 2, "missing DIR (where the backup goes)"},
		{[]string{"backup", "127.0.0.1:1", t.TempDir(), "--repo", "("}, 2, "--repo: invalid regular expression"},
		{[]string{"backup", "127.0.0.1:1", foreign}, 1, "not empty and has no oci-layout file"},
		{[]string{"backup", "127.0.0.1:1", t.TempDir(), "--insecure"}, 1, "registry unreachable"},
		{[]string{"backup", "bad host/x", t.TempDir()}, 1, "invalid registry"},
		{[]string{"restore", foreign, "127.0.0.1:1"}, 1, "no oci-layout file"},
		{[]string{"verify", foreign}, 1, "no oci-layout file"},
		{[]string{"verify", filepath.Join(foreign, "nope")}, 1, "no such file"},
		{[]string{"verify"}, 2, "missing DIR (the backup to verify)"},
	} {
		code, _, stderr := runCLI(t, tc.argv...)
		if code != tc.code || !strings.Contains(stderr, tc.msg) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d mentioning %q", tc.argv, code, stderr, tc.code, tc.msg)
		}
	}
	// An unreachable registry is one line on stderr, not a table of zeros
	// on stdout; -o json still records the error.
	if code, stdout, _ := runCLI(t, "backup", "127.0.0.1:1", t.TempDir(), "--insecure"); code != 1 || stdout != "" {
		t.Errorf("backup of an unreachable registry: exit %d, stdout %q; want 1 and nothing", code, stdout)
	}
	if code, stdout, _ := runCLI(t, "backup", "127.0.0.1:1", t.TempDir(), "--insecure", "-o", "json"); code != 1 || !strings.Contains(stdout, "registry unreachable") {
		t.Errorf("backup -o json of an unreachable registry: exit %d, stdout %q; want 1 and the error in errors", code, stdout)
	}
	if b, err := os.ReadFile(filepath.Join(foreign, "notes.txt")); err != nil || string(b) != "x" {
		t.Error("a foreign directory was modified")
	}
}

// The real binary, killed with SIGKILL in the middle of a backup through a
// slow proxy, then run again: the backup completes, verifies, and has each
// tag once.
func TestBackupKilledAndResumed(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	srv, e := regtest.Seeded(t, embedded.Options{})
	bin := filepath.Join(t.TempDir(), "regkeeper")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	target, _ := url.Parse(srv.URL)
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ErrorLog = log.New(io.Discard, "", 0)
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/blobs/") {
			time.Sleep(150 * time.Millisecond)
		}
		proxy.ServeHTTP(w, r)
	}))
	defer slow.Close()
	host := strings.TrimPrefix(slow.URL, "http://")
	dir := filepath.Join(t.TempDir(), "b")
	blobs := backup.Layout{Root: dir}.AlgorithmDir("sha256")

	for round := range 2 {
		cmd := exec.Command(bin, "backup", host, dir, "--insecure", "--jobs", "2")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		want := 6 * (round + 1)
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			if n, _ := os.ReadDir(blobs); len(n) >= want {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		_ = cmd.Process.Kill()
		err := cmd.Wait()
		if cmd.ProcessState.Success() {
			t.Fatalf("round %d: the backup finished before it was killed; make the proxy slower", round)
		}
		n, _ := os.ReadDir(blobs)
		t.Logf("round %d: killed (%v) with %d blobs written", round, err, len(n))
		// Every blob there is whole, but the run did not finish: exit 1.
		if code, out, stderr := runCLI(t, "verify", dir); code != 1 || !strings.Contains(out, "did not finish: it was killed or is still running") ||
			!strings.Contains(stderr, "the last backup run did not finish") {
			t.Errorf("verify after kill: exit %d\n%s%s", code, out, stderr)
		}
	}
	code, _, stderr := runCLI(t, "backup", srv.Host, dir, "--insecure")
	if code != 0 {
		t.Fatalf("resumed backup exit %d: %s", code, stderr)
	}
	if diff := cmp.Diff(e.Tags(), backupTags(t, dir)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if code, out, stderr := runCLI(t, "verify", dir); code != 0 {
		t.Errorf("verify after resume: exit %d\n%s%s", code, out, stderr)
	}
}
