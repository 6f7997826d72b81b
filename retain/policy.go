// Package retain decides which tags of a registry to keep and untags the
// rest. It is shaped as restic's forget: the facts are read first (Gather:
// tags, digests, push times and their source, index children, signature
// tags and their subjects, usage evidence), then one pure function
// (Apply) judges them against a Policy and returns a Plan that says, for
// every tag, keep or remove and the rule that kept it or why it goes; then
// Execute carries the plan out (cap, journal, delete by tag).
//
// A tag is removed, never a manifest: the manifests that become untagged
// are gc's to collect.
package retain

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/Masterminds/semver/v3"
	"github.com/bmatcuk/doublestar/v4"
	"go.yaml.in/yaml/v3"

	"github.com/regkeeper/regkeeper/internal/duration"
)

// DefaultMaxUsageAge is how old the usage ledger's newest event (and its
// in-use snapshot) may be before rules that need it refuse to remove.
const DefaultMaxUsageAge = 24 * time.Hour

// Policy is a retention policy file: repository policies, the first whose
// scope matches a repository applies to it.
type Policy struct {
	Policies []RepoPolicy
	// MaxUsageAge: usage evidence older than this is stale (default
	// DefaultMaxUsageAge).
	MaxUsageAge time.Duration
	// AllowStaleUsage: plan with stale or absent usage evidence anyway;
	// rules needing it then keep every tag they cannot judge.
	AllowStaleUsage bool
	// Format is where the policy came from: "regkeeper", "ecr" or "zot".
	Format string
}

// RepoPolicy is one entry of policies.
type RepoPolicy struct {
	// Repositories and Exclude are doublestar globs ("team-*/**").
	Repositories, Exclude []string
	// Keep: a tag is kept if any rule keeps it.
	Keep []Rule
	// Name identifies the policy in plans: "policies[0]".
	Name string
}

// Matches reports whether the policy's scope covers repo.
func (p RepoPolicy) Matches(repo string) bool {
	in := false
	for _, g := range p.Repositories {
		if ok, _ := doublestar.Match(g, repo); ok {
			in = true
			break
		}
	}
	if !in {
		return false
	}
	for _, g := range p.Exclude {
		if ok, _ := doublestar.Match(g, repo); ok {
			return false
		}
	}
	return true
}

// Kind of a keep rule.
type Kind string

// The kinds of keep rule; KindTags is an entry with only tags.
const (
	KindTags               Kind = "tags"
	KindMostRecentlyPushed Kind = "mostRecentlyPushed"
	KindPushedWithin       Kind = "pushedWithin"
	KindSemver             Kind = "semver"
	KindPulledWithin       Kind = "pulledWithin"
	KindMostRecentlyPulled Kind = "mostRecentlyPulled"
	KindInUse              Kind = "inUse"
)

// Rule is one keep entry.
type Rule struct {
	Kind Kind
	// Tags (regular expressions) and TagGlobs (doublestar globs) narrow
	// what the rule counts: a tag matching any, when any is given;
	// ExcludeTags (regular expressions) take tags out again.
	Tags, TagGlobs, ExcludeTags []string
	// N for mostRecentlyPushed and mostRecentlyPulled.
	N int
	// GroupBy: count N per value of the first capture (tags it does not
	// match are not counted by this rule).
	GroupBy string
	// Within for pushedWithin and pulledWithin.
	Within time.Duration
	// Semver for semver: 0 means every one.
	Majors, MinorsPerMajor, PatchesPerMinor int
	// Name identifies the rule in plans: "policies[0].keep[2] mostRecentlyPushed 5".
	Name string
	// From says what an imported rule was translated from ("ecr rulePriority 1").
	From string

	tags, exclude []*regexp.Regexp
	groupBy       *regexp.Regexp
}

// NeedsUsage reports whether the rule reads the usage ledger.
func (r Rule) NeedsUsage() bool {
	return r.Kind == KindPulledWithin || r.Kind == KindMostRecentlyPulled || r.Kind == KindInUse
}

// selects reports whether the rule's tag narrowing takes tag.
func (r *Rule) selects(tag string) bool {
	for _, re := range r.exclude {
		if re.MatchString(tag) {
			return false
		}
	}
	if len(r.tags) == 0 && len(r.TagGlobs) == 0 {
		return true
	}
	for _, re := range r.tags {
		if re.MatchString(tag) {
			return true
		}
	}
	for _, g := range r.TagGlobs {
		if ok, _ := doublestar.Match(g, tag); ok {
			return true
		}
	}
	return false
}

