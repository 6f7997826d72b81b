package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/regkeeper/regkeeper/audit"
	"github.com/regkeeper/regkeeper/gc"
	"github.com/regkeeper/regkeeper/internal/duration"
	"github.com/regkeeper/regkeeper/report"
)

func newReportCmd(g *globalOptions) *cobra.Command {
	var (
		filter       filterOptions
		af           auditFlags
		config, root string
		out          string
		format       string // -o: report has its own formats
		grace        = gc.DefaultOptions().Grace
		pf           problemsFlag
		uf           usageFlag
	)
	cmd := &cobra.Command{
		Use:   "report REGISTRY [--config registry.yml] [-o html|markdown] [--out FILE]",
		Short: "One self-contained audit report: totals, storage, what gc would reclaim, findings, lineage",
		Long: `report inventories and audits a registry and writes one report for a security
review: registry totals; storage by repository, unique and shared bytes, as a
chart; with --config (or --root), what gc would reclaim per repository (a dry
run on the registry's storage, nothing deleted); the audit findings, worst
first; and the base-image lineage.

What is broken in the registry itself (an index whose platform manifests are
absent, a missing or unparseable manifest) has its own section; it does not
change the exit code unless --fail-on-problems.

-o html (the default) is one self-contained page: inline styles and SVG
charts, no scripts, nothing fetched from the network. -o markdown carries the
same tables. The policy flags are audit's.`,
		Example: `  # the weekly report, with what gc would reclaim
  regkeeper report registry.example.com --config /etc/docker/registry/config.yml --out report.html

  # Markdown for a wiki page
  regkeeper report registry.example.com --policy policy.yaml -o markdown > report.md`,
		Annotations: map[string]string{ownOutput: "html|markdown"},
		Args:        positional(argRegistry),
		RunE: func(cmd *cobra.Command, argv []string) error {
			markdown, err := reportFormat(format, out)
			if err != nil {
				return err
			}
			if config != "" && root != "" {
				return usageError("give at most one of --config or --root")
			}
			ao, err := auditOptions(g, cmd, &filter, &af)
			if err != nil {
				return err
			}
			closeLedger, err := uf.apply(&ao)
			if err != nil {
				return err
			}
			defer closeLedger()
			ctx := cmd.Context()
			log := ao.Inventory.Logger
			res, err := audit.Run(ctx, argv[0], ao)
			if err != nil {
				return err
			}
			res.Warnings = append(filterWarnings(&filter, selection(res.Inventory.Listed, ao.Inventory.Repo, ao.Inventory.Tag)), res.Warnings...)
			warnAudit(cmd, res)
			d := &report.Data{Registry: res.Registry, Generated: time.Now(), Audit: res, Inventory: res.Inventory}
			if config != "" || root != "" {
				drv, err := openStorage(cmd, config, root)
				if err != nil {
					return err
				}
				opts := gc.DefaultOptions()
				opts.DryRun, opts.Jobs, opts.Logger, opts.Grace = true, g.jobs, log, grace
				if d.GC, err = gc.Run(ctx, drv, opts); err != nil {
					return fmt.Errorf("gc dry run: %w", err)
				}
			}
			var buf bytes.Buffer
			if markdown {
				err = d.WriteMarkdown(&buf)
			} else {
				err = d.WriteHTML(&buf)
			}
			if err != nil {
				return err
			}
			if out == "" {
				_, err = cmd.OutOrStdout().Write(buf.Bytes())
			} else {
				err = writeFileAtomic(out, buf.Bytes())
			}
			if err != nil {
				return err
			}
			if err := reportErrors(cmd, res.Errors); err != nil {
				return err
			}
			return pf.check(res.Problems)
		},
	}
	filter.register(cmd)
	af.register(cmd)
	pf.register(cmd)
	uf.register(cmd)
	f := cmd.Flags()
	f.StringVar(&config, "config", "", "the registry's configuration file, to report what gc would reclaim")
	f.StringVar(&root, "root", "", "or a filesystem storage root")
	duration.Var(f, &grace, "grace", "as gc --grace: what was written this recently does not count as reclaimable")
	f.StringVar(&out, "out", "", "write the report to this file (atomically) instead of stdout; .html or .md chooses the format")
	f.StringVarP(&format, "output", "o", "", "report format: html or markdown (default: from --out's extension, else html)")
	return cmd
}

// reportFormat says whether the report is Markdown (else HTML): -o when
// given, else the extension of --out, else HTML. A format report cannot
// write, or an extension it does not know, is a usage error: a report must
// not silently come out in another format than the one asked for.
func reportFormat(o, out string) (markdown bool, err error) {
	switch strings.ToLower(o) {
	case "html":
		return false, nil
	case "markdown", "md":
		return true, nil
	case "":
	default:
		return false, usageError("-o: report writes html or markdown, not %q", o)
	}
	if out == "" {
		return false, nil
	}
	switch ext := strings.ToLower(filepath.Ext(out)); ext {
	case ".html", ".htm":
		return false, nil
	case ".md", ".markdown":
		return true, nil
	default:
		return false, usageError("--out %s: cannot tell the format from %q; name the file .html or .md, or give -o html or -o markdown", out, ext)
	}
}

// writeFileAtomic writes data to a temporary file beside path and renames it
// into place, so that a reader never sees half a file.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
