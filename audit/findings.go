package audit

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Finding is one reason reported for one image.
type Finding struct {
	Reason string
	Image  Image
	// Use says how much the image's tag is used, when the audit read a
	// usage ledger (FindingsByUse); empty otherwise.
	Use string
}

// Findings lists every finding grouped by reason, worst reason first (see
// Severity), and the oldest bases first within a reason.
func (r *Result) Findings() []Finding {
	var out []Finding
	for _, reason := range Severity {
		var hit []Image
		for _, img := range r.Images {
			if slices.Contains(img.Reasons, reason) {
				hit = append(hit, img)
			}
		}
		age := ageOf
		if reason == ReasonImageTooOld {
			age = imageAgeOf
		}
		slices.SortStableFunc(hit, func(a, b Image) int { return cmp.Compare(age(b), age(a)) })
		for _, img := range hit {
			out = append(out, Finding{Reason: reason, Image: img})
		}
	}
	return out
}

func ageOf(img Image) int {
	if img.BaseAgeDays == nil {
		return -1
	}
	return *img.BaseAgeDays
}

func imageAgeOf(img Image) int {
	if img.ImageAgeDays == nil {
		return -1
	}
	return *img.ImageAgeDays
}

// Detail says, in a few words, what a finding is about when the base
// columns of a table do not: the image's age and where it came from, the
// labels missing, what is not attached.
func (f Finding) Detail() string {
	img := f.Image
	switch f.Reason {
	case ReasonImageTooOld:
		if img.ImageAgeDays == nil {
			return ""
		}
		s := fmt.Sprintf("built %dd ago (%s)", *img.ImageAgeDays, img.Created[:min(len(img.Created), 10)])
		if img.CreatedFrom == FromHistory {
			s += ", from its history: created is a reproducible-build date"
		}
		return s
	case ReasonUndated:
		return "no date: created and history hold only reproducible-build dates, or none"
	case ReasonMissingLabel:
		return "lacks " + strings.Join(img.MissingLabels, ", ")
	case ReasonUnsigned:
		return "no signature attached (referrers, .sig tag)"
	case ReasonNoSBOM:
		return "no SBOM attached (referrers, .sbom tag, SBOM attestation)"
	case ReasonLatestOnly:
		return "no tag but latest names it: no rollback"
	case ReasonTooOld, ReasonOutdated, ReasonUnknown, ReasonBanned, ReasonNotAllowed:
		if img.Base != nil && img.Base.DetectedBy == ByAnnotationHistory {
			return "base dated by this image's history"
		}
	}
	return ""
}

// Counts returns the number of images with each reason (every reason of
// Severity present, zero included) and the number with any.
func (r *Result) Counts() (byReason map[string]int, withFindings int) {
	byReason = map[string]int{}
	for _, reason := range Severity {
		byReason[reason] = 0
	}
	for _, img := range r.Images {
		if len(img.Reasons) > 0 {
			withFindings++
		}
		for _, reason := range img.Reasons {
			byReason[reason]++
		}
	}
	return byReason, withFindings
}

// Summary is one line: how many images were audited and found, by reason,
// and what was not judged ("; 2 signatures and 1 SBOM not judged").
func (r *Result) Summary() string {
	counts, with := r.Counts()
	images := plural(len(r.Images), "image", "images") + " (tag and platform)"
	var s string
	if with == 0 {
		s = images + " audited: no findings"
	} else {
		var parts []string
		for _, reason := range Severity {
			if n := counts[reason]; n > 0 {
				parts = append(parts, fmt.Sprintf("%d %s", n, reason))
			}
		}
		s = fmt.Sprintf("%d of %s with findings: %s", with, images, strings.Join(parts, ", "))
	}
	if nj := r.NotJudgedSummary(); nj != "" {
		s += "; " + nj
	}
	return s
}
