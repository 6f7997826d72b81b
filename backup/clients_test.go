package backup

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// findClient returns the path of a registry client installed by
// scripts/setup-clients (${XDG_CACHE_HOME:-$HOME/.cache}/regkeeper/bin)
// or on PATH. Absent, it skips the test when skip is set (saying how to
// install it), else returns "".
func findClient(t *testing.T, client string, skip bool) string {
	t.Helper()
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		if home, err := os.UserHomeDir(); err == nil {
			cache = filepath.Join(home, ".cache")
		}
	}
	if cache != "" {
		p := filepath.Join(cache, "regkeeper", "bin", client)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	if p, err := exec.LookPath(client); err == nil {
		return p
	}
	if skip {
		t.Skipf("%s is not installed: scripts/setup-clients installs it (CI runs it)", client)
	}
	return ""
}

// runClient runs a client with a private HOME (no user configuration read
// or written) and returns its stdout; a failure fails the test.
func runClient(t *testing.T, bin string, args ...string) string {
	t.Helper()
	cmd := exec.Command(bin, args...)
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HOME="+home, "DOCKER_CONFIG="+filepath.Join(home, ".docker"), "XDG_RUNTIME_DIR="+home)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s%s", filepath.Base(bin), strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}
