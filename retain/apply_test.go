package retain

import (
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var now = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)

func daysAgo(n int) time.Time { return now.Add(-time.Duration(n) * 24 * time.Hour) }

// tf is a tag pushed n days ago (n < 0: push time unknown) on digest d,
// which holds blob d of size 10.
func tf(tag, d string, n int) TagFacts {
	t := TagFacts{Tag: tag, Digest: d, Blobs: []Blob{{d, 10}}}
	if n >= 0 {
		t.Pushed, t.PushedFrom = daysAgo(n), FromStorage
	}
	return t
}

func pulled(t TagFacts, n int) TagFacts {
	t.PullKnown = true
	if n >= 0 {
		t.LastPull = daysAgo(n)
	}
	return t
}

func mustParse(t *testing.T, y string) *Policy {
	t.Helper()
	p, err := Parse([]byte(y))
	if err != nil {
		t.Fatalf("parsing policy: %v", err)
	}
	return p
}

// removedSet lists the removed repo:tags of a plan, sorted.
func removedSet(p *Plan) []string {
	out := []string{}
	for _, t := range p.Tags {
		if t.Action == Remove {
			out = append(out, t.Repository+":"+t.Tag)
		}
	}
	sort.Strings(out)
	return out
}

func TestApply(t *testing.T) {
	fresh := &UsageFacts{Events: daysAgo(0), Running: daysAgo(0)}
	for _, tc := range []struct {
		name        string
		policy      string
		facts       Facts
		wantRemoved []string
		wantBytes   int64
		blocked     bool
		problems    []string // substrings of problem messages, in order
	}{{
		name: "tags and mostRecentlyPushed per group",
		policy: `
policies:
  - repositories: ["team-*/**"]
    exclude: ["team-x/legacy"]
    keep:
      - tags: ['^latest$', '^release-']
      - mostRecentlyPushed: 2
        tags: ['^main-', '^feat-']
        groupBy: '^(.+)-[0-9]+$'
`,
		facts: Facts{Repositories: []RepoFacts{
			{Name: "team-a/api", Tags: []TagFacts{
				tf("latest", "sha256:a", 1), tf("release-1", "sha256:r", 400),
				tf("main-1", "sha256:m1", 40), tf("main-2", "sha256:m2", 30), tf("main-3", "sha256:m3", 20), tf("main-4", "sha256:m4", -1),
				tf("feat-x-1", "sha256:f1", 9), tf("feat-x-2", "sha256:f2", 8), tf("feat-x-3", "sha256:f3", 7),
				tf("other", "sha256:o", 1),
			}},
			{Name: "team-x/legacy", Tags: []TagFacts{tf("old", "sha256:old", 900)}},
			{Name: "base/debian", Tags: []TagFacts{tf("12", "sha256:d", 900)}},
		}},
		// main-4 has no push time: kept. Of main-1..3, the 2 newest.
		wantRemoved: []string{"team-a/api:feat-x-1", "team-a/api:main-1", "team-a/api:other"},
		wantBytes:   30,
	}, {
		name: "pushedWithin; a shared digest frees nothing",
		policy: `
policies:
  - repositories: ["**"]
    keep:
      - pushedWithin: 30d
`,
		facts: Facts{Repositories: []RepoFacts{{Name: "app", Tags: []TagFacts{
			tf("new", "sha256:n", 29), tf("old", "sha256:n", 31), tf("older", "sha256:x", 60),
		}}}},
		wantRemoved: []string{"app:old", "app:older"},
		wantBytes:   10,
	}, {
		name: "semver with prereleases",
		policy: `
policies:
  - repositories: ["**"]
    keep:
      - semver: {majors: 2, minorsPerMajor: 1, patchesPerMinor: 1}
`,
		facts: Facts{Repositories: []RepoFacts{{Name: "lib", Tags: []TagFacts{
			tf("1.0.0", "sha256:1", 9), tf("1.0.1", "sha256:2", 9), tf("v2.0.0", "sha256:3", 9),
			tf("2.1.0", "sha256:4", 9), tf("2.1.1", "sha256:5", 9), tf("3.0.0", "sha256:6", 9),
			tf("3.0.1-rc.1", "sha256:7", 9), tf("2.0.0-rc.1", "sha256:8", 9), tf("nightly", "sha256:9", 1),
		}}}},
		// majors 3 and 2; newest minor of each (3.0, 2.1); newest patch of
		// each (3.0.0, 2.1.1); 3.0.1-rc.1 is newer than 3.0.0.
		wantRemoved: []string{"lib:1.0.0", "lib:1.0.1", "lib:2.0.0-rc.1", "lib:2.1.0", "lib:nightly", "lib:v2.0.0"},
		wantBytes:   60,
	}, {
		name: "pulls: unknown keeps",
		policy: `
policies:
  - repositories: ["**"]
    keep:
      - pulledWithin: 90d
      - mostRecentlyPulled: 1
`,
		facts: Facts{Usage: fresh, Repositories: []RepoFacts{{Name: "app", Tags: []TagFacts{
			pulled(tf("recent", "sha256:1", 200), 10), pulled(tf("stale", "sha256:2", 200), 100),
			pulled(tf("stalest", "sha256:3", 200), 120), pulled(tf("never", "sha256:4", 200), -1),
			tf("unknown", "sha256:5", 200),
		}}}},
		wantRemoved: []string{"app:never", "app:stale", "app:stalest"},
		wantBytes:   30,
	}, {
		name: "inUse",
		policy: `
policies:
  - repositories: ["**"]
    keep:
      - inUse: true
`,
		facts: Facts{Usage: fresh, Repositories: []RepoFacts{{Name: "app", Tags: []TagFacts{
			func() TagFacts {
				x := tf("running", "sha256:1", 500)
				x.InUse, x.InUseKnown, x.InUseWhere = true, true, []string{"prod/web"}
				return x
			}(),
			func() TagFacts { x := tf("idle", "sha256:2", 500); x.InUseKnown = true; return x }(),
			tf("unknown", "sha256:3", 500),
		}}}},
		wantRemoved: []string{"app:idle"},
		wantBytes:   10,
	}, {
		name: "usage stale blocks",
		policy: `
policies:
  - repositories: ["**"]
    keep:
      - pulledWithin: 90d
`,
		facts: Facts{Usage: &UsageFacts{Events: daysAgo(3), Running: daysAgo(0)}, Repositories: []RepoFacts{{Name: "app", Tags: []TagFacts{
			pulled(tf("stale", "sha256:2", 200), 100),
		}}}},
		wantRemoved: []string{"app:stale"},
		wantBytes:   10,
		blocked:     true,
		problems:    []string{"newest event is 2026-10-29T00:00:00Z (older than 1d)"},
	}, {
		name: "signatures follow their subject; an index is one unit",
		policy: `
policies:
  - repositories: ["**"]
    keep:
      - tags: ['^keep']
`,
		facts: Facts{Repositories: []RepoFacts{{Name: "app", Tags: []TagFacts{
			{Tag: "keep", Digest: "sha256:k", Blobs: []Blob{{"sha256:k", 10}, {"sha256:shared", 5}}},
			{Tag: "gone", Digest: "sha256:g", Children: []string{"sha256:gc"}, Blobs: []Blob{{"sha256:g", 10}, {"sha256:gc", 7}, {"sha256:shared", 5}}},
			{Tag: "sha256-k.sig", Digest: "sha256:ks", Subject: "sha256:k", Blobs: []Blob{{"sha256:ks", 1}}},
			{Tag: "sha256-g.att", Digest: "sha256:ga", Subject: "sha256:g", Blobs: []Blob{{"sha256:ga", 1}}},
			{Tag: "sha256-gc.sig", Digest: "sha256:gcs", Subject: "sha256:gc", Blobs: []Blob{{"sha256:gcs", 1}}},
			{Tag: "sha256-zz", Digest: "sha256:zs", Subject: "sha256:zz", Blobs: []Blob{{"sha256:zs", 1}}},
		}}}},
		wantRemoved: []string{"app:gone", "app:sha256-g.att", "app:sha256-gc.sig"},
		wantBytes:   19,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			plan := Apply(&tc.facts, mustParse(t, tc.policy), now)
			if diff := cmp.Diff(tc.wantRemoved, removedSet(plan)); diff != "" {
				t.Errorf("removed (-want +got):\n%s", diff)
				for _, tp := range plan.Tags {
					t.Logf("%s:%s %s %s %s", tp.Repository, tp.Tag, tp.Action, tp.Rule, tp.Reason)
				}
			}
			if plan.BytesFreed != tc.wantBytes {
				t.Errorf("bytesFreed %d, want %d", plan.BytesFreed, tc.wantBytes)
			}
			if got := len(plan.Blocked) > 0; got != tc.blocked {
				t.Errorf("blocked %v (%q), want %v", got, plan.Blocked, tc.blocked)
			}
			var msgs []string
			for _, p := range plan.Problems {
				msgs = append(msgs, p.Message)
			}
			for _, want := range tc.problems {
				if !strings.Contains(strings.Join(msgs, "\n"), want) {
					t.Errorf("problems %q lack %q", msgs, want)
				}
			}
		})
	}
}

