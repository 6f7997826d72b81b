package report_test

import (
	"bytes"
	"context"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/regkeeper/regkeeper/audit"
	"github.com/regkeeper/regkeeper/gc"
	"github.com/regkeeper/regkeeper/internal/testbed/embedded"
	"github.com/regkeeper/regkeeper/internal/testbed/regtest"
	"github.com/regkeeper/regkeeper/inventory"
	"github.com/regkeeper/regkeeper/report"
)

var updateScreenshot = flag.Bool("update-screenshot", false, "rewrite docs/report.png and docs/report-480.png (a phone's width) from the sample estate's report")

// estateReport is the report of the sample estate, with a gc dry run.
func estateReport(t *testing.T) *report.Data {
	t.Helper()
	srv, e := regtest.Seeded(t, embedded.Options{})
	ctx := context.Background()
	res, err := audit.Run(ctx, srv.Host, audit.Options{
		Inventory: inventory.Options{Client: regtest.Client()},
		Policy:    audit.Policy{MaxBaseAge: audit.DefaultMaxBaseAge, Ban: []audit.Pattern{mustPattern(t, "base/centos")}},
		Now:       e.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	drv, err := gc.Open(ctx, srv.ConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	opts := gc.DefaultOptions()
	opts.DryRun, opts.Grace = true, 0
	rep, err := gc.Run(ctx, drv, opts)
	if err != nil {
		t.Fatal(err)
	}
	return &report.Data{Registry: res.Registry, Generated: e.Now, Inventory: res.Inventory, Audit: res, GC: rep}
}

func mustPattern(t *testing.T, s string) audit.Pattern {
	p, err := audit.ParsePattern(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestStorage(t *testing.T) {
	d := estateReport(t)
	repos, totals := d.Storage()
	if totals.Repositories != 10 || totals.Tags != 15 || totals.Findings != 3 || totals.Reclaimable != d.GC.BytesReclaimed || totals.Reclaimable == 0 {
		t.Errorf("totals %+v", totals)
	}
	var unique int64
	byName := map[string]report.RepoStorage{}
	for _, r := range repos {
		unique += r.Unique
		byName[r.Repository] = r
	}
	// Every stored byte is unique to one repository or shared by several.
	if unique > totals.StoredBytes || unique == 0 {
		t.Errorf("unique %d of stored %d", unique, totals.StoredBytes)
	}
	// team-a/api shares the current debian's layer with base/debian and
	// team-d/repro; team-d/tool (FROM scratch) shares nothing.
	if byName["team-a/api"].Shared == 0 || byName["team-d/tool"].Shared != 0 || byName["team-d/tool"].Unique == 0 {
		t.Errorf("team-a/api %+v, team-d/tool %+v", byName["team-a/api"], byName["team-d/tool"])
	}
}

func TestMarkdown(t *testing.T) {
	d := estateReport(t)
	var b bytes.Buffer
	if err := d.WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	md := b.String()
	for _, want := range []string{
		"| repositories | 10 |",
		"| base-banned | team-c/worker:2.3 | linux/amd64 | base/centos:7 |",
		"## Base-image lineage\n\n```\n",
		"| gc would reclaim |",
		"## Problems in the registry\n",
		"| mirror/alpine:3.20 | children-absent | `sha256:",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	if strings.Index(md, "base-banned") > strings.Index(md, "base-too-old |") {
		t.Errorf("findings not worst first")
	}
}

func TestHTMLProblems(t *testing.T) {
	d := estateReport(t)
	var b bytes.Buffer
	if err := d.WriteHTML(&b); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	if !strings.Contains(page, "<h2>Problems in the registry</h2>") || !strings.Contains(page, "<td>mirror/alpine:3.20</td><td>children-absent</td>") {
		t.Errorf("HTML report has no problems section naming mirror/alpine:3.20")
	}
	if strings.Contains(page, "Could not be read") {
		t.Errorf("HTML report lists an index-only copy as unreadable")
	}
}

// TestHTMLInBrowser opens the report in a real headless Chromium: it must
// load with no console error or exception, and every chart must draw bars.
func TestHTMLInBrowser(t *testing.T) {
	chromium := os.Getenv("REGKEEPER_CHROMIUM")
	if chromium == "" {
		var err error
		if chromium, err = exec.LookPath("chromium"); err != nil {
			t.Skip("chromium not installed (scripts/setup-chromium installs Debian's package); set REGKEEPER_CHROMIUM to use another")
		}
	}
	d := estateReport(t)
	var page bytes.Buffer
	if err := d.WriteHTML(&page); err != nil {
		t.Fatal(err)
	}
	html := page.String()
	for _, bad := range []string{"<script", "src=", "href=", "url(", "<link", "@import"} {
		if strings.Contains(html, bad) {
			t.Errorf("the page is not self-contained: it has %q", bad)
		}
	}
	file := filepath.Join(t.TempDir(), "report.html")
	if err := os.WriteFile(file, page.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-quic", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1200, 900))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, 60*time.Second)
	defer cancel()

	// Collect every console message and exception from the first load on.
	cctx, stopConsole := context.WithCancel(ctx)
	var (
		mu       sync.Mutex
		problems []string
		done     = make(chan struct{})
		// The page logs endMark last: every message it wrote before has
		// arrived when the mark has (Console keeps their order).
		endMark = "regkeeper-test: end of the page's messages"
		ended   = make(chan struct{})
	)
	if err := chromedp.Do(ctx); err != nil { // start the browser and its tab
		t.Fatalf("chromium: %v", err)
	}
	messages := chromedp.Console(cctx)
	go func() {
		defer close(done)
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleLog && m.Text == endMark {
				close(ended)
				continue
			}
			if m.Type == chromedp.ConsoleError || m.Type == chromedp.ConsoleWarning || m.IsException() {
				mu.Lock()
				problems = append(problems, m.String())
				mu.Unlock()
			}
		}
	}()
	if err := chromedp.Do(ctx, chromedp.Navigate("file://"+file), chromedp.WaitReady("body")); err != nil {
		t.Fatalf("chromium: %v", err)
	}
	title, err := chromedp.Run(ctx, chromedp.Title())
	if err != nil {
		t.Fatal(err)
	}
	bars, err := chromedp.Run(ctx, chromedp.Evaluate[map[string]int](`Object.fromEntries([...document.querySelectorAll("svg.chart")].map(s =>
		[s.id, [...s.querySelectorAll("rect")].filter(r => r.getBBox().width >= 1 && r.getBBox().height > 0).length]))`))
	if err != nil {
		t.Fatal(err)
	}
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}

	// A phone held upright: 480 px wide, as a mobile browser (the page's
	// viewport meta applies). Nothing scrolls sideways but a table's own
	// box, and chart text is drawn at 10 px or more.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(480, 900, chromedp.EmulateMobile), chromedp.Reload(), chromedp.WaitReady("body")); err != nil {
		t.Fatalf("chromium at 480 px: %v", err)
	}
	narrow, err := chromedp.Run(ctx, chromedp.Evaluate[map[string]float64](`(() => {
		const out = {pageWidth: document.documentElement.scrollWidth, viewport: window.innerWidth};
		for (const s of document.querySelectorAll("svg.chart")) {
			const r = s.getBoundingClientRect();
			out[s.id + ".right"] = r.right;
			out[s.id + ".fontPx"] = 12 * r.width / s.viewBox.baseVal.width;
		}
		for (const e of document.body.querySelectorAll("*")) {
			const r = e.getBoundingClientRect();
			// a table or the lineage may scroll inside its own box
			if (r.right > window.innerWidth && !e.parentElement.closest(".wide, pre")) out["wider: " + e.tagName] = r.right;
		}
		return out;
	})()`))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("at 480 px: %v", narrow)
	if narrow["pageWidth"] > narrow["viewport"] || narrow["viewport"] > 480 {
		t.Errorf("at 480 px the page is %v px wide (viewport %v): it scrolls sideways", narrow["pageWidth"], narrow["viewport"])
	}
	for k, right := range narrow {
		if strings.HasPrefix(k, "wider: ") {
			t.Errorf("at 480 px %s ends at %v px, past the screen", strings.TrimPrefix(k, "wider: "), right)
		}
	}
	for _, id := range []string{"chart-storage", "chart-gc", "chart-findings"} {
		if narrow[id+".right"] > narrow["viewport"] {
			t.Errorf("at 480 px chart %s ends at %v px, past the screen", id, narrow[id+".right"])
		}
		if narrow[id+".fontPx"] < 10 {
			t.Errorf("at 480 px chart %s draws its text at %.1f px", id, narrow[id+".fontPx"])
		}
	}
	narrowShot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if dir := os.Getenv("REGKEEPER_SCREENSHOT_DIR"); dir != "" {
		os.WriteFile(filepath.Join(dir, "report.png"), shot, 0o644)
		os.WriteFile(filepath.Join(dir, "report-480.png"), narrowShot, 0o644)
	}
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`console.log(`+strconv.Quote(endMark)+`), true`)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ended:
	case <-ctx.Done():
		t.Fatalf("the page's last console message never arrived: %v", ctx.Err())
	}
	stopConsole()
	<-done
	mu.Lock()
	defer mu.Unlock()
	if len(problems) > 0 {
		t.Errorf("console: %v", problems)
	}
	if !strings.Contains(title, d.Registry) {
		t.Errorf("title %q", title)
	}
	for _, id := range []string{"chart-storage", "chart-gc", "chart-findings"} {
		if bars[id] < 2 { // a legend swatch and at least one bar
			t.Errorf("chart %s draws %d rectangles: %v", id, bars[id], bars)
		}
	}
	if *updateScreenshot {
		if err := os.WriteFile(filepath.Join("..", "docs", "report.png"), shot, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join("..", "docs", "report-480.png"), narrowShot, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestImageRuleFindings: the image rules' reasons (which an image without a
// base can have) render in both formats, with what they are about.
func TestImageRuleFindings(t *testing.T) {
	age := 400
	res := &audit.Result{Registry: "r.example.com", Images: []audit.Image{
		{Repository: "team-d/tool", Tag: "latest", Platform: "linux/amd64", ImageAgeDays: &age, Created: "2025-09-27T00:00:00Z", CreatedFrom: audit.FromConfig,
			MissingLabels: []string{"org.opencontainers.image.source"},
			Reasons:       []string{audit.ReasonImageTooOld, audit.ReasonLatestOnly, audit.ReasonMissingLabel}},
	}}
	d := &report.Data{Registry: res.Registry, Generated: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), Inventory: &inventory.Result{}, Audit: res}
	var md, html bytes.Buffer
	if err := d.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	if err := d.WriteHTML(&html); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| image-too-old | team-d/tool:latest | linux/amd64 |  |  |  | built 400d ago (2025-09-27) |",
		"| tag-latest-only | team-d/tool:latest |",
		"| missing-label | team-d/tool:latest | linux/amd64 |  |  |  | lacks org.opencontainers.image.source |",
	} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("markdown lacks %q:\n%s", want, md.String())
		}
	}
	for _, want := range []string{`<td class="reason tag-latest-only">tag-latest-only</td>`, "<td>lacks org.opencontainers.image.source</td>"} {
		if !strings.Contains(html.String(), want) {
			t.Errorf("html lacks %q", want)
		}
	}
}
