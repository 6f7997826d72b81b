package cycle

import (
	"fmt"
	"slices"
	"strings"

	"github.com/regkeeper/regkeeper/audit"
	"github.com/regkeeper/regkeeper/internal/output"
)

// Summary says in one line what a step found, or "" if it did not run.
func (r *Result) Summary(step string) string {
	switch step {
	case StepInventory:
		if r.Inventory == nil {
			return ""
		}
		repos := map[string]bool{}
		var bytes int64
		for _, img := range r.Inventory.Images {
			repos[img.Repository] = true
			bytes += img.Size
		}
		s := fmt.Sprintf("%d tags in %d repositories, %s as pulled", len(r.Inventory.Images), len(repos), output.Bytes(bytes))
		if n := len(r.Inventory.Errors); n > 0 {
			s += fmt.Sprintf("; %d could not be read", n)
		}
		return s
	case StepAudit:
		if r.Audit == nil {
			return ""
		}
		var parts []string
		with := 0
		for _, img := range r.Audit.Images {
			if len(img.Reasons) > 0 {
				with++
			}
		}
		for _, reason := range audit.Severity {
			n := 0
			for _, img := range r.Audit.Images {
				if slices.Contains(img.Reasons, reason) {
					n++
				}
			}
			if n > 0 {
				parts = append(parts, fmt.Sprintf("%d %s", n, reason))
			}
		}
		if with == 0 {
			return fmt.Sprintf("%d images audited, no findings", len(r.Audit.Images))
		}
		return fmt.Sprintf("%d of %d images with findings: %s", with, len(r.Audit.Images), strings.Join(parts, ", "))
	case StepBackup:
		if b := r.Backup; b != nil {
			return fmt.Sprintf("%d images; %d blobs written (%s), %d already there (%s)",
				b.Images, b.BlobsWritten, output.Bytes(b.BytesWritten), b.BlobsSkipped, output.Bytes(b.BytesSkipped))
		}
	case StepVerify:
		if v := r.Verify; v != nil {
			s := fmt.Sprintf("%d blobs (%s) re-hashed, %d manifests checked", v.Blobs, output.Bytes(v.Bytes), v.Manifests)
			if !v.OK() {
				s += fmt.Sprintf("; %d problems", len(v.Problems))
			}
			return s
		}
	case StepGC:
		if g := r.GC; g != nil {
			verb := "deleted"
			if g.DryRun {
				verb = "would delete"
			}
			return fmt.Sprintf("%s %d manifests, %d blobs: %s reclaimed", verb, g.ManifestsDeleted, g.BlobsDeleted, output.Bytes(g.BytesReclaimed))
		}
	}
	return ""
}
