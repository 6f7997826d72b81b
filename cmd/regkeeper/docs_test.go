package main

import (
	"bytes"
	"flag"
	"os"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

var updateDocs = flag.Bool("update", false, "rewrite docs/cli.md from the command tree")

// cliDocs renders every command's help, from the real cobra tree, as one
// Markdown page: the reference the README links to.
func cliDocs(t *testing.T) []byte {
	t.Helper()
	root := newRootCmd()
	root.DisableAutoGenTag = true
	var buf bytes.Buffer
	buf.WriteString("# regkeeper command reference\n\n" +
		"<!-- Generated from the command tree by `go generate ./cmd/regkeeper`\n" +
		"     (go test ./cmd/regkeeper -run TestCLIDocs -update); do not edit. -->\n\n")
	var cmds []*cobra.Command
	eachCommand(root, func(c *cobra.Command) {
		if c.IsAvailableCommand() || c == root {
			cmds = append(cmds, c)
		}
	})
	for _, c := range cmds {
		buf.WriteString("- [" + c.CommandPath() + "](#" + anchor(c.CommandPath()) + ")\n")
	}
	buf.WriteString("\n")
	link := func(name string) string { // regkeeper_backup.md -> #regkeeper-backup
		return "#" + anchor(strings.ReplaceAll(strings.TrimSuffix(name, ".md"), "_", " "))
	}
	for _, c := range cmds {
		c.DisableAutoGenTag = true
		if err := doc.GenMarkdownCustom(c, &buf, link); err != nil {
			t.Fatal(err)
		}
		buf.WriteString("\n")
	}
	return bytes.TrimRight(buf.Bytes(), "\n")
}

func anchor(s string) string { return strings.ReplaceAll(strings.ToLower(s), " ", "-") }

// docs/cli.md is what the command tree says; a flag added without
// regenerating it fails here.
func TestCLIDocs(t *testing.T) {
	const path = "../../docs/cli.md"
	want := append(cliDocs(t), '\n')
	if *updateDocs {
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go generate ./cmd/regkeeper)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("docs/cli.md is stale: run go generate ./cmd/regkeeper (go test ./cmd/regkeeper -run TestCLIDocs -update)")
	}
}
