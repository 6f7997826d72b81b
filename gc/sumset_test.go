package gc

import (
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// A sumSet holds each member once, sorted, whatever the order and the
// repeats of what was added, across the compactions add makes as it
// grows; has finds exactly the members.
func TestSumSet(t *testing.T) {
	sum := func(i int) sum256 {
		var s sum256
		s[0], s[1], s[31] = byte(i>>8), byte(i), byte(i*7)
		return s
	}
	seq := func(from, to, step int) []int {
		var out []int
		for i := from; i != to; i += step {
			out = append(out, i)
		}
		return out
	}
	for _, tc := range []struct {
		name    string
		add     []int
		members []int // sorted
		absent  []int
	}{
		{"empty", nil, nil, []int{0, 1}},
		{"one", []int{5}, []int{5}, []int{4, 6}},
		{"repeats", []int{3, 3, 1, 3, 1}, []int{1, 3}, []int{0, 2}},
		{"descending, past compactions", seq(5000, 0, -1), seq(1, 5001, 1), []int{0, 5001}},
		{"every member four times, past compactions", slices.Concat(seq(0, 3000, 2), seq(0, 3000, 2), seq(2998, -2, -2), seq(0, 3000, 2)),
			seq(0, 3000, 2), []int{1, 2999, 3000}},
		{"repeats of the few, then new ones", slices.Concat(slices.Repeat([]int{7, 9}, 3000), seq(100, 110, 1)),
			slices.Concat([]int{7, 9}, seq(100, 110, 1)), []int{8, 110}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var u sumSet
			for _, i := range tc.add {
				u.add(sum(i))
			}
			u.done()
			var want []sum256
			for _, i := range tc.members {
				want = append(want, sum(i))
			}
			if diff := cmp.Diff(want, u.s); diff != "" {
				t.Errorf("members (-want +got):\n%s", diff)
			}
			if cap(u.s) != len(u.s) {
				t.Errorf("capacity %d for %d members", cap(u.s), len(u.s))
			}
			for _, i := range tc.members {
				if !u.has(sum(i)) {
					t.Errorf("has(%d) = false, want true", i)
				}
			}
			for _, i := range tc.absent {
				if u.has(sum(i)) {
					t.Errorf("has(%d) = true, want false", i)
				}
			}
		})
	}
}

// deadBlobs attribute a deleted blob's bytes to the first repository by
// name that claims it, in any order of claims; a kept or unlisted blob has
// no owner, and a deleted one nobody claims neither.
func TestDeadBlobsOwner(t *testing.T) {
	sum := func(first, i byte) sum256 { var s sum256; s[0], s[1] = first, i; return s }
	// Two prefix directories, 0x0a and 0x0b.
	list := blobList{
		{{s: sum(0x0a, 1), size: 10}, {s: sum(0x0a, 2), size: 20}, {s: sum(0x0a, 3), size: 30}},
		{{s: sum(0x0b, 1), size: 40}, {s: sum(0x0b, 2), size: 50}},
	}
	repos := []string{"a", "b", "c"}
	type claim struct {
		s    sum256
		repo int32
	}
	for _, tc := range []struct {
		name   string
		dead   []int // places in the listing
		claims []claim
		want   map[sum256]string
	}{
		{"no claim", []int{0, 3}, nil, map[sum256]string{}},
		{"first by name, claimed last", []int{1}, []claim{{sum(0x0a, 2), 2}, {sum(0x0a, 2), 1}, {sum(0x0a, 2), 0}},
			map[sum256]string{sum(0x0a, 2): "a"}},
		{"first by name, claimed first", []int{4}, []claim{{sum(0x0b, 2), 0}, {sum(0x0b, 2), 2}},
			map[sum256]string{sum(0x0b, 2): "a"}},
		{"kept blobs are nobody's", []int{2}, []claim{{sum(0x0a, 1), 0}, {sum(0x0a, 3), 1}, {sum(0x0b, 1), 2}},
			map[sum256]string{sum(0x0a, 3): "b"}},
		{"unlisted digests are nobody's", []int{0, 1, 2, 3, 4}, []claim{{sum(0x0a, 9), 0}, {sum(0x0c, 1), 0}, {sum(0x0b, 1), 2}},
			map[sum256]string{sum(0x0b, 1): "c"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &Plan{repos: repos, blobs: newDeadBlobs(list)}
			for _, i := range tc.dead {
				p.blobs.state[i] = noOwner
				p.blobs.n++
			}
			for _, c := range tc.claims {
				p.blobs.claim(c.s, c.repo, repos)
			}
			got := map[sum256]string{}
			var sizes []int64
			p.eachBlobSize(func(size int64, owner string) { sizes = append(sizes, size) })
			list.each(func(b *blobInfo) {
				if o, ok := p.owner(b.s.digest()); ok {
					got[b.s] = o
				}
			})
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("owners (-want +got):\n%s", diff)
			}
			var wantSizes []int64
			for _, i := range tc.dead {
				wantSizes = append(wantSizes, int64(10*(i+1)))
			}
			if diff := cmp.Diff(wantSizes, sizes); diff != "" {
				t.Errorf("sizes of the deleted blobs (-want +got):\n%s", diff)
			}
			if p.blobCount() != len(tc.dead) {
				t.Errorf("blobCount %d, want %d", p.blobCount(), len(tc.dead))
			}
		})
	}
}