// compile checks and compiles the rule's patterns.
func (r *Rule) compile() error {
	r.tags, r.exclude = nil, nil
	for _, p := range r.Tags {
		re, err := regexp.Compile(p)
		if err != nil {
			return fmt.Errorf("tags: %q: %v", p, err)
		}
		r.tags = append(r.tags, re)
	}
	for _, p := range r.ExcludeTags {
		re, err := regexp.Compile(p)
		if err != nil {
			return fmt.Errorf("excludeTags: %q: %v", p, err)
		}
		r.exclude = append(r.exclude, re)
	}
	for _, g := range r.TagGlobs {
		if !doublestar.ValidatePattern(g) {
			return fmt.Errorf("tagGlobs: %q is not a valid glob", g)
		}
	}
	if r.GroupBy != "" {
		re, err := regexp.Compile(r.GroupBy)
		if err != nil {
			return fmt.Errorf("groupBy: %q: %v", r.GroupBy, err)
		}
		if re.NumSubexp() < 1 {
			return fmt.Errorf("groupBy: %q has no capture group to count by", r.GroupBy)
		}
		r.groupBy = re
	}
	return nil
}

// Compile checks every policy and compiles its patterns. Parse calls it;
// a Policy built in code must be compiled before Apply.
func (p *Policy) Compile() error {
	if p.MaxUsageAge == 0 {
		p.MaxUsageAge = DefaultMaxUsageAge
	}
	for i := range p.Policies {
		rp := &p.Policies[i]
		if rp.Name == "" {
			rp.Name = fmt.Sprintf("policies[%d]", i)
		}
		if len(rp.Repositories) == 0 {
			return fmt.Errorf("%s: repositories: want at least one glob", rp.Name)
		}
		for _, g := range append(append([]string{}, rp.Repositories...), rp.Exclude...) {
			if !doublestar.ValidatePattern(g) {
				return fmt.Errorf("%s: %q is not a valid repository glob", rp.Name, g)
			}
		}
		for j := range rp.Keep {
			r := &rp.Keep[j]
			if r.Name == "" {
				r.Name = fmt.Sprintf("%s.keep[%d] %s", rp.Name, j, r.describe())
			}
			if err := r.compile(); err != nil {
				return fmt.Errorf("%s.keep[%d]: %w", rp.Name, j, err)
			}
		}
	}
	return nil
}

func (r Rule) describe() string {
	switch r.Kind {
	case KindMostRecentlyPushed, KindMostRecentlyPulled:
		return fmt.Sprintf("%s %d", r.Kind, r.N)
	case KindPushedWithin, KindPulledWithin:
		return fmt.Sprintf("%s %s", r.Kind, duration.Format(r.Within))
	case KindSemver:
		return fmt.Sprintf("semver %s/%s/%s", all(r.Majors), all(r.MinorsPerMajor), all(r.PatchesPerMinor))
	case KindTags:
		return "tags " + strings.Join(append(append([]string{}, r.Tags...), r.TagGlobs...), ",")
	}
	return string(r.Kind)
}

func all(n int) string {
	if n == 0 {
		return "all"
	}
	return fmt.Sprint(n)
}

// The YAML policy format (README "retain: tag retention policies").
type policyFile struct {
	Policies    []policyEntry `yaml:"policies"`
	MaxUsageAge string        `yaml:"maxUsageAge"`
}

type policyEntry struct {
	Repositories []string    `yaml:"repositories"`
	Exclude      []string    `yaml:"exclude"`
	Keep         []keepEntry `yaml:"keep"`
}

type keepEntry struct {
	Tags               []string     `yaml:"tags"`
	TagGlobs           []string     `yaml:"tagGlobs"`
	ExcludeTags        []string     `yaml:"excludeTags"`
	MostRecentlyPushed *int         `yaml:"mostRecentlyPushed"`
	GroupBy            string       `yaml:"groupBy"`
	PushedWithin       string       `yaml:"pushedWithin"`
	Semver             *semverEntry `yaml:"semver"`
	PulledWithin       string       `yaml:"pulledWithin"`
	MostRecentlyPulled *int         `yaml:"mostRecentlyPulled"`
	InUse              *bool        `yaml:"inUse"`
}

type semverEntry struct {
	Majors          int `yaml:"majors"`
	MinorsPerMajor  int `yaml:"minorsPerMajor"`
	PatchesPerMinor int `yaml:"patchesPerMinor"`
}

// keysOf lists the keys of each level of the format, for the unknown-key
// error (yaml names the Go type).
var keysOf = map[string]string{
	"retain.policyFile":  "policies, maxUsageAge",
	"retain.policyEntry": "repositories, exclude, keep",
	"retain.keepEntry":   "tags, tagGlobs, excludeTags, mostRecentlyPushed, groupBy, pushedWithin, semver, pulledWithin, mostRecentlyPulled, inUse",
	"retain.semverEntry": "majors, minorsPerMajor, patchesPerMinor",
}

var unknownKeyRe = regexp.MustCompile(`field (.+) not found in type (\S+)`)

// Load reads a policy file: regkeeper's YAML, an ECR lifecycle policy
// (JSON) or a zot configuration with a storage.retention block.
func Load(path string) (*Policy, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading policy: %w", err)
	}
	p, err := Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("policy %s: %w", path, err)
	}
	return p, nil
}

