package statetree

import (
	"fmt"
	"math/bits"
)

// Check verifies every invariant of the tree and returns an error wrapping
// ErrCorrupt naming the first one that fails:
//   - records are sorted by Start and do not overlap (r[i].End <= r[i+1].Start);
//   - no empty records: Start < End and Bits != 0;
//   - every record lies within [0, Size), its ends on block boundaries (or Size);
//   - touching neighbours differ in Bits or Owner (maximal merging);
//   - the per-bit byte counters equal the sums over the records;
//   - the container's own bookkeeping (leaf counts, leaf minimums, Len).
//
// It is O(n) and meant for tests and debugging.
func (t *Tree) Check() error {
	s := &t.s
	if len(s.mins) != len(s.leaves) || len(s.counts) != len(s.leaves) {
		return fmt.Errorf("%w: index slices differ in length", ErrCorrupt)
	}
	var sums [NumBits]int64
	total := 0
	var prev Range
	havePrev := false
	for li, lf := range s.leaves {
		n := s.counts[li]
		if n <= 0 || n > leafCap {
			return fmt.Errorf("%w: leaf %d holds %d records", ErrCorrupt, li, n)
		}
		if s.mins[li] != lf[0].Start {
			return fmt.Errorf("%w: leaf %d min %d != first start %d", ErrCorrupt, li, s.mins[li], lf[0].Start)
		}
		for _, r := range lf[:n] {
			total++
			if r.Start >= r.End {
				return fmt.Errorf("%w: empty record %v", ErrCorrupt, r)
			}
			if r.Bits == 0 {
				return fmt.Errorf("%w: record %v has no bits", ErrCorrupt, r)
			}
			if r.Start < 0 || r.End > t.size {
				return fmt.Errorf("%w: record %v outside [0,%d)", ErrCorrupt, r, t.size)
			}
			if r.Start%t.blockSize != 0 || (r.End%t.blockSize != 0 && r.End != t.size) {
				return fmt.Errorf("%w: record %v not aligned to %d", ErrCorrupt, r, t.blockSize)
			}
			if havePrev {
				if prev.End > r.Start {
					return fmt.Errorf("%w: records %v and %v overlap or are unsorted", ErrCorrupt, prev, r)
				}
				if prev.End == r.Start && prev.Bits == r.Bits && prev.Owner == r.Owner {
					return fmt.Errorf("%w: records %v and %v are not merged", ErrCorrupt, prev, r)
				}
			}
			for v := uint32(r.Bits); v != 0; v &= v - 1 {
				sums[bits.TrailingZeros32(v)] += r.Len()
			}
			prev, havePrev = r, true
		}
	}
	if total != s.n {
		return fmt.Errorf("%w: Len %d but %d records", ErrCorrupt, s.n, total)
	}
	for i := range sums {
		if sums[i] != t.bytes[i] {
			return fmt.Errorf("%w: counter for %v is %d, records sum to %d", ErrCorrupt, Bits(1)<<i, t.bytes[i], sums[i])
		}
	}
	return nil
}
