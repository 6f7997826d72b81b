package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/regkeeper/regkeeper/audit"
	"github.com/regkeeper/regkeeper/internal/metrics"
	"github.com/regkeeper/regkeeper/internal/output"
	"github.com/regkeeper/regkeeper/inventory"
)

// auditFlags are the policy flags, shared with cycle and report.
type auditFlags struct {
	policyFile    string
	maxAge        string
	ban, allow    []string
	maxImageAge   string
	latestOnly    bool
	requireLabels []string
	requireSig    bool
	requireSBOM   bool
	aliases       []string
	exitCode      int

	flags *pflag.FlagSet // to tell a flag given from its default
}

func (a *auditFlags) register(cmd *cobra.Command) {
	f := cmd.Flags()
	a.flags = f
	f.StringVar(&a.policyFile, "policy", "", "YAML policy file (maxBaseAge, ban, allow, maxImageAge, tagLatestOnly, requireLabels, requireSignature, requireSBOM); flags add to it")
	f.StringVar(&a.maxAge, "max-base-age", "", "report bases older than this: 180d, 26w, 4320h (default 180d; 0 disables)")
	f.StringArrayVar(&a.ban, "ban", nil, "report bases matching this pattern (repeatable): repo glob, repo:tag glob or digest")
	f.StringArrayVar(&a.allow, "allow", nil, "report bases matching none of these patterns (repeatable)")
	f.StringVar(&a.maxImageAge, "max-image-age", "", "report images built longer ago than this (image-too-old), and images with no date (image-undated): 90d, 13w, 2160h (default off)")
	f.BoolVar(&a.latestOnly, "tag-latest-only", true, "report images that no tag but latest names (--tag-latest-only=false turns it off)")
	f.StringArrayVar(&a.requireLabels, "require-label", nil, "report images whose config lacks this label (repeatable), e.g. org.opencontainers.image.revision")
	f.BoolVar(&a.requireSig, "require-signature", false, "report images with no signature attached (OCI referrer or cosign .sig tag)")
	f.StringArrayVar(&a.aliases, "registry-alias", nil, "another name of the registry (HOST[:PORT], repeatable): a base named with it is this registry's")
	f.BoolVar(&a.requireSBOM, "require-sbom", false, "report images with no SBOM attached (OCI referrer, cosign .sbom tag, or an SPDX/CycloneDX attestation)")
}

// changed reports whether a flag was given on the command line.
func (a *auditFlags) changed(name string) bool { return a.flags != nil && a.flags.Changed(name) }

// policy builds the policy: the defaults, then the file, then the flags on
// top (a boolean flag given as =false turns off what the file turned on).
func (a *auditFlags) policy() (audit.Policy, error) {
	pol := audit.DefaultPolicy()
	if a.policyFile != "" {
		var err error
		if pol, err = audit.LoadPolicy(a.policyFile); err != nil {
			return pol, usageError("%v", err)
		}
	}
	if a.maxAge != "" {
		d, err := audit.ParseAge(a.maxAge)
		if err != nil {
			return pol, usageError("--max-base-age: %v", err)
		}
		pol.MaxBaseAge = d
	}
	if a.maxImageAge != "" {
		d, err := audit.ParseAge(a.maxImageAge)
		if err != nil {
			return pol, usageError("--max-image-age: %v", err)
		}
		pol.MaxImageAge = d
	}
	if a.changed("tag-latest-only") {
		pol.TagLatestOnly = a.latestOnly
	}
	if a.changed("require-signature") {
		pol.RequireSignature = a.requireSig
	}
	if a.changed("require-sbom") {
		pol.RequireSBOM = a.requireSBOM
	}
	for _, l := range a.requireLabels {
		if l = strings.TrimSpace(l); l == "" {
			return pol, usageError("--require-label: empty label key")
		}
		pol.RequireLabels = append(pol.RequireLabels, l)
	}
	for _, h := range a.aliases {
		if h = strings.TrimSpace(h); h == "" || strings.ContainsAny(h, "/ ") {
			return pol, usageError("--registry-alias: want a HOST[:PORT], got %q", h)
		}
		pol.RegistryAliases = append(pol.RegistryAliases, h)
	}
	for _, list := range []struct {
		flag string
		in   []string
		out  *[]audit.Pattern
	}{{"--ban", a.ban, &pol.Ban}, {"--allow", a.allow, &pol.Allow}} {
		for _, s := range list.in {
			p, err := audit.ParsePattern(s)
			if err != nil {
				return pol, usageError("%s: %v", list.flag, err)
			}
			p.Source = list.flag
			*list.out = append(*list.out, p)
		}
	}
	return pol, nil
}

