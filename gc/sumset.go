// Compact sets of sums: the live set the mark hands to the sweep.

package gc

import (
	"bytes"
	"slices"
)

// sumSet is a set of sums as one sorted slice without duplicates: 32
// bytes a member (a map costs about twice that). Members are added in any
// order, with repeats; add keeps the slice within twice the distinct
// members by sorting and compacting whenever it doubled since the last
// time, and done does so a last time. has works once done was called.
type sumSet struct {
	s []sum256
	// sorted is the length of the sorted, compacted prefix of s.
	sorted int
}

// sumSetOf is the set of m's keys.
func sumSetOf[V any](m map[sum256]V) sumSet {
	s := sortedSums(m)
	return sumSet{s: s, sorted: len(s)}
}

// add puts x in the set.
func (u *sumSet) add(x sum256) {
	u.s = append(u.s, x)
	if len(u.s) >= 2*max(u.sorted, 1024) {
		u.compact()
	}
}

// compact sorts s and drops repeats.
func (u *sumSet) compact() {
	slices.SortFunc(u.s, compareSums)
	u.s = slices.Compact(u.s)
	u.sorted = len(u.s)
}

// done makes the set ready for has, trimmed to its members.
func (u *sumSet) done() {
	u.compact()
	u.s = slices.Clip(append([]sum256(nil), u.s...))
}

// has tells whether x is in the set (after done).
func (u *sumSet) has(x sum256) bool {
	_, ok := slices.BinarySearchFunc(u.s, x, compareSums)
	return ok
}

func (u *sumSet) len() int { return len(u.s) }

func compareSums(a, b sum256) int { return bytes.Compare(a[:], b[:]) }
