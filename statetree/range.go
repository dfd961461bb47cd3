package statetree

import "fmt"

// Range is one record of the tree, or a piece of one: the half-open byte
// range [Start, End) whose every byte has exactly the bits Bits and the
// owner tag Owner. Range holds no pointers; queries return copies.
type Range struct {
	Start, End int64
	Bits       Bits
	Owner      uint32
}

// Len returns End - Start in bytes.
func (r Range) Len() int64 { return r.End - r.Start }

// String formats r as "[start,end) Bits owner=N".
func (r Range) String() string {
	return fmt.Sprintf("[%d,%d) %v owner=%d", r.Start, r.End, r.Bits, r.Owner)
}

// ChangeSet records the exact sub-ranges whose bits a SetRecord or
// ClearRecord changed, in ascending order. In each piece, Bits holds the bits
// that changed there (gained for SetRecord, lost for ClearRecord) and Owner
// the owner the bytes have after a set, or had before a clear. Adjacent
// pieces with equal Bits and Owner are coalesced. Bytes is the sum of the
// pieces' lengths.
//
// A ChangeSet is enough for exact accounting (charge only newly reserved
// bytes) and exact undo (ClearRecord the pieces of a SetRecord, or SetRecord
// each piece of a ClearRecord with its Owner).
type ChangeSet struct {
	Pieces []Range
	Bytes  int64
}

// Reset empties cs and keeps the capacity of Pieces, so that a reused
// ChangeSet allocates nothing in steady state.
func (cs *ChangeSet) Reset() {
	cs.Pieces = cs.Pieces[:0]
	cs.Bytes = 0
}

// add appends [start,end) with bits b and owner o, coalescing with the last
// piece when it touches and is equal.
func (cs *ChangeSet) add(start, end int64, b Bits, o uint32) {
	cs.Bytes += end - start
	if n := len(cs.Pieces); n > 0 {
		l := &cs.Pieces[n-1]
		if l.End == start && l.Bits == b && l.Owner == o {
			l.End = end
			return
		}
	}
	cs.Pieces = append(cs.Pieces, Range{start, end, b, o})
}
