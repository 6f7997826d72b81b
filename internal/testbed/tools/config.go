package tools

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// StorageConfig writes a registry configuration holding storage (a driver
// section, as the testbeds' StorageYAML write it) into a new file of the
// test's temporary directory, and returns its path: what gc's --config and
// backup's --target-config take.
func StorageConfig(t testing.TB, storage string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yml")
	yml := "version: 0.1\nstorage:\n  " + strings.ReplaceAll(strings.TrimSpace(storage), "\n", "\n  ") + "\n"
	if err := os.WriteFile(p, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
