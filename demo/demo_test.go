package demo

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// demo --dir seeds into an empty or new directory, or a demo's; it refuses
// any other non-empty one and leaves it as it was.
func TestStartRefusesForeignDir(t *testing.T) {
	foreign := t.TempDir()
	keep := filepath.Join(foreign, "notes.txt")
	if err := os.WriteFile(keep, []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Start(context.Background(), Options{Dir: foreign})
	if err == nil || !strings.Contains(err.Error(), "not a demo's directory") {
		t.Fatalf("demo --dir into a foreign directory: %v", err)
	}
	if entries, _ := os.ReadDir(foreign); len(entries) != 1 {
		t.Errorf("the foreign directory was written to: %v", entries)
	}

	old := t.TempDir() // a demo's directory from before the marker
	if err := os.WriteFile(filepath.Join(old, "config.yml"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(old, "storage"), 0o755); err != nil {
		t.Fatal(err)
	}
	marked := t.TempDir()
	if err := os.WriteFile(filepath.Join(marked, markerFile), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for name, dir := range map[string]string{"new": filepath.Join(t.TempDir(), "new"), "empty": t.TempDir(), "old demo": old, "marked demo": marked} {
		if err := checkDir(dir); err != nil {
			t.Errorf("%s directory refused: %v", name, err)
		}
	}
}
