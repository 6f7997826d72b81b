package report

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/regkeeper/regkeeper/inventory"
	"github.com/regkeeper/regkeeper/retain"
)

// The report says what retention would remove and the bytes gc then frees,
// per repository, in HTML and Markdown; without a plan, it says nothing.
func TestRetainSection(t *testing.T) {
	plan := &retain.Plan{DryRun: true, Kept: 3, Removed: 2, BytesFreed: 2048,
		Repositories: []retain.RepoPlan{{Repository: "ci/app", Policy: "policies[0]", Kept: 3, Removed: 2, BytesFreed: 2048}}}
	d := &Data{Registry: "r", Generated: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), Inventory: &inventory.Result{}, Retain: plan}
	var h, m bytes.Buffer
	if err := d.WriteHTML(&h); err != nil {
		t.Fatal(err)
	}
	if err := d.WriteMarkdown(&m); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`<h2 id="retain">What retention would remove</h2>`, "2 of 5 tags", "would be removed; gc then frees 2.0 KiB",
		`<td>ci/app</td><td>policies[0]</td><td class="n">3</td><td class="n">2</td><td class="n">2.0 KiB</td>`} {
		if !strings.Contains(h.String(), want) {
			t.Errorf("HTML lacks %q", want)
		}
	}
	if want := "| ci/app | policies[0] | 3 | 2 | 2.0 KiB |"; !strings.Contains(m.String(), want) {
		t.Errorf("Markdown lacks %q", want)
	}
	d.Retain = nil
	h.Reset()
	if err := d.WriteHTML(&h); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(h.String(), "What retention would remove") {
		t.Error("a report without a retention plan has the section")
	}
}
