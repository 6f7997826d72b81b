// Package output renders command results as a table, JSON, CSV or Markdown.
// Commands build a Table (header and string rows) for the tabular formats and
// hand their typed result to JSON, so that the JSON field names stay the
// contract the README documents.
package output

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// Format is an output format.
type Format string

// The formats every command accepts with -o.
const (
	Table    Format = "table"
	JSON     Format = "json"
	CSV      Format = "csv"
	Markdown Format = "markdown"
)

// Formats lists the accepted values of -o, for help texts.
var Formats = []Format{Table, JSON, CSV, Markdown}

// ParseFormat validates an -o value. "md" is accepted for markdown.
func ParseFormat(s string) (Format, error) {
	switch strings.ToLower(s) {
	case "", "table":
		return Table, nil
	case "json":
		return JSON, nil
	case "csv":
		return CSV, nil
	case "markdown", "md":
		return Markdown, nil
	}
	return "", fmt.Errorf("unknown output format %q: want table, json, csv or markdown", s)
}

// Rows is tabular data: a header and rows of cells, all strings.
type Rows struct {
	Header []string
	Rows   [][]string
}

// Add appends a row; values are formatted with %v.
func (r *Rows) Add(cells ...any) {
	row := make([]string, len(cells))
	for i, c := range cells {
		row[i] = fmt.Sprint(c)
	}
	r.Rows = append(r.Rows, row)
}

// WriteJSON writes v as indented JSON followed by a newline.
func WriteJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// Write renders rows in a tabular format; for JSON, it writes v instead.
func Write(w io.Writer, f Format, rows Rows, v any) error {
	switch f {
	case JSON:
		return WriteJSON(w, v)
	case CSV:
		cw := csv.NewWriter(w)
		if err := cw.Write(rows.Header); err != nil {
			return err
		}
		if err := cw.WriteAll(rows.Rows); err != nil {
			return err
		}
		cw.Flush()
		return cw.Error()
	case Markdown:
		return writeMarkdown(w, rows)
	default:
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, strings.Join(rows.Header, "\t"))
		for _, r := range rows.Rows {
			fmt.Fprintln(tw, strings.Join(r, "\t"))
		}
		return tw.Flush()
	}
}

func writeMarkdown(w io.Writer, rows Rows) error {
	var b strings.Builder
	line := func(cells []string) {
		b.WriteString("|")
		for _, c := range cells {
			b.WriteString(" ")
			b.WriteString(MarkdownEscape(c))
			b.WriteString(" |")
		}
		b.WriteString("\n")
	}
	line(rows.Header)
	b.WriteString("|")
	for range rows.Header {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, r := range rows.Rows {
		line(r)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// MarkdownEscape makes s safe inside a Markdown table cell.
func MarkdownEscape(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	return strings.ReplaceAll(s, "\n", " ")
}

// Bytes formats a byte count for people: 1.5 MiB.
func Bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// ShortDigest shortens "sha256:abcdef..." to "sha256:abcdef012345" for tables.
func ShortDigest(d string) string {
	if i := strings.IndexByte(d, ':'); i >= 0 && len(d) > i+13 {
		return d[:i+13]
	}
	return d
}
