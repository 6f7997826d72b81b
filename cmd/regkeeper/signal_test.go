package main

import (
	"bytes"
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
	"syscall"
	"testing"
	"time"

	"github.com/regkeeper/regkeeper/backup"
	"github.com/regkeeper/regkeeper/cycle"
	"github.com/regkeeper/regkeeper/internal/testbed/embedded"
	"github.com/regkeeper/regkeeper/internal/testbed/regtest"
)

// buildBinary builds the real regkeeper binary once per test.
func buildBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "regkeeper")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// slowRegistry fronts srv with a proxy that takes delay for every blob.
func slowRegistry(t *testing.T, srvURL string, delay time.Duration) string {
	t.Helper()
	target, _ := url.Parse(srvURL)
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ErrorLog = log.New(io.Discard, "", 0)
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/blobs/") {
			time.Sleep(delay)
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(slow.Close)
	return strings.TrimPrefix(slow.URL, "http://")
}

// flockFree reports whether path can be locked now (nobody holds it).
func flockFree(t *testing.T, path string) bool {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatalf("lock file: %v", err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return false
	}
	syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return true
}

// The real binary, interrupted with SIGINT in the middle of a cycle's
// backup: it exits 130, as shells expect, says so, writes
// regkeeper_cycle_success 0, and leaves no lock held; the next cycle runs.
func TestInterruptedCycleExits130(t *testing.T) {
	bin := buildBinary(t)
	srv, _ := regtest.Seeded(t, embedded.Options{})
	host := slowRegistry(t, srv.URL, 200*time.Millisecond)
	dir := t.TempDir()
	bk, prom := filepath.Join(dir, "backup"), filepath.Join(dir, "cycle.prom")
	argv := []string{"cycle", host, "--insecure", "--config", srv.ConfigFile, "--backup", bk, "--repo", "^(base|team)", "--jobs", "2", "--metrics-file", prom}

	cmd := exec.Command(bin, argv...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	blobs := backup.Layout{Root: bk}.AlgorithmDir("sha256")
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if n, _ := os.ReadDir(blobs); len(n) >= 3 {
			break
		}
	}
	if !flockFree(t, cycle.DefaultLockFile(backup.Layout{Root: bk})) {
		t.Logf("the cycle holds %s", cycle.DefaultLockFile(backup.Layout{Root: bk}))
	} else {
		t.Errorf("the running cycle does not hold %s", cycle.DefaultLockFile(backup.Layout{Root: bk}))
	}
	sent := time.Now()
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("still running 30s after SIGINT: %s", stderr.String())
	}
	t.Logf("exited %.1fs after SIGINT", time.Since(sent).Seconds())
	if code := cmd.ProcessState.ExitCode(); code != 130 {
		t.Errorf("exit %d after SIGINT, want 130: %s", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "regkeeper cycle: interrupted (SIGINT)") {
		t.Errorf("stderr does not say it was interrupted: %s", stderr.String())
	}
	// The table says where, not "context canceled".
	if !strings.Contains(stdout.String(), "interrupted (SIGINT) during backup") || strings.Contains(stdout.String()+stderr.String(), "context canceled") {
		t.Errorf("the cycle's table does not say the backup was interrupted:\n%s\n%s", stdout.String(), stderr.String())
	}
	for _, lock := range []string{cycle.DefaultLockFile(backup.Layout{Root: bk}), backup.Layout{Root: bk}.LockFile()} {
		if !flockFree(t, lock) {
			t.Errorf("%s still held after the process ended", lock)
		}
	}
	if raw, _ := os.ReadFile(prom); !strings.Contains(string(raw), "\nregkeeper_cycle_success 0\n") {
		t.Errorf("metrics after SIGINT:\n%s", raw)
	}
	// The next run is not blocked, and finishes the backup.
	if code, _, stderr := runCLI(t, "cycle", srv.Host, "--insecure", "--config", srv.ConfigFile, "--backup", bk, "--repo", "^(base|team)", "--grace", "0"); code != 0 {
		t.Errorf("cycle after the interrupted one: exit %d: %s", code, stderr)
	}
}

// The real binary, interrupted with SIGINT in the middle of a gc's sweep
// (a generated registry of 10 repositories, 300 untagged manifests): exit
// 130, the lock gc keeps in the storage is gone, so the next run starts
// at once, and the quarantine the interrupted run set up is left for it.
func TestInterruptedGCExits130(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	gen := filepath.Join(dir, "gen")
	if out, err := exec.Command("go", "build", "-o", gen, "../../bench/gc/gen").CombinedOutput(); err != nil {
		t.Fatalf("go build bench/gc/gen: %v\n%s", err, out)
	}
	root := filepath.Join(dir, "storage")
	config := filepath.Join(dir, "config.yml")
	os.WriteFile(config, []byte("version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: "+root+"\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:0\n"), 0o644)
	if out, err := exec.Command(gen, "-config", config, "-repos", "10", "-tags", "10", "-versions", "4").CombinedOutput(); err != nil {
		t.Fatalf("generating the registry: %v\n%s", err, out)
	}
	lock := filepath.Join(root, "docker", "registry", "v2", "regkeeper-gc.lock")

	cmd := exec.Command(bin, "gc", "--config", config, "--grace", "0", "--jobs", "1", "--max-delete-ratio", "1") // a never-collected storage: 75% of its bytes
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Into the sweep: the first blob is in the quarantine. The settle that
	// follows (10s by default) keeps gc from finishing before the signal.
	quarantined := filepath.Join(root, "docker", "registry", "v2", "regkeeper-quarantine", "sha256")
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if entries, _ := os.ReadDir(quarantined); len(entries) > 0 {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("gc quarantined nothing within 60s: %s", stderr.String())
		}
	}
	cmd.Process.Signal(os.Interrupt)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("still running 60s after SIGINT: %s", stderr.String())
	}
	code := cmd.ProcessState.ExitCode()
	if code != 130 || !strings.Contains(stderr.String(), "regkeeper gc: interrupted (SIGINT)") {
		t.Errorf("exit %d after SIGINT, want 130: %s", code, stderr.String())
	}
	if _, err := os.Stat(lock); err == nil {
		t.Errorf("gc left its lock %s after SIGINT", lock)
	}
	// Interrupted after its quarantine, gc leaves it (and its since file)
	// for the next run to resolve.
	if _, err := os.Stat(filepath.Join(filepath.Dir(quarantined), "since")); err != nil {
		t.Errorf("gc interrupted in its sweep left no quarantine: %v", err)
	}
	if code, _, stderr := runCLI(t, "gc", "--config", config, "--grace", "0", "--max-delete-ratio", "1", "--dry-run"); code != 0 {
		t.Errorf("gc after the interrupted one: exit %d: %s", code, stderr)
	}
}
