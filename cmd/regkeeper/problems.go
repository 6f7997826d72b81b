package main

import (
	"fmt"
	"regexp"

	"github.com/spf13/cobra"

	"github.com/regkeeper/regkeeper/internal/output"
	"github.com/regkeeper/regkeeper/internal/patterns"
	"github.com/regkeeper/regkeeper/internal/walk"
)

// problemsFlag is --fail-on-problems, on every command that walks a
// registry (inventory, audit, backup, report, cycle).
type problemsFlag struct{ fail bool }

func (p *problemsFlag) register(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&p.fail, "fail-on-problems", false,
		"exit 1 when the registry has problems (an index whose children are absent, a missing or corrupt manifest); by default they are reported and do not change the exit code")
}

// check returns an error (exit 1) when --fail-on-problems is given and
// there are problems; they have been written already.
func (p *problemsFlag) check(ps []walk.Problem) error {
	if !p.fail || len(ps) == 0 {
		return nil
	}
	return fmt.Errorf("%s in the registry (--fail-on-problems): %w", problemCount(len(ps)), errPartial)
}

// writeProblems writes what is broken in the registry after a command's
// own output: a section on stdout for table and Markdown, lines on stderr
// for CSV (stdout stays one CSV document). JSON has them in "problems".
func writeProblems(cmd *cobra.Command, f output.Format, ps []walk.Problem) error {
	if len(ps) == 0 {
		return nil
	}
	switch f {
	case output.JSON:
		return nil
	case output.CSV:
		for _, p := range ps {
			fmt.Fprintf(cmd.ErrOrStderr(), "problem: %s: %s: %s\n", p.Where(), p.Kind, p.Message)
		}
		return nil
	}
	out := cmd.OutOrStdout()
	rows := output.Rows{Header: []string{"IMAGE", "KIND", "DIGEST", "WHAT IS WRONG"}}
	for _, p := range ps {
		d := p.Digest
		if f == output.Table {
			d = output.ShortDigest(d)
		}
		rows.Add(p.Where(), p.Kind, d, p.Message)
	}
	if f == output.Markdown {
		fmt.Fprintf(out, "\n## Problems in the registry\n\n")
	} else {
		fmt.Fprintf(out, "\n%s in the registry (found and walked past; --fail-on-problems makes them fail the run):\n", problemCount(len(ps)))
	}
	return output.Write(out, f, rows, nil)
}

// warnUnmatched says on stderr when --repo or --tag selected nothing, so
// that a typo that backs up nothing does not look like success.
func warnUnmatched(cmd *cobra.Command, filter *filterOptions, s walk.Selection) {
	for _, w := range filterWarnings(filter, s) {
		fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s\n", w.Message)
	}
}

// filterWarnings are the warnings for a --repo or --tag that selected
// nothing (audit lists them with its own, under warnings in its JSON).
func filterWarnings(filter *filterOptions, s walk.Selection) []patterns.Warning {
	switch {
	case filter.repo != "" && s.MatchedRepositories == 0:
		return []patterns.Warning{patterns.UnmatchedWarning("--repo", filter.repo, fmt.Sprintf("the %d repositories of the registry", s.Repositories))}
	case filter.tag != "" && s.MatchedTags == 0:
		return []patterns.Warning{patterns.UnmatchedWarning("--tag", filter.tag, fmt.Sprintf("the %d tags in the %d repositories selected", s.Tags, s.MatchedRepositories))}
	}
	return nil
}

// selection counts what the filters select of a listing of every
// repository and its tags (an inventory of the whole registry).
func selection(listed map[string][]string, repo, tag *regexp.Regexp) walk.Selection {
	s := walk.Selection{Repositories: len(listed)}
	for r, tags := range listed {
		if repo != nil && !repo.MatchString(r) {
			continue
		}
		s.MatchedRepositories++
		s.Tags += len(tags)
		for _, t := range tags {
			if tag == nil || tag.MatchString(t) {
				s.MatchedTags++
			}
		}
	}
	return s
}

func problemCount(n int) string {
	if n == 1 {
		return "1 problem"
	}
	return fmt.Sprintf("%d problems", n)
}
