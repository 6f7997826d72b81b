package report

import (
	"bytes"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/regkeeper/regkeeper/gc"
	"github.com/regkeeper/regkeeper/inventory"
)

// rectWidths returns the width of every bar (not legend swatch) of a chart.
func rectWidths(t *testing.T, svg string) map[string]float64 {
	t.Helper()
	re := regexp.MustCompile(`<rect class="[^"]+" x="[^"]+" y="\d+" width="([0-9.]+)" height="\d+"><title>([^<]+):`)
	out := map[string]float64{}
	for _, m := range re.FindAllStringSubmatch(svg, -1) {
		w, _ := strconv.ParseFloat(m[1], 64)
		out[m[2]] += w
	}
	return out
}

// With 120 repositories, the 100 the chart leaves out are a line of text,
// not a bar 50 times the length of the named ones.
func TestChartOthersDoNotDwarf(t *testing.T) {
	var storage []RepoStorage
	for i := range 120 {
		storage = append(storage, RepoStorage{Repository: fmt.Sprintf("team-%03d/app", i), Tags: 1, Unique: int64(1000 - i), Shared: 10})
	}
	store, _, _ := (&Data{}).charts(storage)
	svg := string(store)
	widths := rectWidths(t, svg)
	if len(widths) != maxChartRows {
		t.Errorf("%d bars, want %d named ones and no bar for the rest", len(widths), maxChartRows)
	}
	if w := widths["team-000/app"]; w < chartBarW-1 {
		t.Errorf("the largest named repository's bar is %.1f px of %d", w, chartBarW)
	}
	if !strings.Contains(svg, "100 other repositories (in the table below), together:") {
		t.Errorf("no total for the others:\n%s", svg)
	}
	if strings.Contains(svg, "<title>100 other") {
		t.Errorf("the others are drawn as a bar")
	}
}

// A gc dry run that finds nothing says so in words, with no empty chart.
func TestNothingToReclaim(t *testing.T) {
	d := &Data{Registry: "r.example", Generated: time.Unix(0, 0), Inventory: &inventory.Result{}, GC: &gc.Report{DryRun: true, Repositories: []gc.RepoReport{{Name: "a"}}}}
	var b bytes.Buffer
	if err := d.WriteHTML(&b); err != nil {
		t.Fatal(err)
	}
	html := b.String()
	if strings.Contains(html, `id="chart-gc"`) {
		t.Errorf("an empty gc chart is drawn")
	}
	if !strings.Contains(html, "Nothing to reclaim") {
		t.Errorf("the report does not say there is nothing to reclaim")
	}
}

// Charts are drawn for 480 px, label above bar, and scale with the page.
func TestChartFitsAPhone(t *testing.T) {
	long := strings.Repeat("very-long-name/", 10) + "app"
	store, _, _ := (&Data{}).charts([]RepoStorage{{Repository: long, Unique: 5 << 30, Shared: 3 << 30}})
	svg := string(store)
	if !strings.Contains(svg, `viewBox="0 0 480 `) {
		t.Errorf("chart is not drawn for 480 px: %s", svg[:120])
	}
	if strings.Contains(svg, ">"+long+"</text>") {
		t.Errorf("a %d-character label is drawn whole", len(long))
	}
}