// auditOptions builds what audit, report and cycle share: the filters, the
// policy, and how to reach the registry.
func auditOptions(g *globalOptions, cmd *cobra.Command, filter *filterOptions, af *auditFlags) (audit.Options, error) {
	repo, tag, err := filter.compile()
	if err != nil {
		return audit.Options{}, err
	}
	pol, err := af.policy()
	if err != nil {
		return audit.Options{}, err
	}
	log := g.logger(cmd)
	return audit.Options{
		Inventory: inventory.Options{Client: g.client(log), Repo: repo, Tag: tag, Progress: g.reporter(cmd), Logger: log},
		Policy:    pol,
	}, nil
}

func newAuditCmd(g *globalOptions) *cobra.Command {
	var (
		filter filterOptions
		af     auditFlags
		tree   bool
		mf     metricsFlag
		pf     problemsFlag
		uf     usageFlag
	)
	cmd := &cobra.Command{
		Use:   "audit REGISTRY",
		Short: "Find images on stale, banned or replaced base images, and other hygiene findings",
		Long: `audit finds, for every tag and platform of a registry, the base image it was
built on, and reports, worst first:

  base-banned       the base matches --ban
  base-not-allowed  --allow is given and the base matches none of it
  base-outdated     the base's tag now points at a different (rebuilt) image
  base-too-old      the base is older than --max-base-age (default 180d)
  image-too-old     the image was built longer ago than --max-image-age (off by default)
  unsigned          --require-signature and no signature is attached
  no-sbom           --require-sbom and no SBOM is attached
  tag-latest-only   no tag but latest names the image (on by default)
  missing-label     a --require-label label is absent from the image config
  base-unknown      the history shows a base that no image of the registry matches
  image-undated     --max-image-age is set and the image has no date that is an age

An image's date is its config's created time, or, when that is a
reproducible-build date (1970, 1980, 0001), the newest dated entry of its
history (the JSON says which: createdFrom). A base named by annotation that
can no longer be read (collected by gc, or on another registry) is dated by
the image's own history (detectedBy annotation+history).

Bases are found, strongest evidence first, by the
org.opencontainers.image.base.name/.digest annotations (checked against the
layers), by layers (the longest run of the image's first layers that is
exactly another image of the registry), and by the image's history. Ages
come from the base's config or history; 1970-01-01 and other reproducible-
build dates are not ages.

Patterns are repository globs (base/*), repo:tag globs (base/debian:12*) or
digests, with or without the registry host. --policy reads them from YAML:

  maxBaseAge: 180d
  ban: [base/centos]
  allow: [base/debian:12, base/alpine:3.*]
  maxImageAge: 90d
  tagLatestOnly: true
  requireLabels: [org.opencontainers.image.revision, org.opencontainers.image.source]
  requireSignature: true
  requireSBOM: true

The table lists findings grouped by reason, worst first; -o json and -o csv
list every tag and platform. What is broken in the registry itself
(an index whose platform manifests are absent, a missing or unparseable
manifest) is listed as a problem after the findings, and does not change the
exit code unless --fail-on-problems. --tree prints the lineage of the whole registry.

Images are told from artifacts by their media types and the cosign tag
conventions (an image with no os in its config is judged); signatures, SBOMs,
attestations, Helm charts and other artifacts are not judged, and are counted
in the summary line (notJudged in JSON, NOT JUDGED in CSV). A --ban, --allow or
policy pattern that matches no tag or base is warned about on stderr (warnings
in JSON). A base named with another host is this registry's when that host is
a --registry-alias or its repository here holds the named digest.`,
		Example: `  # stale or banned bases, failing a CI job when there are any
  regkeeper audit registry.example.com --max-base-age 90d --ban 'base/centos*' --exit-code 3

  # images not rebuilt for a quarter, unsigned, or without their source label
  regkeeper audit registry.example.com --max-image-age 90d --require-signature --require-label org.opencontainers.image.source

  # with a policy file, as JSON
  regkeeper audit registry.example.com --policy testdata/policy.yaml -o json

  # which images are built on which base
  regkeeper audit registry.example.com --tree`,
		Args: positional(argRegistry),
		RunE: func(cmd *cobra.Command, argv []string) error {
			ao, err := auditOptions(g, cmd, &filter, &af)
			if err != nil {
				return err
			}
			if af.exitCode < 0 || af.exitCode > 125 {
				return usageError("--exit-code must be between 0 and 125")
			}
			if tree && g.format() != output.Table {
				// The tree is text only: not text where JSON was asked for.
				return usageError("--tree prints a text tree; it takes no -o %s", g.output)
			}
			closeLedger, err := uf.apply(&ao)
			if err != nil {
				return err
			}
			defer closeLedger()
			start := time.Now()
			res, err := audit.Run(cmd.Context(), argv[0], ao)
			took := time.Since(start)
			if err == nil {
				res.Warnings = append(filterWarnings(&filter, selection(res.Inventory.Listed, ao.Inventory.Repo, ao.Inventory.Tag)), res.Warnings...)
				warnAudit(cmd, res)
				if tree {
					err = audit.WriteTree(cmd.OutOrStdout(), res.Lineage())
				} else {
					err = writeAudit(cmd, g.format(), res)
				}
				if err == nil {
					err = writeProblems(cmd, g.format(), res.Problems)
				}
				if err == nil {
					err = reportErrors(cmd, res.Errors)
				}
				if err == nil {
					// --fail-on-problems fails the run: the metrics say so too.
					err = pf.check(res.Problems)
				}
			}
			// regkeeper_audit_success follows the exit code (findings aside).
			set := metrics.New("audit")
			auditMetrics(set, res, took)
			if err := mf.write(set, "audit", err); err != nil {
				return err
			}
			if af.exitCode != 0 && findings(res) > 0 {
				return &exitCodeError{code: af.exitCode, err: fmt.Errorf("findings: %d", findings(res)), silent: true}
			}
			return nil
		},
	}
	filter.register(cmd)
	af.register(cmd)
	mf.register(cmd)
	pf.register(cmd)
	cmd.Flags().IntVar(&af.exitCode, "exit-code", 0, "exit with this code when there are findings")
	cmd.Flags().BoolVar(&tree, "tree", false, "print the lineage of the registry: which images are built on which base")
	uf.register(cmd)
	g.registerOutput(cmd)
	return cmd
}

