package retain

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestImport(t *testing.T) {
	facts := Facts{Repositories: []RepoFacts{{Name: "team/app", Tags: []TagFacts{
		tf("prod-1", "sha256:p1", 50), tf("prod-2", "sha256:p2", 40), tf("prod-3", "sha256:p3", 30),
		tf("dev-1", "sha256:d1", 20), tf("dev-2", "sha256:d2", 5),
		tf("other", "sha256:o", 400),
	}}}}
	for _, tc := range []struct {
		name, policy, format string
		wantRemoved          []string
		wantRules            []string
	}{{
		name:   "ecr",
		format: "ecr",
		policy: `{"rules": [
  {"rulePriority": 1, "selection": {"tagStatus": "tagged", "tagPrefixList": ["prod"], "countType": "imageCountMoreThan", "countNumber": 2}, "action": {"type": "expire"}},
  {"rulePriority": 2, "selection": {"tagStatus": "tagged", "tagPatternList": ["*-*"], "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 10}, "action": {"type": "expire"}},
  {"rulePriority": 3, "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 1}, "action": {"type": "expire"}}]}`,
		// prod-* judged by rule 1 only (2 newest); dev-* by rule 2 (10
		// days); other by no rule: kept, as ECR keeps it.
		wantRemoved: []string{"team/app:dev-1", "team/app:prod-1"},
		wantRules: []string{
			"ecr.keep[0] mostRecentlyPushed 2 (from ecr rulePriority 1)",
			"ecr.keep[1] pushedWithin 10d (from ecr rulePriority 2)",
			"ecr.keep[2] tags no ECR rule selects",
		},
	}, {
		name:   "zot",
		format: "zot",
		policy: `{"storage": {"rootDirectory": "/var/lib/zot", "retention": {"delay": "24h", "policies": [
  {"repositories": ["team/**"], "deleteReferrers": false, "deleteUntagged": true,
   "keepTags": [{"patterns": ["^prod-.*"], "mostRecentlyPushedCount": 1}, {"patterns": ["^dev-"], "pushedWithin": "240h"}, {"patterns": ["^other$"]}]}]}}}`,
		wantRemoved: []string{"team/app:dev-1", "team/app:prod-1", "team/app:prod-2"},
		wantRules: []string{
			"zot.policies[0].keep[0] mostRecentlyPushed 1 (from zot keepTags[0] mostRecentlyPushedCount)",
			"zot.policies[0].keep[1] pushedWithin 10d (from zot keepTags[1] pushedWithin)",
			"zot.policies[0].keep[2] tags ^other$ (from zot keepTags[2] patterns)",
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			p := mustParse(t, tc.policy)
			if p.Format != tc.format {
				t.Errorf("format %q, want %q", p.Format, tc.format)
			}
			var rules []string
			for _, r := range p.Policies[0].Keep {
				rules = append(rules, r.Name)
			}
			if diff := cmp.Diff(tc.wantRules, rules); diff != "" {
				t.Errorf("rules (-want +got):\n%s", diff)
			}
			plan := Apply(&facts, p, now)
			if diff := cmp.Diff(tc.wantRemoved, removedSet(plan)); diff != "" {
				t.Errorf("removed (-want +got):\n%s", diff)
			}
		})
	}
}
