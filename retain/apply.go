package retain

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/Masterminds/semver/v3"

	"github.com/regkeeper/regkeeper/internal/duration"
	"github.com/regkeeper/regkeeper/internal/walk"
)

// Actions of a tag in a plan.
const (
	Keep   = "keep"
	Remove = "remove"
)

// Kinds of plan problem (besides the walker's).
const (
	KindMatchesNothing = "pattern-matches-nothing"
	KindUsageStale     = "usage-stale"
	KindUsageUnread    = "usage-unread"
	KindNoPushTime     = "no-push-time"
)

// Plan is what Apply decided. Its JSON field names are a contract (the
// README).
type Plan struct {
	DryRun  bool `json:"dryRun"`
	Kept    int  `json:"kept"`
	Removed int  `json:"removed"`
	// BytesFreed: the blobs that only removed tags hold on to (no kept tag
	// of any repository uses them), which gc then frees.
	BytesFreed   int64          `json:"bytesFreed"`
	Repositories []RepoPlan     `json:"repositories"`
	Tags         []TagPlan      `json:"tags"`
	Problems     []walk.Problem `json:"problems"`
	// Blocked says why nothing may be removed (usage evidence needed and
	// not fresh); empty when the plan may be carried out.
	Blocked []string `json:"blocked"`
	// NotCovered counts the repositories no policy covers (untouched).
	NotCovered int `json:"repositoriesNotCovered"`
}

// RepoPlan is one covered repository's totals.
type RepoPlan struct {
	Repository string `json:"repository"`
	Policy     string `json:"policy"`
	Kept       int    `json:"kept"`
	Removed    int    `json:"removed"`
	BytesFreed int64  `json:"bytesFreed"`
}

// TagPlan is the decision on one tag.
type TagPlan struct {
	Repository string `json:"repository"`
	Tag        string `json:"tag"`
	Digest     string `json:"digest"`
	Action     string `json:"action"`
	// Rule that kept the tag (the first, in policy order); empty when
	// removed.
	Rule string `json:"rule"`
	// Reason: what the rule saw when kept, why the tag goes when removed.
	Reason     string `json:"reason"`
	Pushed     string `json:"pushed,omitempty"`
	PushedFrom string `json:"pushedFrom,omitempty"`
}

// Explain says which policy covers repo, if any.
func (p *Policy) Explain(repo string) (RepoPolicy, bool) {
	for _, rp := range p.Policies {
		if rp.Matches(repo) {
			return rp, true
		}
	}
	return RepoPolicy{}, false
}

// verdict is one tag's state while rules run.
type verdict struct {
	rule, reason string
	misses       []string
}

