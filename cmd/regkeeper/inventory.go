package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/regkeeper/regkeeper/internal/output"
	"github.com/regkeeper/regkeeper/inventory"
)

func newInventoryCmd(g *globalOptions) *cobra.Command {
	var (
		filter    filterOptions
		pf        problemsFlag
		usageFile string
	)
	cmd := &cobra.Command{
		Use:   "inventory REGISTRY",
		Short: "List every repository and tag: digests, platforms, sizes, dates, labels",
		Long: `inventory walks a registry over the v2 API: every repository of its catalog
(every page, whatever page size the registry allows), every tag, and each tag's
manifest, platform manifests and image configs.

SIZE is the compressed bytes a pull of the tag transfers, each blob once.
CREATED is the image config's date as recorded; reproducible builds record
1970-01-01 or nothing. -o json adds labels and annotations.

What is broken in the registry itself (an index whose platform manifests are
absent from its repository, a tag whose manifest is missing, a manifest that
does not parse) is a problem: listed after the table and in the JSON
"problems"; the tag is still listed as far as it can be read (an absent
platform is marked "(absent)"), and the exit code stays 0 unless
--fail-on-problems. A repository or tag that cannot be read (unreachable,
refused, failing after retries) is reported on stderr and in the JSON
"errors", the walk goes on, and the exit code is 1.`,
		Example: `  # every tag of a registry
  regkeeper inventory registry.example.com

  # one team's release tags, as CSV for a spreadsheet
  regkeeper inventory registry.example.com --repo '^team-a/' --tag '^v?[0-9.]+$' -o csv

  # the embedded demo registry (plain HTTP)
  regkeeper inventory 127.0.0.1:5000 --insecure -o json`,
		Args: positional(argRegistry),
		RunE: func(cmd *cobra.Command, argv []string) error {
			repo, tag, err := filter.compile()
			if err != nil {
				return err
			}
			log := g.logger(cmd)
			uf, closeLedger, err := openUsage(usageFile)
			if err != nil {
				return err
			}
			defer closeLedger()
			res, err := inventory.Run(cmd.Context(), argv[0], inventory.Options{
				Client: g.client(log), Repo: repo, Tag: tag,
				Progress: g.reporter(cmd), Logger: log, Usage: uf,
			})
			if err != nil {
				return err
			}
			warnUnmatched(cmd, &filter, res.Selection)
			if err := writeInventory(cmd, g.format(), res); err != nil {
				return err
			}
			if err := writeProblems(cmd, g.format(), res.Problems); err != nil {
				return err
			}
			if err := reportErrors(cmd, res.Errors); err != nil {
				return err
			}
			return pf.check(res.Problems)
		},
	}
	filter.register(cmd)
	pf.register(cmd)
	cmd.Flags().StringVar(&usageFile, "usage", "", "usage ledger file (usage serve's --db, readable while it runs): add lastPulled, pulls30d and inUse per tag")
	g.registerOutput(cmd)
	return cmd
}

func writeInventory(cmd *cobra.Command, f output.Format, res *inventory.Result) error {
	rows := output.Rows{Header: []string{"REPOSITORY", "TAG", "DIGEST", "PLATFORMS", "SIZE", "CREATED"}}
	withUsage := len(res.Images) > 0 && res.Images[0].Usage != nil
	if withUsage {
		rows.Header = append(rows.Header, "LAST PULLED", "PULLS 30D", "IN USE")
	}
	for _, img := range res.Images {
		var plats []string
		for _, p := range img.Platforms {
			switch {
			case p.Absent:
				plats = append(plats, orUnknown(p.Platform)+"(absent)")
			case p.Platform != "":
				plats = append(plats, p.Platform)
			}
		}
		digest, created := img.Digest, img.Created
		if f == output.Table {
			digest = output.ShortDigest(digest)
			created, _, _ = strings.Cut(created, "T")
		}
		cells := []any{img.Repository, img.Tag, digest, strings.Join(plats, " "), bytesCell(f, img.Size), created}
		if withUsage {
			cells = append(cells, usageCells(img.Usage)...)
		}
		rows.Add(cells...)
	}
	if err := output.Write(cmd.OutOrStdout(), f, rows, res); err != nil {
		return err
	}
	if f == output.Table {
		var total int64
		for _, img := range res.Images {
			total += img.Size
		}
		fmt.Fprintf(cmd.OutOrStdout(), "\n%d tags in %d repositories, %s as pulled\n", len(res.Images), countRepos(res), output.Bytes(total))
	}
	return nil
}

func countRepos(res *inventory.Result) int {
	seen := map[string]bool{}
	for _, img := range res.Images {
		seen[img.Repository] = true
	}
	return len(seen)
}

// reportErrors prints each error of a walk on stderr and, if there were
// any, returns errPartial (exit 1).
func reportErrors(cmd *cobra.Command, errs []inventory.Error) error {
	for _, e := range errs {
		where := e.Repository
		if e.Tag != "" {
			where += ":" + e.Tag
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "error: %s: %s\n", where, e.Error)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%d repositories or tags could not be read: %w", len(errs), errPartial)
	}
	return nil
}

func orUnknown(s string) string {
	if s == "" {
		return "(unknown)"
	}
	return s
}
