package report_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/regkeeper/regkeeper/gc"
	"github.com/regkeeper/regkeeper/inventory"
	"github.com/regkeeper/regkeeper/report"
)

// When the grace is why gc would reclaim nothing, the report says so.
func TestReportGraceNote(t *testing.T) {
	d := &report.Data{Registry: "r", Generated: time.Unix(0, 0), Inventory: &inventory.Result{},
		GC: &gc.Report{DryRun: true, Repositories: []gc.RepoReport{}, ManifestsSparedByGrace: 3, BlobsSparedByGrace: 5,
			BytesSparedByGrace: 4096, Grace: time.Hour}}
	want := "nothing would be deleted: 3 manifests and 5 blobs (4.0 KiB) that nothing references are younger than the 1h0m0s grace"
	for name, write := range map[string]func(*bytes.Buffer) error{
		"markdown": func(b *bytes.Buffer) error { return d.WriteMarkdown(b) },
		"html":     func(b *bytes.Buffer) error { return d.WriteHTML(b) },
	} {
		var b bytes.Buffer
		if err := write(&b); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(b.String(), want) {
			t.Errorf("%s lacks %q", name, want)
		}
	}
}
