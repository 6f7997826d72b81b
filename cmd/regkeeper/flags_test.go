package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/regkeeper/regkeeper/internal/duration"
	"github.com/regkeeper/regkeeper/internal/testbed/embedded"
	"github.com/regkeeper/regkeeper/internal/testbed/regtest"
)

// Bad input is a usage error (exit 2) that says what is wrong.
func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		argv []string
		msg  string
	}{
		{[]string{"backup", "127.0.0.1:1"}, "regkeeper backup: missing DIR (where the backup goes)"},
		{[]string{"backup"}, "regkeeper backup: missing REGISTRY (the registry's host, e.g. registry.example.com or 127.0.0.1:5000) and DIR (where the backup goes)"},
		{[]string{"restore", "/tmp/bk"}, "regkeeper restore: missing REGISTRY (the registry to push to)"},
		{[]string{"verify"}, "regkeeper verify: missing DIR (the backup to verify)"},
		{[]string{"inventory"}, "regkeeper inventory: missing REGISTRY"},
		{[]string{"audit"}, "regkeeper audit: missing REGISTRY"},
		{[]string{"cycle"}, "regkeeper cycle: missing REGISTRY"},
		{[]string{"report"}, "regkeeper report: missing REGISTRY"},
		{[]string{"verify", "a", "b"}, `unexpected argument "b" (verify takes DIR)`},
		{[]string{"gc", "extra"}, `unexpected argument "extra" (gc takes no arguments)`},
		// every duration flag takes the same units
		{[]string{"gc", "--grace", "soon"}, `invalid argument "soon" for "--grace"`},
		{[]string{"gc", "--grace", "7d"}, "give exactly one of --config or --root"},
		{[]string{"gc", "--stale-lock", "2d", "--uploads-older-than", "1w"}, "give exactly one of --config or --root"},
		{[]string{"report", "127.0.0.1:1", "--grace", "7d", "--config", "a", "--root", "b"}, "give at most one of --config or --root"},
		{[]string{"audit", "127.0.0.1:1", "--max-base-age", "soon"}, "--max-base-age"},
		// report formats
		{[]string{"report", "127.0.0.1:1", "-o", "table"}, `report writes html or markdown, not "table"`},
		{[]string{"report", "127.0.0.1:1", "-o", "json"}, `report writes html or markdown, not "json"`},
		{[]string{"report", "127.0.0.1:1", "--out", "r.txt"}, `cannot tell the format from ".txt"`},
		{[]string{"inventory", "127.0.0.1:1", "-o", "html"}, "unknown output format"},
		{[]string{"demo", "-o", "json"}, "unknown shorthand flag: 'o'"},
		{[]string{"audit", "127.0.0.1:1", "--tree", "-o", "json"}, "--tree prints a text tree; it takes no -o json"},
	} {
		code, _, stderr := runCLI(t, tc.argv...)
		if code != exitUsage || !strings.Contains(stderr, tc.msg) {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 mentioning %q", tc.argv, code, stderr, tc.msg)
		}
	}
}

// eachCommand calls fn for every command of the tree.
func eachCommand(c *cobra.Command, fn func(*cobra.Command)) {
	fn(c)
	for _, sub := range c.Commands() {
		eachCommand(sub, fn)
	}
}

// Every duration flag of every command goes through the one parser, so
// that --grace 7d works wherever --max-base-age 7d does.
func TestDurationFlagsShareOneParser(t *testing.T) {
	n := 0
	eachCommand(newRootCmd(), func(c *cobra.Command) {
		c.Flags().VisitAll(func(f *pflag.Flag) {
			if f.Value.Type() != "duration" {
				return
			}
			n++
			if _, ok := f.Value.(*duration.Value); !ok {
				t.Errorf("%s --%s is a %T, not the shared duration.Value", c.CommandPath(), f.Name, f.Value)
			}
			if err := f.Value.Set("7d"); err != nil {
				t.Errorf("%s --%s 7d: %v", c.CommandPath(), f.Name, err)
			}
		})
	})
	if n < 7 { // gc's and cycle's three, report's --grace
		t.Errorf("only %d duration flags found", n)
	}
}

// -o offers, in each command's help, only the formats that command writes.
func TestOutputFlagHelp(t *testing.T) {
	eachCommand(newRootCmd(), func(c *cobra.Command) {
		f := c.Flags().Lookup("output")
		if c.PersistentFlags().Lookup("output") != nil {
			t.Errorf("%s: -o is persistent; its help cannot fit every command", c.CommandPath())
		}
		switch {
		case f == nil:
		case c.Name() == "report":
			if !strings.Contains(f.Usage, "html or markdown") || strings.Contains(f.Usage, "json") || strings.Contains(f.Usage, "table") {
				t.Errorf("report -o help: %q", f.Usage)
			}
		default:
			if strings.Contains(f.Usage, "html") {
				t.Errorf("%s -o help offers html: %q", c.CommandPath(), f.Usage)
			}
		}
	})
}

func TestReportFormat(t *testing.T) {
	for _, tc := range []struct {
		o, out   string
		markdown bool
		bad      bool
	}{
		{"", "", false, false},
		{"html", "", false, false},
		{"markdown", "", true, false},
		{"md", "r.html", true, false}, // -o wins
		{"", "r.md", true, false},
		{"", "R.MARKDOWN", true, false},
		{"", "r.html", false, false},
		{"", "r.htm", false, false},
		{"", "r", false, true},
		{"", "r.txt", false, true},
		{"table", "", false, true},
		{"csv", "r.md", false, true},
	} {
		md, err := reportFormat(tc.o, tc.out)
		if (err != nil) != tc.bad || (err == nil && md != tc.markdown) {
			t.Errorf("reportFormat(%q, %q) = %v, %v", tc.o, tc.out, md, err)
		}
	}
}

// --out r.md writes Markdown, --out r.html HTML, with no -o.
func TestReportFormatFromExtension(t *testing.T) {
	srv, _ := regtest.Seeded(t, embedded.Options{})
	dir := t.TempDir()
	for file, prefix := range map[string]string{"r.md": "# Registry report: ", "r.html": "<!doctype html>"} {
		path := filepath.Join(dir, file)
		code, _, stderr := runCLI(t, "report", srv.Host, "--insecure", "--repo", "^team-", "--out", path)
		if code != 0 {
			t.Fatalf("report --out %s: exit %d: %s", file, code, stderr)
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(strings.TrimSpace(string(raw)), prefix) {
			t.Errorf("--out %s starts %q, want %q", file, string(raw[:min(len(raw), 40)]), prefix)
		}
	}
}
