// Compact digests: the mark holds every sha256 digest as its 32 bytes.

package gc

import (
	"encoding/hex"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
)

// sum is a sha256 digest's 32 bytes: the mark's key for blobs, manifests
// and links (a digest.Digest string costs 71 bytes plus its header and an
// allocation; a sum is 32 bytes, inline in the map or slice holding it).
// The blob store gc lists is blobs/sha256, so every digest gc can delete
// is one.
type sum256 [32]byte

// sumOf returns dg's sum; ok is false for anything but a well-formed
// sha256 digest.
func sumOf(dg digest.Digest) (s sum256, ok bool) {
	h, found := strings.CutPrefix(string(dg), "sha256:")
	if !found {
		return s, false
	}
	return sumOfHex(h)
}

// sumOfHex parses 64 lowercase hex digits.
func sumOfHex[T string | []byte](h T) (s sum256, ok bool) {
	if !isSHA256Hex(h) {
		return s, false
	}
	if _, err := hex.Decode(s[:], []byte(h)); err != nil {
		return s, false
	}
	return s, true
}

// digest spells s as "sha256:<hex>".
func (s sum256) digest() digest.Digest {
	var b [7 + 64]byte
	copy(b[:], "sha256:")
	hex.Encode(b[7:], s[:])
	return digest.Digest(b[:])
}

func (s sum256) less(o sum256) bool { return string(s[:]) < string(o[:]) }

// idTime is a digest (its id, ids.go) with a modification time in Unix
// nanoseconds (a layer link, a tag's history entry): 16 bytes.
type idTime struct {
	id  uint32
	mod int64
}

// findID returns the modification time of id in a slice sorted by id.
func findID(list []idTime, id uint32) (int64, bool) {
	i, ok := slices.BinarySearchFunc(list, id, func(e idTime, id uint32) int { return cmpUint32(e.id, id) })
	if !ok {
		return 0, false
	}
	return list[i].mod, true
}

// isSHA256Hex: 64 lowercase hex digits, as digest.Validate wants them.
func isSHA256Hex[T string | []byte](s T) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// nanos is t in Unix nanoseconds; a time that has none (the zero time, a
// driver that gives no modification time) is 0, long ago, as it was
// before: never within the grace.
func nanos(t time.Time) int64 {
	if t.Before(time.Unix(0, 0)) || t.After(time.Unix(0, math.MaxInt64)) {
		return 0
	}
	return t.UnixNano()
}
