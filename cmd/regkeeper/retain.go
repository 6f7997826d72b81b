package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/regkeeper/regkeeper/internal/metrics"
	"github.com/regkeeper/regkeeper/internal/output"
	"github.com/regkeeper/regkeeper/retain"
	"github.com/regkeeper/regkeeper/usage"
)

// openEvidence opens the usage ledger given with --usage for retention: the
// ledger's file, or the snapshot usage serve writes beside it while it runs.
// The closer releases the ledger's shared lock (usage serve cannot start
// while a reader holds it).
func openEvidence(path string) (retain.Evidence, func(), error) {
	l, err := usage.Open(path)
	if err != nil {
		return nil, func() {}, err
	}
	return l, func() { l.Close() }, nil
}

func newRetainCmd(g *globalOptions) *cobra.Command {
	var (
		policyFile, explain, maxRemove, journal, undo, usagePath, config, root string
		dryRun, allowStale                                                     bool
		mf                                                                     metricsFlag
	)
	cmd := &cobra.Command{
		Use:   "retain REGISTRY --policy FILE",
		Short: "Untag what a retention policy does not keep, with a plan, a cap, a journal and an undo",
		Long: `retain applies a retention policy: per repository (the first policy whose
globs match), a tag is kept if any keep rule keeps it, and every other tag is
removed through the registry API (DELETE by tag: the tag goes, never the
manifest; other tags on the same digest keep it). The manifests left untagged
are gc's to collect.

Rules: tags (patterns always kept), mostRecentlyPushed N (per groupBy
capture), pushedWithin, semver (majors, minorsPerMajor, patchesPerMinor;
prereleases only while newer than the newest release), pulledWithin,
mostRecentlyPulled and inUse (from the usage ledger, --usage; unknown keeps).
An index is one unit; cosign .sig/.att/.sbom and referrers fallback tags
follow their subject. --policy also reads an ECR lifecycle policy (JSON) and
a zot configuration's storage.retention.

Push time: with --config or --root, the modification time of the tag's
current link; otherwise the image config's created, else its history (1970,
1980 and 0001 are not dates). Each tag says which (pushedFrom).

A real run: plan, then --max-remove (per run and per repository; above it,
exit 1 and nothing removed), then the journal (--journal, synced before any
removal), then the removals. --undo JOURNAL tags every entry again while its
manifest exists. Nothing is removed when a rule needs usage evidence that is
absent or stale (exit 1), unless --allow-stale-usage.`,
		Example: `  # the plan, every tag with the rule that keeps it or why it goes
  regkeeper retain registry.example.com --policy retain.yml --dry-run

  # why team-a/api is judged as it is
  regkeeper retain registry.example.com --policy retain.yml --explain team-a/api

  # remove, at most 10% per repository, push times from storage
  regkeeper retain registry.example.com --policy retain.yml --root /var/lib/registry \
    --max-remove 10% --journal /var/lib/regkeeper/retain-$(date +%F).jsonl

  # put back what a run removed
  regkeeper retain registry.example.com --undo /var/lib/regkeeper/retain-2026-12-06.jsonl`,
		Args: positional(argRegistry),
		RunE: func(cmd *cobra.Command, argv []string) (retErr error) {
			ctx := cmd.Context()
			log := g.logger(cmd)
			host := argv[0]
			if undo != "" {
				if policyFile != "" {
					return usageError("give --undo or --policy, not both")
				}
				return runUndo(cmd, g, host, undo)
			}
			if policyFile == "" {
				return usageError("missing --policy FILE (what to keep)")
			}
			if config != "" && root != "" {
				return usageError("give at most one of --config or --root")
			}
			limit, err := retain.ParseCap(maxRemove)
			if err != nil {
				return usageError("--max-remove: %v", err)
			}
			pol, err := retain.Load(policyFile)
			if err != nil {
				return usageError("%v", err)
			}
			pol.AllowStaleUsage = allowStale
			if explain != "" {
				dryRun = true
			}
			opts := retain.Options{Client: g.client(log), Policy: pol, DryRun: dryRun, MaxRemove: limit, Journal: journal, Logger: log}
			if !dryRun && journal == "" {
				opts.Journal = "regkeeper-retain-" + time.Now().UTC().Format("20060102T150405Z") + ".jsonl"
			}
			if config != "" || root != "" {
				if opts.Storage, err = openStorage(cmd, config, root); err != nil {
					return err
				}
			}
			if usagePath != "" {
				ev, closeLedger, err := openEvidence(usagePath)
				if err != nil {
					return fmt.Errorf("opening the usage ledger %s: %w", usagePath, err)
				}
				defer closeLedger()
				opts.Evidence = ev
			}
			start := time.Now()
			res, err := retain.Run(ctx, host, opts)
			if res == nil {
				return mf.write(nil, "retain", err)
			}
			defer func() {
				set := metrics.New("retain")
				retainMetrics(set, res, time.Since(start))
				retErr = mf.write(set, "retain", retErr)
			}()
			if explain != "" {
				if werr := writeExplain(cmd, g.format(), pol, explain, res); werr != nil {
					return werr
				}
			} else if werr := writeRetain(cmd, g.format(), res); werr != nil {
				return werr
			}
			if werr := writeProblems(cmd, g.format(), res.Problems); werr != nil {
				return werr
			}
			for _, e := range res.Errors {
				fmt.Fprintf(cmd.ErrOrStderr(), "error: %s: %s\n", e.Where(), e.Error)
			}
			if res.Journal != "" {
				fmt.Fprintf(cmd.ErrOrStderr(), "journal: %s (regkeeper retain %s --undo %s puts the tags back)\n", res.Journal, host, res.Journal)
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&policyFile, "policy", "", "the retention policy: regkeeper YAML, an ECR lifecycle policy (JSON) or a zot config with storage.retention")
	f.BoolVar(&dryRun, "dry-run", false, "print the plan, remove nothing")
	f.StringVar(&explain, "explain", "", "say which policy covers this repository and how each of its tags is judged (a dry run)")
	f.StringVar(&maxRemove, "max-remove", "", "refuse a plan that removes more than N tags or P% of the tags, per run or per repository (exit 1, nothing removed)")
	f.StringVar(&journal, "journal", "", "where the removed tags are recorded before removal (default regkeeper-retain-<time>.jsonl)")
	f.StringVar(&undo, "undo", "", "tag every entry of this journal again while its manifest exists")
	f.StringVar(&usagePath, "usage", "", "the usage ledger, for pulledWithin, mostRecentlyPulled and inUse")
	f.BoolVar(&allowStale, "allow-stale-usage", false, "remove even when the usage ledger is absent or stale (tags it cannot judge are kept)")
	f.StringVar(&config, "config", "", "the registry's configuration file: push times and digests from its storage")
	f.StringVar(&root, "root", "", "a filesystem storage root: push times and digests from it")
	mf.register(cmd)
	g.registerOutput(cmd)
	return cmd
}

func writeRetain(cmd *cobra.Command, f output.Format, res *retain.Result) error {
	out := cmd.OutOrStdout()
	if f == output.JSON {
		return output.WriteJSON(out, res)
	}
	if err := output.Write(out, f, retainRows(f, res.Tags), res); err != nil {
		return err
	}
	if f == output.CSV {
		return nil
	}
	verb := "removed"
	if res.DryRun {
		verb = "would remove (dry run)"
	} else if res.Removed > 0 && res.Untagged != res.Removed {
		verb = fmt.Sprintf("removed %d of", res.Untagged)
	}
	fmt.Fprintln(out)
	fmt.Fprintf(out, "kept %d tags, %s %d; gc would then free %s", res.Kept, verb, res.Removed, output.Bytes(res.BytesFreed))
	if res.NotCovered > 0 {
		fmt.Fprintf(out, "; %s no policy covers", countNoun(res.NotCovered, "repository", "repositories"))
	}
	fmt.Fprintln(out)
	for _, r := range res.Repositories {
		fmt.Fprintf(out, "  %s (%s): kept %d, remove %d, %s\n", r.Repository, r.Policy, r.Kept, r.Removed, output.Bytes(r.BytesFreed))
	}
	for _, b := range res.Blocked {
		fmt.Fprintf(out, "blocked: %s\n", b)
	}
	return nil
}

func retainRows(f output.Format, tags []retain.TagPlan) output.Rows {
	rows := output.Rows{Header: []string{"REPOSITORY", "TAG", "DIGEST", "ACTION", "RULE", "REASON", "PUSHED", "FROM"}}
	for _, t := range tags {
		d := t.Digest
		if f == output.Table {
			d = output.ShortDigest(d)
		}
		rows.Add(t.Repository, t.Tag, d, t.Action, t.Rule, t.Reason, t.Pushed, t.PushedFrom)
	}
	return rows
}

func writeExplain(cmd *cobra.Command, f output.Format, pol *retain.Policy, repo string, res *retain.Result) error {
	var tags []retain.TagPlan
	for _, t := range res.Tags {
		if t.Repository == repo {
			tags = append(tags, t)
		}
	}
	rp, ok := pol.Explain(repo)
	out := cmd.OutOrStdout()
	if f == output.JSON {
		v := struct {
			Repository string           `json:"repository"`
			Policy     string           `json:"policy"`
			Rules      []string         `json:"rules"`
			Tags       []retain.TagPlan `json:"tags"`
		}{Repository: repo, Policy: rp.Name, Rules: []string{}, Tags: tags}
		for _, r := range rp.Keep {
			v.Rules = append(v.Rules, ruleLine(r))
		}
		if v.Tags == nil {
			v.Tags = []retain.TagPlan{}
		}
		return output.WriteJSON(out, v)
	}
	if !ok {
		fmt.Fprintf(out, "%s: no policy covers it; retention leaves it untouched\n", repo)
		return nil
	}
	fmt.Fprintf(out, "%s: covered by %s (repositories %s, exclude %s); a tag is kept if any rule keeps it:\n", repo, rp.Name,
		strings.Join(rp.Repositories, ", "), orNoneList(rp.Exclude))
	for _, r := range rp.Keep {
		fmt.Fprintf(out, "  %s\n", ruleLine(r))
	}
	fmt.Fprintln(out)
	return output.Write(out, f, retainRows(f, tags), nil)
}

func ruleLine(r retain.Rule) string {
	if r.From != "" && !strings.Contains(r.Name, r.From) {
		return r.Name + " (from " + r.From + ")"
	}
	return r.Name
}

func orNoneList(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

func runUndo(cmd *cobra.Command, g *globalOptions, host, path string) error {
	log := g.logger(cmd)
	_, entries, err := retain.ReadJournal(path)
	if err != nil {
		return err
	}
	res, err := retain.Undo(cmd.Context(), host, entries, retain.RemoveOptions{Client: g.client(log), Logger: log})
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	f := g.format()
	if f == output.JSON {
		if err := output.WriteJSON(out, res); err != nil {
			return err
		}
	} else {
		rows := output.Rows{Header: []string{"REPOSITORY", "TAG", "DIGEST", "RESULT"}}
		for _, e := range res.Restored {
			rows.Add(e.Repository, e.Tag, e.Digest, "tagged again")
		}
		for _, e := range res.NotRestored {
			rows.Add(e.Repository, e.Tag, e.Digest, "not restored: "+e.Reason)
		}
		if err := output.Write(out, f, rows, nil); err != nil {
			return err
		}
	}
	if len(res.NotRestored) > 0 {
		return fmt.Errorf("%d of %d tags could not be tagged again", len(res.NotRestored), len(entries))
	}
	return nil
}
