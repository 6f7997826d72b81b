package report

import (
	"fmt"
	"html/template"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/regkeeper/regkeeper/audit"
	"github.com/regkeeper/regkeeper/internal/output"
)

// maxChartRows bounds a chart; the rest is summed into one "others" row.
const maxChartRows = 20

// segment is one part of a bar.
type segment struct {
	Value int64
	Class string // CSS class: its colour and legend
}

type bar struct {
	Label    string
	Segments []segment
	Note     string // printed after the bar
	// Total draws no bar, only the label and the note: for the sum of
	// the rows a chart leaves out ("85 others"), which would otherwise be
	// the longest bar by far and shrink the named ones to slivers.
	Total bool
}

// Chart geometry: a chart is drawn for 480 px (a phone held upright) and
// scales with the page (CSS .chart: width 100%, up to 560 px), so it reads
// at 480 px and on a desktop. Each row has its label above its bar, so
// that long repository names take no width from the bars.
const (
	chartW        = 480
	chartBarW     = 300 // the longest bar; its note follows it
	chartRowH     = 34
	chartTop      = 28
	chartFontSize = 12
)

// barChart draws horizontal (stacked) bars as an inline SVG.
func barChart(id, title string, legend map[string]string, bars []bar, unit func(int64) string) template.HTML {
	var maxV int64
	for _, b := range bars {
		if b.Total {
			continue
		}
		var sum int64
		for _, s := range b.Segments {
			sum += s.Value
		}
		maxV = max(maxV, sum)
	}
	h := chartTop + chartRowH*len(bars) + 6
	var sb strings.Builder
	fmt.Fprintf(&sb, `<svg class="chart" id="%s" viewBox="0 0 %d %d" width="%d" height="%d" role="img" aria-label="%s">`,
		id, chartW, h, chartW, h, template.HTMLEscapeString(title))
	x := 0
	for _, class := range sortedKeys(legend) {
		fmt.Fprintf(&sb, `<rect class="%s" x="%d" y="6" width="12" height="12"/><text x="%d" y="16">%s</text>`,
			class, x, x+16, template.HTMLEscapeString(legend[class]))
		x += 28 + 7*len(legend[class])
	}
	for i, b := range bars {
		y := chartTop + i*chartRowH
		label := b.Label
		if len(label) > 64 {
			label = label[:30] + "…" + label[len(label)-30:]
		}
		fmt.Fprintf(&sb, `<text class="label" x="0" y="%d">%s</text>`, y+11, template.HTMLEscapeString(label))
		x := 0.0
		var sum int64
		for _, s := range b.Segments {
			sum += s.Value
			if b.Total {
				continue
			}
			w := 0.0
			if maxV > 0 {
				w = float64(chartBarW) * float64(s.Value) / float64(maxV)
			}
			if s.Value > 0 {
				w = max(w, 1)
			}
			fmt.Fprintf(&sb, `<rect class="%s" x="%.1f" y="%d" width="%.1f" height="%d"><title>%s: %s</title></rect>`,
				s.Class, x, y+15, w, chartRowH-20, template.HTMLEscapeString(b.Label), unit(s.Value))
			x += w
		}
		note := b.Note
		if note == "" {
			note = unit(sum)
		}
		fmt.Fprintf(&sb, `<text class="note" x="%.1f" y="%d">%s</text>`, x+6, y+26, template.HTMLEscapeString(note))
	}
	sb.WriteString(`</svg>`)
	return template.HTML(sb.String()) //nolint:gosec // built from escaped parts
}

// sortedKeys orders a legend by class name.
func sortedKeys(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) }

func countUnit(n int64) string { return fmt.Sprint(n) }

