// Package patterns holds what every command that takes patterns (audit's
// --ban and --allow and policy file, retention's keep rules) needs to say
// when one of them matches nothing: a typo must not turn a policy off
// without a word, as a --repo that matches nothing is warned about.
package patterns

import "fmt"

// KindUnmatched is the kind of a Warning about a pattern that matches
// nothing.
const KindUnmatched = "pattern-unmatched"

// Warning is something a run did that may not be what was asked: not a
// problem of the registry, not a failure. Its JSON field names are a
// contract (audit's "warnings").
type Warning struct {
	Kind string `json:"kind"`
	// Source says where the pattern was given: "--ban", or
	// "policy.yaml line 3 (ban)".
	Source  string `json:"source"`
	Pattern string `json:"pattern"`
	Message string `json:"message"`
}

// Unmatched returns the patterns that match none of items, in their order.
func Unmatched[P, T any](pats []P, items []T, match func(P, T) bool) []P {
	var out []P
	for _, p := range pats {
		hit := false
		for _, it := range items {
			if match(p, it) {
				hit = true
				break
			}
		}
		if !hit {
			out = append(out, p)
		}
	}
	return out
}

// UnmatchedWarning is the warning for a pattern given at source that
// matches none of what it was matched against (what: "the 12 images and
// their bases of the registry").
func UnmatchedWarning(source, pattern, what string) Warning {
	return Warning{Kind: KindUnmatched, Source: source, Pattern: pattern,
		Message: fmt.Sprintf("%s %q matches none of %s", source, pattern, what)}
}