func TestApplyReasons(t *testing.T) {
	p := mustParse(t, `
policies:
  - repositories: ["**"]
    keep:
      - tags: ['^latest$', '^nomatch-']
      - mostRecentlyPushed: 1
        groupBy: '^(.+)-[0-9]+$'
      - pushedWithin: 30d
  - repositories: ["nothing/**"]
    keep:
      - tags: [x]
`)
	plan := Apply(&Facts{Repositories: []RepoFacts{{Name: "app", Tags: []TagFacts{
		tf("latest", "sha256:l", 100), tf("main-1", "sha256:1", 60), tf("main-2", "sha256:2", 50),
	}}}}, p, now)
	got := map[string][2]string{}
	for _, tp := range plan.Tags {
		got[tp.Tag] = [2]string{tp.Rule, tp.Reason}
	}
	want := map[string][2]string{
		"latest": {"policies[0].keep[0] tags ^latest$,^nomatch-", "matches ^latest$ or ^nomatch-"},
		"main-1": {"", "not among the 1 most recently pushed of group main; pushed longer than 30d ago"},
		"main-2": {"policies[0].keep[1] mostRecentlyPushed 1", "#1 of the 1 most recently pushed of group main"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	var kinds []string
	for _, pr := range plan.Problems {
		kinds = append(kinds, pr.Kind+": "+pr.Message)
	}
	wantProblems := []string{
		`pattern-matches-nothing: policies[1]: repositories nothing/** (exclude none) cover no repository of the registry`,
		`pattern-matches-nothing: policies[0].keep[0] tags ^latest$,^nomatch-: tag pattern "^nomatch-" matches no tag in the repositories the policy covers`,
	}
	if diff := cmp.Diff(wantProblems, kinds); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ policy, want string }{
		{"policies:\n  - repositories: [a]\n    keeps: []\n", "unknown key keeps (the keys here are repositories, exclude, keep)"},
		{"policies:\n  - repositories: [a]\n    keep:\n      - mostRecentlyPushd: 3\n", "unknown key mostRecentlyPushd (the keys here are tags, tagGlobs"},
		{"policies:\n  - repositories: [a]\n    keep:\n      - mostRecentlyPushed: 3\n        pushedWithin: 3d\n", "one rule per entry"},
		{"policies:\n  - repositories: [a]\n    keep:\n      - pushedWithin: soon\n", "pushedWithin: duration \"soon\""},
		{"policies:\n  - repositories: [a]\n    keep:\n      - mostRecentlyPushed: 3\n        groupBy: 'main-[0-9]+'\n", "no capture group"},
		{"policies:\n  - repositories: [a]\n    keep: []\n", "want at least one rule"},
	} {
		_, err := Parse([]byte(tc.policy))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) = %v, want an error containing %q", tc.policy, err, tc.want)
		}
	}
}

