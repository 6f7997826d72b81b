package retain

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// detect tells an ECR lifecycle policy ("rules") and a zot configuration
// ("storage") from regkeeper's format ("policies"). YAML reads JSON.
func detect(raw []byte) string {
	var top map[string]any
	if yaml.Unmarshal(raw, &top) != nil {
		return "regkeeper"
	}
	switch {
	case top["policies"] != nil:
		return "regkeeper"
	case top["rules"] != nil:
		return "ecr"
	case top["storage"] != nil:
		return "zot"
	}
	return "regkeeper"
}

// An ECR lifecycle policy
// (https://docs.aws.amazon.com/AmazonECR/latest/userguide/LifecyclePolicies.html).
type ecrPolicy struct {
	Rules []struct {
		RulePriority int    `yaml:"rulePriority"`
		Description  string `yaml:"description"`
		Selection    struct {
			TagStatus      string   `yaml:"tagStatus"`
			TagPrefixList  []string `yaml:"tagPrefixList"`
			TagPatternList []string `yaml:"tagPatternList"`
			CountType      string   `yaml:"countType"`
			CountNumber    int      `yaml:"countNumber"`
			CountUnit      string   `yaml:"countUnit"`
		} `yaml:"selection"`
		Action struct {
			Type string `yaml:"type"`
		} `yaml:"action"`
	} `yaml:"rules"`
}

