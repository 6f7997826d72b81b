// Compact sets of ids (ids.go): the marks and the live set the mark hands
// to the sweep.

package gc

import (
	"bytes"
	"slices"
)

// idSet is a set of ids as one sorted slice: 4 bytes a member. A
// repository's marks are held as idSets from its mark until its part of
// the plan is made.
type idSet []uint32

// idSetOf is the set of m's keys.
func idSetOf[V any](m map[uint32]V) idSet {
	s := make(idSet, 0, len(m))
	for k := range m {
		s = append(s, k)
	}
	slices.Sort(s)
	return s
}

// has tells whether x is in the set.
func (s idSet) has(x uint32) bool {
	_, ok := slices.BinarySearch(s, x)
	return ok
}

// idBits is a set of ids as one bit each, over every id given (a listed
// blob costs one bit whether it is a member or not): the live set.
type idBits []uint64

func newIDBits(n int) idBits { return make(idBits, (n+63)/64) }

// add puts x in the set, growing it for an id given after it was made.
func (b *idBits) add(x uint32) {
	w := int(x / 64)
	if w >= len(*b) {
		*b = append(*b, make(idBits, w+1-len(*b))...)
	}
	(*b)[w] |= 1 << (x % 64)
}

// has tells whether x is in the set.
func (b idBits) has(x uint32) bool {
	w := int(x / 64)
	return w < len(b) && b[w]&(1<<(x%64)) != 0
}

func compareSums(a, b sum256) int { return bytes.Compare(a[:], b[:]) }
