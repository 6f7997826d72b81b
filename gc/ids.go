// Digest ids: inside the mark a digest is named by its place in the blob
// listing, 4 bytes instead of 32.

package gc

import (
	"slices"
	"sort"
	"sync"

	"github.com/opencontainers/go-digest"
)

// idTable names every digest the mark meets by a uint32 id. The blob store
// is listed before any repository is read, so a listed blob's id is its
// place in the listing (in the order of blobList.each, which is the order
// of the sums); a digest that is not listed (a referenced blob that is
// missing, one pushed after the listing, a manifest in the quarantine)
// gets an id from len(listing) on, from a small table of its own. Sums
// are spelled out only where a digest leaves the mark: the plan, the
// reports, the mark cache's file.
//
// A blob listed where the registry would not put it (under another
// prefix directory than its sum's first byte) is not found by index
// (blobList.index): its sum gets an id of the overflow table, as it was
// not found before ids; canonical says whether every listed blob's place
// is its id.
type idTable struct {
	list blobList
	// n are the listed blobs: ids below n are places in the listing.
	n uint32
	// starts are the places of each prefix directory's first blob.
	starts    []int
	index     func(sum256) int
	canonical bool

	mu      sync.Mutex
	extra   []sum256          // the sums of ids n, n+1, ...
	extraID map[sum256]uint32 // their ids
}

func newIDTable(list blobList) *idTable {
	t := &idTable{list: list, index: list.index(), canonical: true, extraID: map[sum256]uint32{}}
	place := 0
	for _, c := range list {
		t.starts = append(t.starts, place)
		for i := range c {
			if t.canonical && t.index(c[i].s) != place+i {
				t.canonical = false
			}
		}
		place += len(c)
	}
	t.n = uint32(place)
	return t
}

// id returns s's id, giving it one of the overflow table when it is not
// listed. Safe from many goroutines.
func (t *idTable) id(s sum256) uint32 {
	if i := t.index(s); i >= 0 {
		return uint32(i)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if id, ok := t.extraID[s]; ok {
		return id
	}
	id := t.n + uint32(len(t.extra))
	t.extra = append(t.extra, s)
	t.extraID[s] = id
	return id
}

// lookup returns s's id if it has one, without giving it one.
func (t *idTable) lookup(s sum256) (uint32, bool) {
	if i := t.index(s); i >= 0 {
		return uint32(i), true
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	id, ok := t.extraID[s]
	return id, ok
}

// lookupDigest is lookup for a digest (false for one that is not sha256).
func (t *idTable) lookupDigest(dg digest.Digest) (uint32, bool) {
	s, ok := sumOf(dg)
	if !ok {
		return 0, false
	}
	return t.lookup(s)
}

// sum returns the sum an id names.
func (t *idTable) sum(id uint32) sum256 {
	if id < t.n {
		k := sort.Search(len(t.starts), func(k int) bool { return t.starts[k] > int(id) }) - 1
		return t.list[k][int(id)-t.starts[k]].s
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.extra[id-t.n]
}

// digest spells out an id's digest.
func (t *idTable) digest(id uint32) digest.Digest { return t.sum(id).digest() }

// len is the number of ids given so far.
func (t *idTable) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return int(t.n) + len(t.extra)
}

// compare orders ids as their sums (listed ids are in the order of their
// sums already).
func (t *idTable) compare(a, b uint32) int {
	if a < t.n && b < t.n && t.canonical {
		return cmpUint32(a, b)
	}
	return compareSums(t.sum(a), t.sum(b))
}

// sortBySum sorts ids in the order of their sums.
func (t *idTable) sortBySum(ids []uint32) {
	slices.SortFunc(ids, t.compare)
}

// isLive says whether the blob at place i of the listing (sum s) is in
// live: its place is its id, unless it is listed where index does not
// find it.
func (t *idTable) isLive(live idBits, i int, s sum256) bool {
	if live.has(uint32(i)) {
		return true
	}
	if t.canonical || t.index(s) == i {
		return false
	}
	id, ok := t.lookup(s)
	return ok && live.has(id)
}

func cmpUint32(a, b uint32) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
