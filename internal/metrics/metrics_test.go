package metrics

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestWrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "regkeeper_gc.prom")
	t0 := time.Unix(1700000000, 0)

	s := New("gc")
	s.Gauge("bytes_reclaimed", "Bytes of blob files deleted.", 237687)
	s.Gauge("findings", "Findings.", 2, "reason", "base-too-old")
	if err := s.Write(path, true, t0); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(path)
	for _, want := range []string{
		"regkeeper_gc_bytes_reclaimed 237687\n",
		`regkeeper_gc_findings{reason="base-too-old"} 2` + "\n",
		"regkeeper_gc_success 1\n",
		"regkeeper_gc_last_success_timestamp_seconds 1.7e+09\n",
		"# HELP regkeeper_gc_bytes_reclaimed Bytes of blob files deleted.\n",
	} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("metrics lack %q:\n%s", want, raw)
		}
	}

	// A failed run keeps the last success time of the previous file.
	f := New("gc")
	if err := f.Write(path, false, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	raw, _ = os.ReadFile(path)
	if !strings.Contains(string(raw), "regkeeper_gc_success 0\n") || !strings.Contains(string(raw), "regkeeper_gc_last_success_timestamp_seconds 1.7e+09\n") {
		t.Errorf("after a failure:\n%s", raw)
	}
	names, err := Names(path)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"regkeeper_gc_last_success_timestamp_seconds", "regkeeper_gc_success"}, names); diff != "" {
		t.Errorf("names (-want +got):\n%s", diff)
	}
	if leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(path), "*")); len(leftovers) != 1 {
		t.Errorf("temporary files left: %v", leftovers)
	}
}
