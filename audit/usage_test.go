package audit

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/regkeeper/regkeeper/inventory"
)

func TestFindingsByUse(t *testing.T) {
	i64 := func(n int64) *int64 { return &n }
	yes, no := true, false
	age := func(n int) *int { return &n }
	last := time.Date(2026, 12, 5, 8, 0, 0, 0, time.UTC)
	res := &Result{
		Images: []Image{
			{Repository: "old", Tag: "1", Reasons: []string{ReasonTooOld}, BaseAgeDays: age(900)},
			{Repository: "busy", Tag: "1", Reasons: []string{ReasonTooOld}, BaseAgeDays: age(400)},
			{Repository: "running", Tag: "1", Reasons: []string{ReasonTooOld}, BaseAgeDays: age(300)},
			{Repository: "banned", Tag: "1", Reasons: []string{ReasonBanned}, BaseAgeDays: age(10)},
		},
		Inventory: &inventory.Result{Images: []inventory.Image{
			{Repository: "old", Tag: "1", Usage: &inventory.Usage{InUse: &no}},
			{Repository: "busy", Tag: "1", Usage: &inventory.Usage{Pulls30d: i64(12), LastPulled: &last, InUse: &no}},
			{Repository: "running", Tag: "1", Usage: &inventory.Usage{Pulls30d: i64(1), InUse: &yes, InUseWhere: []string{"cluster prod: Deployment shop/web"}}},
			{Repository: "banned", Tag: "1", Usage: &inventory.Usage{Pulls30d: i64(0), InUse: &no}},
		}},
	}
	type row struct{ Reason, Image, Use string }
	var got []row
	for _, f := range res.FindingsByUse() {
		got = append(got, row{f.Reason, f.Image.Repository, f.Use})
	}
	want := []row{
		{ReasonBanned, "banned", "pulled 0 times in 30 days"},
		{ReasonTooOld, "running", "running in cluster prod: Deployment shop/web; pulled once in 30 days"},
		{ReasonTooOld, "busy", "pulled 12 times in 30 days"},
		{ReasonTooOld, "old", "pulls unknown"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("findings by use (-want +got):\n%s", diff)
	}
	// without a ledger: Findings, oldest base first within a reason
	res.Inventory = nil
	var plain []string
	for _, f := range res.FindingsByUse() {
		plain = append(plain, f.Image.Repository+" "+f.Use)
	}
	if diff := cmp.Diff([]string{"banned ", "old ", "busy ", "running "}, plain); diff != "" {
		t.Errorf("without usage (-want +got):\n%s", diff)
	}
}
