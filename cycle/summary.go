package cycle

import (
	"fmt"
	"strings"

	"github.com/regkeeper/regkeeper/internal/output"
)

// Summary says in one line what a step found, or "" if it did not run.
func (r *Result) Summary(step string) string {
	switch step {
	case StepCheck:
		if len(r.Checks) == 0 {
			return ""
		}
		failed := 0
		for _, c := range r.Checks {
			if !c.OK() {
				failed++
			}
		}
		if failed == 0 {
			return fmt.Sprintf("%s passed (cycle --check lists them)", plural(len(r.Checks), "check"))
		}
		return fmt.Sprintf("%d of %s failed (listed below)", failed, plural(len(r.Checks), "check"))
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
		if n := len(r.Inventory.Problems); n > 0 {
			s += fmt.Sprintf("; %s in the registry (listed below)", plural(n, "problem"))
		}
		if n := len(r.Inventory.Errors); n > 0 {
			s += fmt.Sprintf("; %d could not be read: %s", n, whereList(r.Inventory.Errors))
		}
		return s
	case StepRetain:
		if r.Retain == nil {
			return ""
		}
		verb := "removed"
		if r.Retain.Untagged != r.Retain.Removed {
			verb = fmt.Sprintf("removed %d of", r.Retain.Untagged)
		}
		s := fmt.Sprintf("kept %d tags, %s %d (gc frees %s)", r.Retain.Kept, verb, r.Retain.Removed, output.Bytes(r.Retain.BytesFreed))
		if r.Retain.Journal != "" {
			s += "; journal " + r.Retain.Journal
		}
		return s
	case StepAudit:
		if r.Audit == nil {
			return ""
		}
		return r.Audit.Summary()
	case StepBackup:
		if b := r.Backup; b != nil {
			s := fmt.Sprintf("%d images; %d blobs written (%s), %d already there (%s)",
				b.Images, b.BlobsWritten, output.Bytes(b.BytesWritten), b.BlobsSkipped, output.Bytes(b.BytesSkipped))
			if n := len(b.Problems); n > 0 {
				s += fmt.Sprintf("; %s in the registry not backed up", plural(n, "problem"))
			}
			return s
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
			s := fmt.Sprintf("%s %d manifests, %d blobs: %s reclaimed", verb, g.ManifestsDeleted, g.BlobsDeleted, output.Bytes(g.BytesReclaimed))
			if n := g.GraceNote(); n != "" {
				s += "; " + n
			}
			if rs := r.Restart; rs != nil && rs.Error == "" {
				s += "; registry restarted (" + rs.Command + ")"
			}
			return s
		}
	}
	return ""
}

// OneLine is text as one table cell: its first line, its spaces
// collapsed, cut at most characters (0: no limit) with "…" where anything
// was left out (the whole text is in the JSON and on stderr).
func OneLine(text string, most int) string {
	line, rest, _ := strings.Cut(strings.TrimSpace(text), "\n")
	line = strings.Join(strings.Fields(line), " ")
	more := strings.TrimSpace(rest) != ""
	if r := []rune(line); most > 0 && len(r) > most {
		line, more = string(r[:most-1]), true
	}
	if more {
		line += "…"
	}
	return line
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}
