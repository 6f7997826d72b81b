package report_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/regkeeper/regkeeper/audit"
	"github.com/regkeeper/regkeeper/internal/testbed/artifacts"
	"github.com/regkeeper/regkeeper/internal/testbed/regtest"
	"github.com/regkeeper/regkeeper/inventory"
	"github.com/regkeeper/regkeeper/report"
)

// TestReportSaysWhatAuditDidNotJudge is issue 24 items 1 and 6 in the
// report: its audit section says what was not judged and which patterns
// matched nothing, in HTML and Markdown.
func TestReportSaysWhatAuditDidNotJudge(t *testing.T) {
	now := time.Now()
	srv := artifacts.SeedOSless(t, now)
	pol := audit.DefaultPolicy()
	pol.Ban = []audit.Pattern{mustPattern(t, "base/cent0s")}
	pol.Ban[0].Source = "--ban"
	res, err := audit.Run(context.Background(), srv.Host, audit.Options{Inventory: inventory.Options{Client: regtest.Client()}, Policy: pol, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	d := &report.Data{Registry: res.Registry, Generated: now, Inventory: res.Inventory, Audit: res}
	for _, format := range []string{"html", "markdown"} {
		var b bytes.Buffer
		write := d.WriteHTML
		if format == "markdown" {
			write = d.WriteMarkdown
		}
		if err := write(&b); err != nil {
			t.Fatal(err)
		}
		out := b.String()
		for _, want := range []string{"2 signatures, 1 SBOM, 1 Helm chart and 1 other artifact not judged", "matches none of the 8 tags"} {
			if !strings.Contains(out, want) {
				t.Errorf("%s report lacks %q", format, want)
			}
		}
	}
}
