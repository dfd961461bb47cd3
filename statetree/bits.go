package statetree

import (
	"math/bits"
	"strconv"
	"strings"
)

// Bits is a set of per-byte states. The named bits below are the ones the
// cache uses; bits 5..31 are free for callers and print as "bit5".."bit31".
type Bits uint32

// The state bits, named after their btrfs extent_io_tree counterparts.
const (
	// Dirty: the cache holds data newer than the backing store.
	Dirty Bits = 1 << iota
	// Delalloc: backing space is reserved but not yet allocated (the alloc
	// package owns the accounting).
	Delalloc
	// Writeback: claimed by an in-flight backing write.
	Writeback
	// Locked: an exclusive range lock (see Tree.Lock).
	Locked
	// Zeroed: known to read as zeros (WRITE_ZEROES, TRIM).
	Zeroed
)

// NumBits is the number of bits in a Bits value.
const NumBits = 32

var bitNames = [...]string{"Dirty", "Delalloc", "Writeback", "Locked", "Zeroed"}

// String returns the names of the set bits joined by "|", such as
// "Dirty|Writeback", or "0" when no bit is set.
func (b Bits) String() string {
	if b == 0 {
		return "0"
	}
	var sb strings.Builder
	for v := uint32(b); v != 0; v &= v - 1 {
		i := bits.TrailingZeros32(v)
		if sb.Len() > 0 {
			sb.WriteByte('|')
		}
		if i < len(bitNames) {
			sb.WriteString(bitNames[i])
		} else {
			sb.WriteString("bit")
			sb.WriteString(strconv.Itoa(i))
		}
	}
	return sb.String()
}
