package audit

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/regkeeper/regkeeper/inventory"
)

// UsageOf is what the usage ledger says of repo:tag, when the audit's
// inventory read one (inventory.Options.Usage); nil otherwise.
func (r *Result) UsageOf(repo, tag string) *inventory.Usage {
	if r.Inventory == nil {
		return nil
	}
	for i := range r.Inventory.Images {
		if img := &r.Inventory.Images[i]; img.Repository == repo && img.Tag == tag {
			return img.Usage
		}
	}
	return nil
}

// UseNote says in words how much a tag is used: "running in cluster prod:
// Deployment shop/web; pulled 12 times in 30 days", "pulls unknown".
// Empty when u is nil (no ledger).
func UseNote(u *inventory.Usage) string {
	if u == nil {
		return ""
	}
	var parts []string
	if u.InUse != nil && *u.InUse {
		parts = append(parts, "running in "+strings.Join(u.InUseWhere, ", "))
	}
	switch {
	case u.Pulls30d != nil && *u.Pulls30d == 1:
		parts = append(parts, "pulled once in 30 days")
	case u.Pulls30d != nil:
		parts = append(parts, fmt.Sprintf("pulled %d times in 30 days", *u.Pulls30d))
	default:
		parts = append(parts, "pulls unknown")
	}
	return strings.Join(parts, "; ")
}

// useRank orders usage: in use first, then most pulled in 30 days, then
// most recently pulled; unknown counts as least.
func useRank(a, b *inventory.Usage) int {
	in := func(u *inventory.Usage) int {
		if u != nil && u.InUse != nil && *u.InUse {
			return 1
		}
		return 0
	}
	pulls := func(u *inventory.Usage) int64 {
		if u == nil || u.Pulls30d == nil {
			return -1
		}
		return *u.Pulls30d
	}
	last := func(u *inventory.Usage) int64 {
		if u == nil || u.LastPulled == nil {
			return 0
		}
		return u.LastPulled.UnixNano()
	}
	if c := cmp.Compare(in(b), in(a)); c != 0 {
		return c
	}
	if c := cmp.Compare(pulls(b), pulls(a)); c != 0 {
		return c
	}
	return cmp.Compare(last(b), last(a))
}

// FindingsByUse is Findings (worst reason first) with, within each reason,
// the most used images first (running, then most pulled in 30 days, then
// most recently pulled), and each finding's Use note set. Without a ledger
// it is Findings.
func (r *Result) FindingsByUse() []Finding {
	fs := r.Findings()
	if r.Inventory == nil || len(r.Inventory.Images) == 0 || r.Inventory.Images[0].Usage == nil {
		return fs
	}
	use := map[string]*inventory.Usage{}
	for i := range r.Inventory.Images {
		img := &r.Inventory.Images[i]
		use[img.Repository+":"+img.Tag] = img.Usage
	}
	for i := range fs {
		fs[i].Use = UseNote(use[fs[i].Image.Repository+":"+fs[i].Image.Tag])
	}
	slices.SortStableFunc(fs, func(a, b Finding) int {
		if a.Reason != b.Reason {
			return cmp.Compare(slices.Index(Severity, a.Reason), slices.Index(Severity, b.Reason))
		}
		return useRank(use[a.Image.Repository+":"+a.Image.Tag], use[b.Image.Repository+":"+b.Image.Tag])
	})
	return fs
}
