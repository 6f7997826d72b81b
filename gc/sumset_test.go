package gc

import (
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Ids name listed digests by their place in the listing and the others
// by ids past it, given once each; an id spells its sum back, ids sort as
// their sums, lookup gives no id, and a manifest node goes to sums (the
// mark cache's form) and back unchanged.
func TestIDTable(t *testing.T) {
	sum := func(first, i byte) sum256 { var s sum256; s[0], s[1] = first, i; return s }
	list := blobList{
		{{s: sum(0x0a, 1)}, {s: sum(0x0a, 2)}, {s: sum(0x0a, 3)}},
		{},
		{{s: sum(0x0b, 1)}, {s: sum(0x0b, 2)}},
	}
	ids := newIDTable(list)
	if !ids.canonical || ids.n != 5 {
		t.Fatalf("canonical %v, n %d; want true, 5", ids.canonical, ids.n)
	}
	listed := []sum256{sum(0x0a, 1), sum(0x0a, 2), sum(0x0a, 3), sum(0x0b, 1), sum(0x0b, 2)}
	for i, s := range listed {
		if id := ids.id(s); id != uint32(i) {
			t.Errorf("id of listed blob %d: %d", i, id)
		}
	}
	unlisted := []sum256{sum(0x0c, 1), sum(0x0a, 9), sum(0x00, 1)}
	if _, ok := ids.lookup(unlisted[0]); ok {
		t.Errorf("lookup gave an unlisted digest an id")
	}
	for i, s := range unlisted {
		if id := ids.id(s); id != uint32(5+i) {
			t.Errorf("id of unlisted digest %d: %d, want %d", i, id, 5+i)
		}
	}
	if id := ids.id(unlisted[1]); id != 6 {
		t.Errorf("asked again, unlisted digest 1 has id %d, want 6", id)
	}
	all := slices.Concat(listed, unlisted)
	for id, s := range all {
		if got := ids.sum(uint32(id)); got != s {
			t.Errorf("sum of id %d: %x, want %x", id, got[:2], s[:2])
		}
	}
	if ids.len() != 8 {
		t.Errorf("len %d, want 8", ids.len())
	}
	order := []uint32{7, 6, 5, 4, 3, 2, 1, 0}
	ids.sortBySum(order)
	var got []sum256
	for _, id := range order {
		got = append(got, ids.sum(id))
	}
	want := slices.Clone(all)
	slices.SortFunc(want, compareSums)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ids sorted by sum (-want +got):\n%s", diff)
	}

	var live idBits = newIDBits(5)
	live.add(1)
	live.add(6) // past the listing: the set grows
	for id := range uint32(130) {
		if live.has(id) != (id == 1 || id == 6) {
			t.Errorf("live.has(%d) = %v", id, live.has(id))
		}
	}
	for i, s := range listed {
		if ids.isLive(live, i, s) != (i == 1) {
			t.Errorf("isLive(%d) = %v", i, !(i == 1))
		}
	}
	set := idSetOf(map[uint32]bool{9: true, 2: true, 5: true})
	if diff := cmp.Diff(idSet{2, 5, 9}, set); diff != "" {
		t.Errorf("idSet (-want +got):\n%s", diff)
	}
	if !set.has(5) || set.has(4) {
		t.Errorf("idSet.has wrong: has(5) %v, has(4) %v", set.has(5), set.has(4))
	}

	subj := sum(0x0b, 2)
	for _, c := range []*cachedNode{
		{mediaType: "application/vnd.oci.image.manifest.v1+json", refs: []sum256{sum(0x0a, 1), sum(0x0c, 1), sum(0x0d, 7)}, subject: &subj},
		{mediaType: "application/vnd.oci.image.index.v1+json", children: []sum256{sum(0x0b, 1), sum(0x0e, 1)}},
		{mediaType: "application/vnd.docker.distribution.manifest.v2+json", refs: []sum256{sum(0x0a, 2)},
			base: &cachedBase{name: "base/debian:12", digest: sum(0x0f, 1)}},
	} {
		if diff := cmp.Diff(c, ids.cached(ids.node(c)), cmp.AllowUnexported(cachedNode{}, cachedBase{})); diff != "" {
			t.Errorf("node to sums and back (-want +got):\n%s", diff)
		}
	}
}

// A blob listed where the registry does not put it (under another prefix
// directory) gets an id past the listing, as index does not find it
// there, and is live by that id.
func TestIDTableMisplaced(t *testing.T) {
	sum := func(first, i byte) sum256 { var s sum256; s[0], s[1] = first, i; return s }
	list := blobList{
		{{s: sum(0x0a, 1)}, {s: sum(0x0c, 5)}}, // 0x0c under 0x0a's directory
		{{s: sum(0x0b, 1)}},
	}
	ids := newIDTable(list)
	if ids.canonical {
		t.Fatalf("canonical with a misplaced blob")
	}
	id := ids.id(sum(0x0c, 5))
	if id < ids.n {
		t.Fatalf("misplaced blob has id %d, within the listing", id)
	}
	var live idBits
	live.add(id)
	if !ids.isLive(live, 1, sum(0x0c, 5)) || ids.isLive(live, 2, sum(0x0b, 1)) {
		t.Errorf("isLive of the misplaced blob %v, of the other %v", ids.isLive(live, 1, sum(0x0c, 5)), ids.isLive(live, 2, sum(0x0b, 1)))
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