// warnAudit says on stderr, as warnUnmatched does for --repo, what the
// audit warns about (a --ban, --allow or policy pattern that matches
// nothing), whatever the format; JSON has them under "warnings" too.
func warnAudit(cmd *cobra.Command, res *audit.Result) {
	for _, w := range res.Warnings {
		fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s\n", w.Message)
	}
}

func findings(res *audit.Result) int {
	_, n := res.Counts()
	return n
}

func writeAudit(cmd *cobra.Command, f output.Format, res *audit.Result) error {
	out := cmd.OutOrStdout()
	switch f {
	case output.JSON:
		return output.WriteJSON(out, res)
	case output.CSV:
		rows := output.Rows{Header: []string{"REPOSITORY", "TAG", "PLATFORM", "DIGEST", "BASE", "BASE DIGEST", "DETECTED BY", "CONFIDENCE", "BASE AGE DAYS", "REASONS",
			"CREATED", "CREATED FROM", "IMAGE AGE DAYS", "MISSING LABELS", "SIGNED", "SBOM", "NOT JUDGED"}}
		opt := func(p *bool) string {
			if p == nil {
				return ""
			}
			return fmt.Sprint(*p)
		}
		for _, img := range res.Images {
			var base, bd, by, conf, age, imgAge string
			if b := img.Base; b != nil {
				base, bd, by, conf = b.Name(), b.Digest, b.DetectedBy, b.Confidence
			}
			if img.BaseAgeDays != nil {
				age = fmt.Sprint(*img.BaseAgeDays)
			}
			if img.ImageAgeDays != nil {
				imgAge = fmt.Sprint(*img.ImageAgeDays)
			}
			rows.Add(img.Repository, img.Tag, img.Platform, img.Digest, base, bd, by, conf, age, strings.Join(img.Reasons, " "),
				img.Created, img.CreatedFrom, imgAge, strings.Join(img.MissingLabels, " "), opt(img.Signed), opt(img.SBOM), "")
		}
		// What is not an image has a row too, its kind under NOT JUDGED.
		for _, n := range res.NotJudged {
			rows.Add(n.Repository, n.Tag, n.Platform, n.Digest, "", "", "", "", "", "", "", "", "", "", "", "", n.Kind)
		}
		return output.Write(out, f, rows, res)
	}
	rows := findingRows(res)
	if len(rows.Rows) > 0 {
		if err := output.Write(out, f, rows, res); err != nil {
			return err
		}
		fmt.Fprintln(out)
	}
	fmt.Fprintln(out, res.Summary())
	return nil
}

// findingRows lists each finding under its reason, worst reason first, the
// oldest bases first within a reason.
func findingRows(res *audit.Result) output.Rows {
	rows := output.Rows{Header: []string{"FINDING", "IMAGE", "PLATFORM", "BASE", "BASE AGE", "DETECTED BY", "DETAIL"}}
	fs := res.FindingsByUse()
	withUse := len(fs) > 0 && fs[0].Use != ""
	if withUse {
		rows.Header = append(rows.Header, "USE")
	}
	for _, f := range fs {
		img := f.Image
		var base, by, days string
		if img.Base != nil {
			base, by = img.Base.Name(), img.Base.DetectedBy+" ("+img.Base.Confidence+")"
		}
		if img.BaseAgeDays != nil {
			days = fmt.Sprintf("%dd", *img.BaseAgeDays)
		}
		cells := []any{f.Reason, img.Repository + ":" + img.Tag, img.Platform, base, days, by, f.Detail()}
		if withUse {
			cells = append(cells, f.Use)
		}
		rows.Add(cells...)
	}
	return rows
}