// charts returns the report's charts.
func (d *Data) charts(storage []RepoStorage) (store, reclaim, findings template.HTML) {
	var bars []bar
	others := bar{Total: true, Segments: []segment{{0, "a-unique"}, {0, "b-shared"}}}
	for i, r := range storage {
		if i < maxChartRows {
			bars = append(bars, bar{Label: r.Repository, Segments: []segment{{r.Unique, "a-unique"}, {r.Shared, "b-shared"}}})
			continue
		}
		others.Segments[0].Value += r.Unique
		others.Segments[1].Value += r.Shared
		n := i - maxChartRows + 1
		others.Label = fmt.Sprintf("%d other repositories (in the table below), together:", n)
	}
	if others.Label != "" {
		others.Note = fmt.Sprintf("%s unique, %s shared", output.Bytes(others.Segments[0].Value), output.Bytes(others.Segments[1].Value))
		bars = append(bars, others)
	}
	store = barChart("chart-storage", "Storage by repository", map[string]string{"a-unique": "unique to the repository", "b-shared": "shared with others"}, bars, output.Bytes)

	if d.GC != nil {
		var rb []bar
		rest := bar{Total: true}
		var restBytes int64
		var restRepos, restManifests int
		for _, r := range d.GC.Repositories {
			if r.BytesReclaimed == 0 && r.ManifestsDeleted == 0 {
				continue
			}
			if len(rb) < maxChartRows {
				rb = append(rb, bar{Label: r.Name, Segments: []segment{{r.BytesReclaimed, "c-reclaim"}},
					Note: fmt.Sprintf("%s, %d manifests", output.Bytes(r.BytesReclaimed), r.ManifestsDeleted)})
				continue
			}
			restRepos, restBytes, restManifests = restRepos+1, restBytes+r.BytesReclaimed, restManifests+r.ManifestsDeleted
		}
		if restRepos > 0 {
			rest.Label = fmt.Sprintf("%d other repositories (in the table above), together:", restRepos)
			rest.Note = fmt.Sprintf("%s, %d manifests", output.Bytes(restBytes), restManifests)
			rb = append(rb, rest)
		}
		// Nothing reclaimable draws no chart (an empty frame with a
		// legend); the page says so in words instead.
		if len(rb) > 0 {
			reclaim = barChart("chart-gc", "What gc would reclaim", map[string]string{"c-reclaim": "bytes gc would reclaim"}, rb, output.Bytes)
		}
	}
	if d.Audit != nil {
		var fb []bar
		counts, _ := d.Audit.Counts()
		for _, reason := range audit.Severity {
			fb = append(fb, bar{Label: reason, Segments: []segment{{int64(counts[reason]), "d-finding"}}})
		}
		findings = barChart("chart-findings", "Findings by reason", map[string]string{"d-finding": "images (tag and platform)"}, fb, countUnit)
	}
	return store, reclaim, findings
}

