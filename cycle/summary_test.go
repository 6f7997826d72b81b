package cycle

import (
	"strings"
	"testing"
	"time"

	"github.com/regkeeper/regkeeper/gc"
)

// When the grace is why gc deleted nothing, the cycle's gc line says so.
func TestSummaryGCGrace(t *testing.T) {
	r := &Result{GC: &gc.Report{ManifestsSparedByGrace: 2, BlobsSparedByGrace: 3, BytesSparedByGrace: 2048, Grace: time.Hour}}
	got := r.Summary(StepGC)
	want := "deleted 0 manifests, 0 blobs: 0 B reclaimed; nothing deleted: 2 manifests and 3 blobs (2.0 KiB) that nothing references are younger than the 1h0m0s grace"
	if !strings.HasPrefix(got, want) {
		t.Errorf("summary %q, want it to start %q", got, want)
	}
	r.GC = &gc.Report{ManifestsDeleted: 1, BlobsDeleted: 2, BytesReclaimed: 10}
	if got := r.Summary(StepGC); got != "deleted 1 manifests, 2 blobs: 10 B reclaimed" {
		t.Errorf("summary %q", got)
	}
}