func TestCap(t *testing.T) {
	plan := &Plan{Kept: 90, Removed: 10, Repositories: []RepoPlan{
		{Repository: "a", Kept: 80, Removed: 2}, {Repository: "b", Kept: 10, Removed: 8}}}
	for _, tc := range []struct {
		cap, want string
	}{
		{"", ""},
		{"10", ""},
		{"9", "(9): the run removes 10 of 100 tags; nothing removed"},
		{"10%", "(10%): b: 8 of 18 tags; nothing removed"},
		{"50%", ""},
		{"0", "(0): the run removes 10 of 100 tags, a: 2 of 82 tags, b: 8 of 18 tags; nothing removed"},
	} {
		c, err := ParseCap(tc.cap)
		if err != nil {
			t.Fatal(err)
		}
		got := ""
		if err := c.Check(plan); err != nil {
			got = err.Error()
		}
		if (tc.want == "") != (got == "") || !strings.HasSuffix(got, tc.want) {
			t.Errorf("--max-remove %q: %q, want ...%q", tc.cap, got, tc.want)
		}
	}
	for _, bad := range []string{"-1", "x", "101%", "5%%"} {
		if _, err := ParseCap(bad); err == nil {
			t.Errorf("ParseCap(%q) accepted", bad)
		}
	}
}