var page = template.Must(template.New("report").Funcs(template.FuncMap{
	"bytes": output.Bytes,
	"add":   func(a, b int) int { return a + b },
	"age": func(p *int) string {
		if p == nil {
			return ""
		}
		return fmt.Sprintf("%dd", *p)
	},
}).Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Registry report: {{.D.Registry}}</title>
<style>
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #1b1f24; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0; } h2 { margin-top: 2em; border-bottom: 1px solid #d0d7de; }
.sub { color: #57606a; }
.totals { display: flex; flex-wrap: wrap; gap: 1em; }
.totals div { border: 1px solid #d0d7de; border-radius: 6px; padding: .6em 1em; min-width: 9em; }
.totals b { display: block; font-size: 1.4em; }
table { border-collapse: collapse; margin: 1em 0; } th, td { padding: .25em .8em; border-bottom: 1px solid #eaeef2; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
.chart { display: block; width: 100%; max-width: 560px; height: auto; margin: 1em 0; }
.chart text { font: 12px system-ui, sans-serif; fill: #1b1f24; } .chart .note { fill: #57606a; }
p, li { overflow-wrap: anywhere; } .wide { overflow-x: auto; } .empty { color: #57606a; font-style: italic; }
@media (max-width: 600px) { body { margin: 1em auto; font-size: 13px; } th, td { padding: .2em .4em; } }
.a-unique { fill: #0969da; } .b-shared { fill: #8cc4ff; } .c-reclaim { fill: #cf222e; } .d-finding { fill: #bf8700; }
.reason { font-weight: 600; } .base-banned, .base-not-allowed { color: #cf222e; } .base-outdated, .base-too-old { color: #9a6700; }
pre { background: #f6f8fa; padding: 1em; overflow-x: auto; }
</style>
</head>
<body>
<h1>Registry report: {{.D.Registry}}</h1>
<p class="sub">Generated {{.D.Generated.UTC.Format "2006-01-02 15:04 MST"}} by regkeeper.</p>

<h2>Totals</h2>
<div class="totals">
<div><b>{{.T.Repositories}}</b>repositories</div>
<div><b>{{.T.Tags}}</b>tags</div>
<div><b>{{bytes .T.StoredBytes}}</b>stored (configs and layers, each once)</div>
<div><b>{{bytes .T.PulledBytes}}</b>pulled (sum over tags)</div>
<div><b>{{.T.Findings}}</b>images with audit findings (of {{.T.Images}})</div>
{{if ge .T.Reclaimable 0}}<div><b>{{bytes .T.Reclaimable}}</b>gc would reclaim</div>{{end}}
</div>

<h2>Storage by repository</h2>
{{.Store}}
<div class="wide"><table>
<tr><th>repository</th><th>tags</th><th>unique</th><th>shared</th>{{if ge .T.Reclaimable 0}}<th>gc would reclaim</th>{{end}}</tr>
{{range .S}}<tr><td>{{.Repository}}</td><td class="n">{{.Tags}}</td><td class="n">{{bytes .Unique}}</td><td class="n">{{bytes .Shared}}</td>{{if ge $.T.Reclaimable 0}}<td class="n">{{bytes .Reclaimable}}</td>{{end}}</tr>
{{end}}</table></div>

<h2>What gc would reclaim</h2>
{{if .D.GC}}{{if .Reclaim}}{{.Reclaim}}{{else}}<p class="empty" id="gc-nothing">Nothing to reclaim: every manifest is reachable from a tag and every blob is referenced (what was written within gc's <code>--grace</code> window does not count).</p>{{end}}
<p>{{.D.GC.ManifestsDeleted}} untagged manifests, {{.D.GC.BlobsDeleted}} blobs, {{bytes .D.GC.BytesReclaimed}} (a dry run of <code>regkeeper gc</code> on the registry's storage).</p>
{{with .D.GC.GraceNote}}<p>{{.}}</p>{{end}}
{{else}}<p>Not computed: give <code>--config</code> with the registry's configuration file.</p>{{end}}
{{with .D.Retain}}
<h2 id="retain">What retention would remove</h2>
<p>{{.Removed}} of {{add .Kept .Removed}} tags in the repositories a retention policy covers{{if .DryRun}} would be removed{{else}} were removed{{end}}; gc then frees {{bytes .BytesFreed}} (blobs only those tags held).</p>
{{if .Repositories}}<div class="wide"><table>
<tr><th>repository</th><th>policy</th><th>kept</th><th>removed</th><th>gc then frees</th></tr>
{{range .Repositories}}<tr><td>{{.Repository}}</td><td>{{.Policy}}</td><td class="n">{{.Kept}}</td><td class="n">{{.Removed}}</td><td class="n">{{bytes .BytesFreed}}</td></tr>
{{end}}</table></div>{{end}}
{{end}}

<h2>Audit findings, worst first</h2>
{{.Findings}}
{{if .F}}<div class="wide"><table>
<tr><th>finding</th><th>image</th><th>platform</th><th>base</th><th>base age</th><th>detected by</th><th>detail</th></tr>
{{range .F}}<tr><td class="reason {{.Reason}}">{{.Reason}}</td><td>{{.Image.Repository}}:{{.Image.Tag}}</td><td>{{.Image.Platform}}</td><td>{{.Image.Base.Name}}</td><td class="n">{{age .Image.BaseAgeDays}}</td><td>{{with .Image.Base}}{{.DetectedBy}} ({{.Confidence}}){{end}}</td><td>{{.Detail}}{{with .Use}} ({{.}}){{end}}</td></tr>
{{end}}</table></div>{{else}}<p>No findings.</p>{{end}}
{{with .D.Audit}}<p class="sub">{{.Summary}}</p>{{range .Warnings}}<p>warning: {{.Message}}</p>{{end}}{{end}}

<h2>Base-image lineage</h2>
<pre>{{.Lineage}}</pre>
{{with .D.Problems}}
<h2>Problems in the registry</h2>
<p>Broken in the registry itself, found and walked past (not failures of this run).</p>
<div class="wide"><table>
<tr><th>image</th><th>kind</th><th>digest</th><th>what is wrong</th></tr>
{{range .}}<tr><td>{{.Where}}</td><td>{{.Kind}}</td><td><code>{{.Digest}}</code></td><td>{{.Message}}</td></tr>
{{end}}</table></div>
{{end}}
{{if .D.Inventory.Errors}}
<h2>Could not be read</h2>
<ul>{{range .D.Inventory.Errors}}<li>{{.Repository}}{{if .Tag}}:{{.Tag}}{{end}}: {{.Error}}</li>{{end}}</ul>
{{end}}
</body>
</html>
`))

// WriteHTML writes the report as one self-contained HTML page.
func (d *Data) WriteHTML(w io.Writer) error {
	storage, totals := d.Storage()
	store, reclaim, findings := d.charts(storage)
	var lineage strings.Builder
	if d.Audit != nil {
		if err := audit.WriteTree(&lineage, d.Audit.Lineage()); err != nil {
			return err
		}
	}
	return page.Execute(w, map[string]any{
		"D": d, "T": totals, "S": storage, "F": d.Findings(),
		"Store": store, "Reclaim": reclaim, "Findings": findings, "Lineage": lineage.String(),
	})
}

// WriteMarkdown writes the same report as Markdown tables.
func (d *Data) WriteMarkdown(w io.Writer) error {
	storage, t := d.Storage()
	p := func(format string, a ...any) { fmt.Fprintf(w, format, a...) }
	p("# Registry report: %s\n\nGenerated %s by regkeeper.\n\n", d.Registry, d.Generated.UTC().Format("2006-01-02 15:04 MST"))
	p("## Totals\n\n| | |\n|---|---:|\n| repositories | %d |\n| tags | %d |\n| stored (configs and layers, each once) | %s |\n| pulled (sum over tags) | %s |\n| images with audit findings | %d of %d |\n",
		t.Repositories, t.Tags, output.Bytes(t.StoredBytes), output.Bytes(t.PulledBytes), t.Findings, t.Images)
	if t.Reclaimable >= 0 {
		p("| gc would reclaim | %s |\n", output.Bytes(t.Reclaimable))
	}
	p("\n## Storage by repository\n\n| repository | tags | unique | shared |")
	if t.Reclaimable >= 0 {
		p(" gc would reclaim |\n|---|---:|---:|---:|---:|\n")
	} else {
		p("\n|---|---:|---:|---:|\n")
	}
	for _, r := range storage {
		p("| %s | %d | %s | %s |", output.MarkdownEscape(r.Repository), r.Tags, output.Bytes(r.Unique), output.Bytes(r.Shared))
		if t.Reclaimable >= 0 {
			p(" %s |", output.Bytes(r.Reclaimable))
		}
		p("\n")
	}
	if d.GC != nil && d.GC.GraceNote() != "" {
		p("\n%s\n", output.MarkdownEscape(d.GC.GraceNote()))
	}
	if r := d.Retain; r != nil {
		p("\n## What retention would remove\n\n%d of %d tags in the repositories a retention policy covers; gc then frees %s.\n\n", r.Removed, r.Kept+r.Removed, output.Bytes(r.BytesFreed))
		if len(r.Repositories) > 0 {
			p("| repository | policy | kept | removed | gc then frees |\n|---|---|---:|---:|---:|\n")
			for _, rp := range r.Repositories {
				p("| %s | %s | %d | %d | %s |\n", output.MarkdownEscape(rp.Repository), output.MarkdownEscape(rp.Policy), rp.Kept, rp.Removed, output.Bytes(rp.BytesFreed))
			}
		}
	}
	p("\n## Audit findings, worst first\n\n")
	if fs := d.Findings(); len(fs) > 0 {
		p("| finding | image | platform | base | base age | detected by | detail |\n|---|---|---|---|---:|---|---|\n")
		for _, f := range fs {
			age, by := "", ""
			if f.Image.BaseAgeDays != nil {
				age = fmt.Sprintf("%dd", *f.Image.BaseAgeDays)
			}
			if b := f.Image.Base; b != nil {
				by = b.DetectedBy + " (" + b.Confidence + ")"
			}
			p("| %s | %s:%s | %s | %s | %s | %s | %s |\n", f.Reason, output.MarkdownEscape(f.Image.Repository), output.MarkdownEscape(f.Image.Tag),
				f.Image.Platform, output.MarkdownEscape(f.Image.Base.Name()), age, by, output.MarkdownEscape(detailWithUse(f)))
		}
	} else {
		p("No findings.\n")
	}
	if d.Audit != nil {
		// What was not judged, and the patterns that matched nothing.
		p("\n%s\n", output.MarkdownEscape(d.Audit.Summary()))
		for _, w := range d.Audit.Warnings {
			p("\nwarning: %s\n", output.MarkdownEscape(w.Message))
		}
	}
	if ps := d.Problems(); len(ps) > 0 {
		p("\n## Problems in the registry\n\nBroken in the registry itself, found and walked past (not failures of this run).\n\n| image | kind | digest | what is wrong |\n|---|---|---|---|\n")
		for _, pr := range ps {
			p("| %s | %s | `%s` | %s |\n", output.MarkdownEscape(pr.Where()), pr.Kind, pr.Digest, output.MarkdownEscape(pr.Message))
		}
	}
	if d.Audit != nil {
		p("\n## Base-image lineage\n\n```\n")
		if err := audit.WriteTree(w, d.Audit.Lineage()); err != nil {
			return err
		}
		p("```\n")
	}
	return nil
}

// detailWithUse is a finding's detail, followed by how much its image is
// used when the audit read a usage ledger.
func detailWithUse(f audit.Finding) string {
	if f.Use == "" {
		return f.Detail()
	}
	return f.Detail() + " (" + f.Use + ")"
}
