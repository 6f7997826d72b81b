package patterns

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestUnmatched(t *testing.T) {
	items := []string{"base/centos", "base/debian", "team/app"}
	for _, tc := range []struct {
		name string
		pats []string
		want []string
	}{
		{"all match", []string{"base/", "team/"}, nil},
		{"a typo", []string{"base/cent0s", "base/debian"}, []string{"base/cent0s"}},
		{"none match, order kept", []string{"z", "a"}, []string{"z", "a"}},
		{"no items", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Unmatched(tc.pats, items, func(p, it string) bool { return strings.HasPrefix(it, p) })
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	w := UnmatchedWarning("--ban", "base/cent0s", "the 3 images of the registry")
	if w.Kind != KindUnmatched || w.Message != `--ban "base/cent0s" matches none of the 3 images of the registry` {
		t.Errorf("warning %+v", w)
	}
}