// parseECR translates an ECR lifecycle policy: ECR expires what its rules
// select and keeps the rest, judging an image by the first rule (by
// priority) that selects it. So each rule becomes a keep rule over its
// selection minus the selections of earlier rules (imageCountMoreThan N:
// mostRecentlyPushed N; sinceImagePushed N days: pushedWithin Nd), and
// one more keeps every tag no rule selects. Rules on untagged images are
// gc's and are skipped, as the policy's problems say. The policy covers
// every repository ("**"): an ECR policy belongs to one repository.
func parseECR(raw []byte) (*Policy, error) {
	var f ecrPolicy
	if err := yaml.Unmarshal(raw, &f); err != nil {
		return nil, fmt.Errorf("ECR lifecycle policy: %s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	sort.SliceStable(f.Rules, func(i, j int) bool { return f.Rules[i].RulePriority < f.Rules[j].RulePriority })
	rp := RepoPolicy{Repositories: []string{"**"}, Name: "ecr"}
	var earlier []string
	selectsAll := false
	for _, r := range f.Rules {
		from := fmt.Sprintf("ecr rulePriority %d", r.RulePriority)
		s := r.Selection
		if s.TagStatus == "untagged" {
			continue // untagged images are gc's
		}
		if s.TagStatus != "tagged" && s.TagStatus != "any" {
			return nil, fmt.Errorf("%s: tagStatus %q: want tagged, untagged or any", from, s.TagStatus)
		}
		if r.Action.Type != "" && r.Action.Type != "expire" {
			return nil, fmt.Errorf("%s: action %q: only expire is known", from, r.Action.Type)
		}
		var sel []string
		for _, p := range s.TagPrefixList {
			sel = append(sel, "^"+regexp.QuoteMeta(p))
		}
		for _, p := range s.TagPatternList {
			sel = append(sel, "^"+strings.ReplaceAll(regexp.QuoteMeta(p), `\*`, ".*")+"$")
		}
		if selectsAll {
			continue // an earlier rule took every tag
		}
		rule := Rule{Tags: sel, ExcludeTags: append([]string{}, earlier...), From: from}
		switch s.CountType {
		case "imageCountMoreThan":
			rule.Kind, rule.N = KindMostRecentlyPushed, s.CountNumber
		case "sinceImagePushed":
			if s.CountUnit != "" && s.CountUnit != "days" {
				return nil, fmt.Errorf("%s: countUnit %q: want days", from, s.CountUnit)
			}
			rule.Kind, rule.Within = KindPushedWithin, time.Duration(s.CountNumber)*24*time.Hour
		default:
			return nil, fmt.Errorf("%s: countType %q: want imageCountMoreThan or sinceImagePushed", from, s.CountType)
		}
		rule.Name = fmt.Sprintf("ecr.keep[%d] %s (from %s)", len(rp.Keep), rule.describe(), from)
		rp.Keep = append(rp.Keep, rule)
		if len(sel) == 0 {
			selectsAll = true
		}
		earlier = append(earlier, sel...)
	}
	if len(rp.Keep) == 0 {
		return nil, errors.New("ECR lifecycle policy: no rule on tagged images")
	}
	if !selectsAll {
		rp.Keep = append(rp.Keep, Rule{Kind: KindTags, Tags: []string{".*"}, ExcludeTags: earlier, From: "ecr: tags no rule selects are kept",
			Name: fmt.Sprintf("ecr.keep[%d] tags no ECR rule selects", len(rp.Keep))})
	}
	p := &Policy{Policies: []RepoPolicy{rp}, Format: "ecr"}
	if err := p.Compile(); err != nil {
		return nil, fmt.Errorf("ECR lifecycle policy: %w", err)
	}
	return p, nil
}

// zot's configuration, the part retention reads
// (https://zotregistry.dev/latest/articles/retention/).
type zotConfig struct {
	Storage struct {
		Retention *struct {
			Policies []struct {
				Repositories []string `yaml:"repositories"`
				KeepTags     []struct {
					Patterns                []string `yaml:"patterns"`
					PulledWithin            string   `yaml:"pulledWithin"`
					PushedWithin            string   `yaml:"pushedWithin"`
					MostRecentlyPushedCount *int     `yaml:"mostRecentlyPushedCount"`
					MostRecentlyPulledCount *int     `yaml:"mostRecentlyPulledCount"`
				} `yaml:"keepTags"`
			} `yaml:"policies"`
		} `yaml:"retention"`
	} `yaml:"storage"`
}

// parseZot translates zot's storage.retention: each keepTags entry keeps
// the tags its patterns match (all when none) by any of its rules, or all
// of them when it has none; a policy without keepTags keeps every tag, as
// in zot. delay, dryRun, deleteUntagged and deleteReferrers are gc's
// business and ignored.
func parseZot(raw []byte) (*Policy, error) {
	var f zotConfig
	if err := yaml.Unmarshal(raw, &f); err != nil {
		return nil, fmt.Errorf("zot configuration: %s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if f.Storage.Retention == nil || len(f.Storage.Retention.Policies) == 0 {
		return nil, errors.New("zot configuration: no storage.retention.policies")
	}
	p := &Policy{Format: "zot"}
	for i, zp := range f.Storage.Retention.Policies {
		rp := RepoPolicy{Repositories: zp.Repositories, Name: fmt.Sprintf("zot.policies[%d]", i)}
		add := func(r Rule, from string) {
			r.From = from
			r.Name = fmt.Sprintf("%s.keep[%d] %s (from %s)", rp.Name, len(rp.Keep), r.describe(), from)
			rp.Keep = append(rp.Keep, r)
		}
		if len(zp.KeepTags) == 0 {
			add(Rule{Kind: KindTags, Tags: []string{".*"}}, "zot: a policy without keepTags keeps every tag")
		}
		for j, kt := range zp.KeepTags {
			from := fmt.Sprintf("zot keepTags[%d]", j)
			pats := kt.Patterns
			if len(pats) == 0 {
				pats = []string{".*"}
			}
			n := 0
			if kt.MostRecentlyPushedCount != nil {
				add(Rule{Kind: KindMostRecentlyPushed, N: *kt.MostRecentlyPushedCount, Tags: pats}, from+" mostRecentlyPushedCount")
				n++
			}
			if kt.MostRecentlyPulledCount != nil {
				add(Rule{Kind: KindMostRecentlyPulled, N: *kt.MostRecentlyPulledCount, Tags: pats}, from+" mostRecentlyPulledCount")
				n++
			}
			for _, w := range []struct {
				kind  Kind
				s, of string
			}{{KindPushedWithin, kt.PushedWithin, "pushedWithin"}, {KindPulledWithin, kt.PulledWithin, "pulledWithin"}} {
				if w.s == "" {
					continue
				}
				d, err := time.ParseDuration(w.s)
				if err != nil {
					return nil, fmt.Errorf("zot configuration: %s %s: %v", from, w.of, err)
				}
				add(Rule{Kind: w.kind, Within: d, Tags: pats}, from+" "+w.of)
				n++
			}
			if n == 0 {
				add(Rule{Kind: KindTags, Tags: pats}, from+" patterns")
			}
		}
		p.Policies = append(p.Policies, rp)
	}
	if err := p.Compile(); err != nil {
		return nil, fmt.Errorf("zot configuration: %w", err)
	}
	return p, nil
}