// Parse parses a policy in any format Load reads.
func Parse(raw []byte) (*Policy, error) {
	switch detect(raw) {
	case "ecr":
		return parseECR(raw)
	case "zot":
		return parseZot(raw)
	}
	return parseNative(raw)
}

func parseNative(raw []byte) (*Policy, error) {
	var f policyFile
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("empty policy: want a policies list")
		}
		var te *yaml.TypeError
		if errors.As(err, &te) {
			msgs := make([]string, len(te.Errors))
			for i, m := range te.Errors {
				msgs[i] = unknownKeyRe.ReplaceAllStringFunc(m, func(s string) string {
					sm := unknownKeyRe.FindStringSubmatch(s)
					return fmt.Sprintf("unknown key %s (the keys here are %s)", sm[1], keysOf[sm[2]])
				})
			}
			return nil, errors.New(strings.Join(msgs, "; "))
		}
		return nil, fmt.Errorf("%s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	p := &Policy{Format: "regkeeper"}
	if f.MaxUsageAge != "" {
		d, err := duration.Parse(f.MaxUsageAge)
		if err != nil {
			return nil, fmt.Errorf("maxUsageAge: %v", err)
		}
		p.MaxUsageAge = d
	}
	if len(f.Policies) == 0 {
		return nil, errors.New("policies: want at least one policy")
	}
	for i, e := range f.Policies {
		rp := RepoPolicy{Repositories: e.Repositories, Exclude: e.Exclude, Name: fmt.Sprintf("policies[%d]", i)}
		if len(e.Keep) == 0 {
			return nil, fmt.Errorf("%s: keep: want at least one rule (a policy that keeps nothing would untag everything)", rp.Name)
		}
		for j, k := range e.Keep {
			r, err := k.rule()
			if err != nil {
				return nil, fmt.Errorf("%s.keep[%d]: %w", rp.Name, j, err)
			}
			rp.Keep = append(rp.Keep, r)
		}
		p.Policies = append(p.Policies, rp)
	}
	if err := p.Compile(); err != nil {
		return nil, err
	}
	return p, nil
}

func (k keepEntry) rule() (Rule, error) {
	r := Rule{Kind: KindTags, Tags: k.Tags, TagGlobs: k.TagGlobs, ExcludeTags: k.ExcludeTags, GroupBy: k.GroupBy}
	var kinds []string
	set := func(kind Kind) { r.Kind = kind; kinds = append(kinds, string(kind)) }
	if k.MostRecentlyPushed != nil {
		set(KindMostRecentlyPushed)
		r.N = *k.MostRecentlyPushed
	}
	if k.MostRecentlyPulled != nil {
		set(KindMostRecentlyPulled)
		r.N = *k.MostRecentlyPulled
	}
	for _, w := range []struct {
		kind Kind
		s    string
	}{{KindPushedWithin, k.PushedWithin}, {KindPulledWithin, k.PulledWithin}} {
		if w.s == "" {
			continue
		}
		set(w.kind)
		d, err := duration.Parse(w.s)
		if err != nil {
			return r, fmt.Errorf("%s: %v", w.kind, err)
		}
		r.Within = d
	}
	if k.Semver != nil {
		set(KindSemver)
		r.Majors, r.MinorsPerMajor, r.PatchesPerMinor = k.Semver.Majors, k.Semver.MinorsPerMajor, k.Semver.PatchesPerMinor
		if r.Majors < 0 || r.MinorsPerMajor < 0 || r.PatchesPerMinor < 0 {
			return r, errors.New("semver: counts must not be negative")
		}
	}
	if k.InUse != nil {
		if !*k.InUse {
			return r, errors.New("inUse: false keeps nothing; leave the entry out")
		}
		set(KindInUse)
	}
	switch {
	case len(kinds) > 1:
		return r, fmt.Errorf("one rule per entry, got %s (write one entry each: a tag is kept if any entry keeps it)", strings.Join(kinds, " and "))
	case r.Kind == KindTags && len(r.Tags) == 0 && len(r.TagGlobs) == 0:
		return r, errors.New("empty entry: want tags, or one of mostRecentlyPushed, pushedWithin, semver, pulledWithin, mostRecentlyPulled, inUse")
	case (r.Kind == KindMostRecentlyPushed || r.Kind == KindMostRecentlyPulled) && r.N < 0:
		return r, fmt.Errorf("%s: want a count of 0 or more", r.Kind)
	case r.GroupBy != "" && r.Kind != KindMostRecentlyPushed && r.Kind != KindMostRecentlyPulled:
		return r, errors.New("groupBy goes with mostRecentlyPushed or mostRecentlyPulled")
	}
	return r, nil
}

// parseVersion reads a tag as a semantic version ("1.2.3", "v1.2",
// "2.0.0-rc.1"); ok is false for any other tag.
func parseVersion(tag string) (*semver.Version, bool) {
	v, err := semver.NewVersion(tag)
	return v, err == nil
}
