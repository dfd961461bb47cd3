package alloc

import (
	"fmt"
	"slices"
)

// mapBits are the per-block states Space tracks.
type mapBits uint8

const (
	// allocatedBit: the block is backed by storage in the image file.
	allocatedBit mapBits = 1 << iota
	// reservedBit: the cache reserved the block for data not yet written
	// back (delalloc).
	reservedBit
	// chargedBit: a File write in progress charged the block (it was
	// neither allocated nor reserved); it becomes allocated when the
	// write succeeds.
	chargedBit

	numBits = 3
)

// String names the bits, for test failures.
func (b mapBits) String() string {
	switch b {
	case 0:
		return "free"
	case allocatedBit:
		return "allocated"
	case reservedBit:
		return "reserved"
	case chargedBit:
		return "charged"
	}
	return fmt.Sprintf("mapBits(%#x)", uint8(b))
}

// run is one stored record of a blockMap: [start, end) with bits != 0.
type run struct {
	start, end int64
	bits       mapBits
}

// blockMap records mapBits over byte ranges, in sorted, non-overlapping runs
// with non-zero bits; neighbours with equal bits are merged. Ranges not
// covered by a run have no bits. Offsets are multiples of the block size
// (callers round). It is not safe for concurrent use (Space.mu owns it).
type blockMap struct {
	size  int64
	runs  []run
	bytes [numBits]int64 // bytes with each bit (1<<i)
	pend  []run          // scratch for apply
}

func newBlockMap(size int64) *blockMap { return &blockMap{size: size} }

// find returns the index of the first run ending after off.
func (m *blockMap) find(off int64) int {
	i, _ := slices.BinarySearchFunc(m.runs, off, func(r run, off int64) int {
		if r.end <= off {
			return -1
		}
		return 1
	})
	return i
}

// apply sets the bits set and then clears the bits clr on [start, end). It
// returns the bytes that gained and lost a bit, per bit.
func (m *blockMap) apply(start, end int64, set, clr mapBits) (gained, lost [numBits]int64) {
	if start >= end {
		return
	}
	i := m.find(start)
	pend := m.pend[:0]
	cur := start
	j := i
	for ; j < len(m.runs) && m.runs[j].start < end; j++ {
		r := m.runs[j]
		if r.start < start {
			pend = append(pend, run{r.start, start, r.bits})
		}
		s, e := max(r.start, start), min(r.end, end)
		if cur < s {
			pend = append(pend, run{cur, s, set &^ clr})
			count(&gained, &lost, 0, set&^clr, s-cur)
		}
		nb := (r.bits | set) &^ clr
		pend = append(pend, run{s, e, nb})
		count(&gained, &lost, r.bits, nb, e-s)
		if r.end > end {
			pend = append(pend, run{end, r.end, r.bits})
		}
		cur = e
	}
	if cur < end {
		pend = append(pend, run{cur, end, set &^ clr})
		count(&gained, &lost, 0, set&^clr, end-cur)
	}
	m.runs = slices.Replace(m.runs, i, j, pend...)
	m.pend = pend[:0]
	// Normalise the changed window and its left neighbour: drop empty runs,
	// merge touching runs with equal bits.
	lo, hi := max(i-1, 0), min(i+len(pend)+1, len(m.runs))
	w := lo
	for k := lo; k < hi; k++ {
		r := m.runs[k]
		if r.bits == 0 || r.start >= r.end {
			continue
		}
		if w > lo && m.runs[w-1].end == r.start && m.runs[w-1].bits == r.bits {
			m.runs[w-1].end = r.end
			continue
		}
		m.runs[w] = r
		w++
	}
	m.runs = slices.Delete(m.runs, w, hi)
	for b := range numBits {
		m.bytes[b] += gained[b] - lost[b]
	}
	return gained, lost
}

func count(gained, lost *[numBits]int64, from, to mapBits, n int64) {
	for b := range numBits {
		bit := mapBits(1) << b
		switch {
		case from&bit == 0 && to&bit != 0:
			gained[b] += n
		case from&bit != 0 && to&bit == 0:
			lost[b] += n
		}
	}
}

// ascend calls fn for every run intersecting [start, end), clipped to it, in
// order, until fn returns false. fn must not modify m.
func (m *blockMap) ascend(start, end int64, fn func(r run) bool) {
	for i := m.find(start); i < len(m.runs) && m.runs[i].start < end; i++ {
		r := m.runs[i]
		r.start, r.end = max(r.start, start), min(r.end, end)
		if !fn(r) {
			return
		}
	}
}

// check verifies the invariants of m.
func (m *blockMap) check() error {
	var bytes [numBits]int64
	prev := run{}
	for k, r := range m.runs {
		switch {
		case r.start >= r.end:
			return fmt.Errorf("run %d [%d,%d) is empty", k, r.start, r.end)
		case r.start < 0 || r.end > m.size:
			return fmt.Errorf("run %d [%d,%d) outside [0,%d)", k, r.start, r.end, m.size)
		case r.bits == 0:
			return fmt.Errorf("run %d [%d,%d) has no bits", k, r.start, r.end)
		case k > 0 && r.start < prev.end:
			return fmt.Errorf("run %d [%d,%d) overlaps or precedes [%d,%d)", k, r.start, r.end, prev.start, prev.end)
		case k > 0 && r.start == prev.end && r.bits == prev.bits:
			return fmt.Errorf("runs at %d not merged (%v)", r.start, r.bits)
		}
		for b := range numBits {
			if r.bits&(1<<b) != 0 {
				bytes[b] += r.end - r.start
			}
		}
		prev = r
	}
	if bytes != m.bytes {
		return fmt.Errorf("byte counters %v, runs hold %v", m.bytes, bytes)
	}
	return nil
}