// Apply judges facts against policy at now. It does no I/O: a table test
// drives it with no registry.
func Apply(facts *Facts, policy *Policy, now time.Time) *Plan {
	n := 0
	for _, r := range facts.Repositories {
		n += len(r.Tags)
	}
	plan := &Plan{Repositories: []RepoPlan{}, Tags: make([]TagPlan, 0, n), Problems: append([]walk.Problem{}, facts.Problems...), Blocked: []string{}}
	// Which policy covers each repository, and whether any needs usage.
	covering := make([]*RepoPolicy, len(facts.Repositories))
	matchedRepos := make([]int, len(policy.Policies))
	needUsage := map[string]bool{}
	for i, r := range facts.Repositories {
		for j := range policy.Policies {
			if policy.Policies[j].Matches(r.Name) {
				covering[i] = &policy.Policies[j]
				matchedRepos[j]++
				for _, k := range policy.Policies[j].Keep {
					if k.NeedsUsage() {
						needUsage[k.Name] = true
					}
				}
				break
			}
		}
		if covering[i] == nil {
			plan.NotCovered++
		}
	}
	for j, rp := range policy.Policies {
		if matchedRepos[j] == 0 {
			plan.Problems = append(plan.Problems, walk.Problem{Kind: KindMatchesNothing,
				Message: fmt.Sprintf("%s: repositories %s (exclude %s) cover no repository of the registry", rp.Name, strings.Join(rp.Repositories, ", "), orNone(rp.Exclude))})
		}
	}
	plan.Blocked = usageBlocked(facts.Usage, policy, needUsage, now, plan)

	// Judge each covered repository; note the blobs of every tag kept
	// (including every tag of an uncovered repository).
	keptBlobs := map[string]bool{}
	type removedTag struct {
		repo  int
		blobs []Blob
	}
	var removed []removedTag
	patternHits := map[string]int{} // rule name + pattern -> tags matched
	for i, r := range facts.Repositories {
		rp := covering[i]
		if rp == nil {
			for _, t := range r.Tags {
				for _, b := range t.Blobs {
					keptBlobs[b.Digest] = true
				}
			}
			continue
		}
		tags := judge(r, rp, now, patternHits)
		rplan := RepoPlan{Repository: r.Name, Policy: rp.Name}
		for k, t := range tags {
			plan.Tags = append(plan.Tags, t)
			if t.Action == Keep {
				rplan.Kept++
				for _, b := range r.Tags[k].Blobs {
					keptBlobs[b.Digest] = true
				}
			} else {
				rplan.Removed++
				removed = append(removed, removedTag{len(plan.Repositories), r.Tags[k].Blobs})
			}
		}
		plan.Repositories = append(plan.Repositories, rplan)
	}
	// Bytes: each blob only removed tags hold, counted once, credited to
	// the first repository (in order) that held it.
	freed := map[string]bool{}
	for _, rt := range removed {
		for _, b := range rt.blobs {
			if keptBlobs[b.Digest] || freed[b.Digest] {
				continue
			}
			freed[b.Digest] = true
			plan.Repositories[rt.repo].BytesFreed += b.Size
			plan.BytesFreed += b.Size
		}
	}
	for _, rp := range plan.Repositories {
		plan.Kept += rp.Kept
		plan.Removed += rp.Removed
	}
	// Tag patterns that match nothing in any repository their policy
	// covers are said, never silent.
	for j, rp := range policy.Policies {
		if matchedRepos[j] == 0 {
			continue
		}
		for _, k := range rp.Keep {
			for _, p := range append(append([]string{}, k.Tags...), k.TagGlobs...) {
				if patternHits[k.Name+"\x00"+p] == 0 {
					plan.Problems = append(plan.Problems, walk.Problem{Kind: KindMatchesNothing,
						Message: fmt.Sprintf("%s: tag pattern %q matches no tag in the repositories the policy covers", k.Name, p)})
				}
			}
		}
	}
	walk.SortProblems(plan.Problems)
	return plan
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// usageBlocked says why the plan may not be carried out: a rule needs
// usage evidence that is absent, unreadable or older than MaxUsageAge.
func usageBlocked(u *UsageFacts, policy *Policy, need map[string]bool, now time.Time, plan *Plan) []string {
	if len(need) == 0 {
		return []string{}
	}
	var rules []string
	inUse := false
	for n := range need {
		rules = append(rules, n)
		if strings.Contains(n, string(KindInUse)) {
			inUse = true
		}
	}
	sort.Strings(rules)
	who := strings.Join(rules, ", ")
	var why []string
	switch {
	case u == nil:
		why = append(why, fmt.Sprintf("no usage ledger (--usage) for %s", who))
	case u.Err != "":
		why = append(why, fmt.Sprintf("the usage ledger could not be read (%s) for %s", u.Err, who))
	default:
		maxAge := policy.MaxUsageAge
		if maxAge == 0 {
			maxAge = DefaultMaxUsageAge
		}
		if now.Sub(u.Events) > maxAge {
			why = append(why, fmt.Sprintf("the usage ledger's newest event is %s (older than %s) for %s", stamp(u.Events), duration.Format(maxAge), who))
		}
		if inUse && now.Sub(u.Running) > maxAge {
			why = append(why, fmt.Sprintf("the usage ledger's in-use list is from %s (older than %s)", stamp(u.Running), duration.Format(maxAge)))
		}
	}
	kind := KindUsageStale
	if u == nil || u.Err != "" {
		kind = KindUsageUnread
	}
	for _, w := range why {
		msg := w + "; nothing is removed"
		if policy.AllowStaleUsage {
			msg = w + "; going on (--allow-stale-usage): tags those rules cannot judge are kept"
		}
		plan.Problems = append(plan.Problems, walk.Problem{Kind: kind, Message: msg})
	}
	if policy.AllowStaleUsage {
		return []string{}
	}
	if why == nil {
		return []string{}
	}
	return why
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format(time.RFC3339)
}

// judge decides every tag of one repository.
func judge(r RepoFacts, rp *RepoPolicy, now time.Time, hits map[string]int) []TagPlan {
	v := make([]verdict, len(r.Tags))
	// Signature, attestation, SBOM and fallback tags follow their subject
	// when the subject is tagged here; they are not counted by rules.
	tagged := map[string]bool{}
	for _, t := range r.Tags {
		if t.Subject == "" {
			tagged[t.Digest] = true
			for _, c := range t.Children {
				tagged[c] = true
			}
		}
	}
	follower := make([]bool, len(r.Tags))
	var units []int
	for i, t := range r.Tags {
		if t.Subject != "" && tagged[t.Subject] {
			follower[i] = true
			continue
		}
		units = append(units, i)
	}
	keep := func(i int, rule, reason string) {
		if v[i].rule == "" {
			v[i].rule, v[i].reason = rule, reason
		}
	}
	miss := func(i int, why string) { v[i].misses = append(v[i].misses, why) }
	for ri := range rp.Keep {
		k := &rp.Keep[ri]
		for _, p := range k.Tags {
			re := k.tags[indexOf(k.Tags, p)]
			for _, i := range units {
				if re.MatchString(r.Tags[i].Tag) {
					hits[k.Name+"\x00"+p]++
				}
			}
		}
		for _, p := range k.TagGlobs {
			rr := Rule{TagGlobs: []string{p}}
			for _, i := range units {
				if rr.selects(r.Tags[i].Tag) {
					hits[k.Name+"\x00"+p]++
				}
			}
		}
		var sel []int
		for _, i := range units {
			if k.selects(r.Tags[i].Tag) {
				sel = append(sel, i)
			}
		}
		applyRule(k, r.Tags, sel, now, keep, miss)
	}
	out := make([]TagPlan, len(r.Tags))
	keptDigest := map[string]bool{}
	for _, i := range units {
		t := r.Tags[i]
		tp := TagPlan{Repository: r.Name, Tag: t.Tag, Digest: t.Digest, Action: Remove}
		if !t.Pushed.IsZero() {
			tp.Pushed, tp.PushedFrom = t.Pushed.UTC().Format(time.RFC3339), t.PushedFrom
		}
		if t.Subject != "" {
			// A signature whose subject is not tagged here: not judged
			// (gc --prune-orphan-signatures decides about orphans).
			tp.Action, tp.Reason = Keep, "signature or fallback tag whose subject "+short(t.Subject)+" is not tagged in this repository: not judged by retention"
		} else if v[i].rule != "" {
			tp.Action, tp.Rule, tp.Reason = Keep, v[i].rule, v[i].reason
		} else if len(v[i].misses) > 0 {
			tp.Reason = strings.Join(v[i].misses, "; ")
		} else {
			tp.Reason = "no keep rule selects this tag"
		}
		if tp.Action == Keep {
			keptDigest[t.Digest] = true
			for _, c := range t.Children {
				keptDigest[c] = true
			}
		}
		out[i] = tp
	}
	for i, t := range r.Tags {
		if !follower[i] {
			continue
		}
		tp := TagPlan{Repository: r.Name, Tag: t.Tag, Digest: t.Digest}
		if !t.Pushed.IsZero() {
			tp.Pushed, tp.PushedFrom = t.Pushed.UTC().Format(time.RFC3339), t.PushedFrom
		}
		if keptDigest[t.Subject] {
			tp.Action, tp.Rule, tp.Reason = Keep, "subject", "follows its subject "+short(t.Subject)+", which a kept tag names"
		} else {
			tp.Action, tp.Reason = Remove, "follows its subject "+short(t.Subject)+", whose every tag goes"
		}
		out[i] = tp
	}
	return out
}

func indexOf(s []string, x string) int {
	for i, v := range s {
		if v == x {
			return i
		}
	}
	return -1
}

func short(d string) string {
	if len(d) > 19 {
		return d[:19]
	}
	return d
}

func ago(now, t time.Time) string {
	d := now.Sub(t)
	if d < 0 {
		return "in the future"
	}
	if d >= 2*duration.Day {
		return fmt.Sprintf("%dd ago", int(d/duration.Day))
	}
	return d.Round(time.Minute).String() + " ago"
}

// applyRule runs one keep rule over the tags it selects.
func applyRule(k *Rule, tags []TagFacts, sel []int, now time.Time, keep func(int, string, string), miss func(int, string)) {
	switch k.Kind {
	case KindTags:
		for _, i := range sel {
			keep(i, k.Name, "matches "+strings.Join(append(append([]string{}, k.Tags...), k.TagGlobs...), " or "))
		}
	case KindPushedWithin:
		for _, i := range sel {
			t := tags[i]
			switch {
			case t.Pushed.IsZero():
				keep(i, k.Name, "push time unknown (unknown keeps)")
			case now.Sub(t.Pushed) <= k.Within:
				keep(i, k.Name, fmt.Sprintf("pushed %s, within %s", ago(now, t.Pushed), duration.Format(k.Within)))
			default:
				miss(i, "pushed longer than "+duration.Format(k.Within)+" ago")
			}
		}
	case KindMostRecentlyPushed, KindMostRecentlyPulled:
		pushed := k.Kind == KindMostRecentlyPushed
		groups := map[string][]int{}
		var order []string
		for _, i := range sel {
			t := tags[i]
			if pushed && t.Pushed.IsZero() {
				keep(i, k.Name, "push time unknown (unknown keeps)")
				continue
			}
			if !pushed && !t.PullKnown {
				keep(i, k.Name, "no pull record (unknown keeps)")
				continue
			}
			g := ""
			if k.groupBy != nil {
				m := k.groupBy.FindStringSubmatch(t.Tag)
				if m == nil {
					continue
				}
				g = m[1]
			}
			if _, ok := groups[g]; !ok {
				order = append(order, g)
			}
			groups[g] = append(groups[g], i)
		}
		when := func(i int) time.Time {
			if pushed {
				return tags[i].Pushed
			}
			return tags[i].LastPull
		}
		what := "pushed"
		if !pushed {
			what = "pulled"
		}
		for _, g := range order {
			is := groups[g]
			sort.SliceStable(is, func(a, b int) bool {
				ta, tb := when(is[a]), when(is[b])
				if !ta.Equal(tb) {
					return ta.After(tb)
				}
				return tags[is[a]].Tag > tags[is[b]].Tag
			})
			of := ""
			if k.groupBy != nil {
				of = " of group " + g
			}
			for rank, i := range is {
				if !pushed && when(i).IsZero() {
					miss(i, "never pulled")
					continue
				}
				if rank < k.N {
					keep(i, k.Name, fmt.Sprintf("#%d of the %d most recently %s%s", rank+1, k.N, what, of))
				} else {
					miss(i, fmt.Sprintf("not among the %d most recently %s%s", k.N, what, of))
				}
			}
		}
	case KindPulledWithin:
		for _, i := range sel {
			t := tags[i]
			switch {
			case !t.PullKnown:
				keep(i, k.Name, "no pull record (unknown keeps)")
			case !t.LastPull.IsZero() && now.Sub(t.LastPull) <= k.Within:
				keep(i, k.Name, fmt.Sprintf("pulled %s, within %s", ago(now, t.LastPull), duration.Format(k.Within)))
			case t.LastPull.IsZero():
				miss(i, "never pulled")
			default:
				miss(i, "not pulled within "+duration.Format(k.Within))
			}
		}
	case KindInUse:
		for _, i := range sel {
			t := tags[i]
			switch {
			case !t.InUseKnown:
				keep(i, k.Name, "in-use unknown (unknown keeps)")
			case t.InUse:
				keep(i, k.Name, "in use: "+strings.Join(t.InUseWhere, ", "))
			default:
				miss(i, "not in use")
			}
		}
	case KindSemver:
		semverRule(k, tags, sel, keep, miss)
	}
}

// semverRule keeps the newest Majors majors, MinorsPerMajor minors of
// each, PatchesPerMinor patches of each minor; prereleases only while
// newer than the newest release.
func semverRule(k *Rule, tags []TagFacts, sel []int, keep func(int, string, string), miss func(int, string)) {
	type tv struct {
		i int
		v *semver.Version
	}
	var rel, pre []tv
	for _, i := range sel {
		v, ok := parseVersion(tags[i].Tag)
		if !ok {
			continue
		}
		if v.Prerelease() != "" {
			pre = append(pre, tv{i, v})
		} else {
			rel = append(rel, tv{i, v})
		}
	}
	var newest *semver.Version
	for _, r := range rel {
		if newest == nil || r.v.GreaterThan(newest) {
			newest = r.v
		}
	}
	for _, p := range pre {
		if newest == nil || p.v.GreaterThan(newest) {
			keep(p.i, k.Name, "prerelease newer than the newest release")
		} else {
			miss(p.i, "prerelease older than the release "+newest.String())
		}
	}
	rank := func(key func(*semver.Version) string, within func(*semver.Version) string) map[int]int {
		// rank of each release's key among the keys of its `within` group,
		// 0 = newest.
		type kv struct {
			key string
			v   *semver.Version
		}
		best := map[string]map[string]*semver.Version{}
		for _, r := range rel {
			w, kk := within(r.v), key(r.v)
			if best[w] == nil {
				best[w] = map[string]*semver.Version{}
			}
			if b := best[w][kk]; b == nil || r.v.GreaterThan(b) {
				best[w][kk] = r.v
			}
		}
		ranks := map[string]map[string]int{}
		for w, m := range best {
			var list []kv
			for kk, v := range m {
				list = append(list, kv{kk, v})
			}
			sort.Slice(list, func(a, b int) bool { return list[a].v.GreaterThan(list[b].v) })
			ranks[w] = map[string]int{}
			for n, e := range list {
				ranks[w][e.key] = n
			}
		}
		out := map[int]int{}
		for _, r := range rel {
			out[r.i] = ranks[within(r.v)][key(r.v)]
		}
		return out
	}
	majorKey := func(v *semver.Version) string { return fmt.Sprint(v.Major()) }
	minorKey := func(v *semver.Version) string { return fmt.Sprintf("%d.%d", v.Major(), v.Minor()) }
	patchKey := func(v *semver.Version) string { return fmt.Sprintf("%d.%d.%d", v.Major(), v.Minor(), v.Patch()) }
	whole := func(*semver.Version) string { return "" }
	mr := rank(majorKey, whole)
	nr := rank(minorKey, majorKey)
	pr := rank(patchKey, minorKey)
	for _, r := range rel {
		switch {
		case k.Majors > 0 && mr[r.i] >= k.Majors:
			miss(r.i, fmt.Sprintf("major %d is not among the %d newest majors", r.v.Major(), k.Majors))
		case k.MinorsPerMajor > 0 && nr[r.i] >= k.MinorsPerMajor:
			miss(r.i, fmt.Sprintf("%d.%d is not among the %d newest minors of %d", r.v.Major(), r.v.Minor(), k.MinorsPerMajor, r.v.Major()))
		case k.PatchesPerMinor > 0 && pr[r.i] >= k.PatchesPerMinor:
			miss(r.i, fmt.Sprintf("%s is not among the %d newest patches of %d.%d", r.v, k.PatchesPerMinor, r.v.Major(), r.v.Minor()))
		default:
			keep(r.i, k.Name, fmt.Sprintf("release %s within %s majors, %s minors per major, %s patches per minor", r.v, all(k.Majors), all(k.MinorsPerMajor), all(k.PatchesPerMinor)))
		}
	}
}
