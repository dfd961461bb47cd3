package statetree

import "slices"

// defaultBulkLeaves is the number of leaves an op must span before apply
// switches from in-place edits to rewriting the affected leaves. In place,
// every leaf split or drop moves the leaf index (O(leaves)), which would make
// a whole-device op on a fragmented tree quadratic; a rewrite is
// O(records touched + leaves).
const defaultBulkLeaves = 4

// maxKeptScratch is the largest scratch buffer (in records) a Tree keeps
// between bulk ops; larger ones are dropped so that one whole-device op does
// not pin memory.
const maxKeptScratch = 1 << 14

// bulkApply performs o over [start,end) by reading every record of the
// affected leaves into a flat list, applying o to the list with merging, and
// writing the result back into packed leaves with one index replacement.
// a is s.seek(start).
func (t *Tree) bulkApply(start, end int64, o op, a pos) (changed bool) {
	s := &t.s
	b := s.seek(end)
	lo := max(a.li-1, 0)
	hi := min(b.li+1, len(s.leaves))
	total := 0
	for li := lo; li < hi; li++ {
		total += s.counts[li]
	}
	in := slices.Grow(t.scratchIn[:0], total)
	for li := lo; li < hi; li++ {
		in = append(in, s.leaves[li][:s.counts[li]]...)
	}
	gapBits, gapOwner := o.on(0, 0) // what a gap becomes
	out := t.scratchOut[:0]
	if gapBits != 0 {
		// The output may approach its bound (every gap filled): size
		// it once rather than by repeated doubling.
		out = slices.Grow(out, 2*len(in)+2)
	}
	// emit appends r to out, merging it with the last record when they
	// touch and are equal.
	emit := func(r Range) {
		if n := len(out); n > 0 && out[n-1].End == r.Start && out[n-1].Bits == r.Bits && out[n-1].Owner == r.Owner {
			out[n-1].End = r.End
			return
		}
		out = append(out, r)
	}
	fillGap := func(from, to int64) {
		if gapBits != 0 && from < to {
			changed = true
			t.account(from, to, 0, 0, gapBits, gapOwner, &o)
			emit(Range{from, to, gapBits, gapOwner})
		}
	}
	cur := start
	for _, r := range in {
		if r.End <= start {
			emit(r)
			continue
		}
		if r.Start >= end {
			fillGap(cur, end)
			cur = end
			emit(r)
			continue
		}
		fillGap(cur, r.Start)
		ms, me := max(r.Start, start), min(r.End, end)
		if r.Start < ms {
			emit(Range{r.Start, ms, r.Bits, r.Owner})
		}
		nb, no := o.on(r.Bits, r.Owner)
		if nb != r.Bits || no != r.Owner {
			changed = true
			t.account(ms, me, r.Bits, r.Owner, nb, no, &o)
		}
		if nb != 0 {
			emit(Range{ms, me, nb, no})
		}
		if r.End > me {
			emit(Range{me, r.End, r.Bits, r.Owner})
		}
		cur = me
	}
	fillGap(cur, end)

	// Pack out into leaves filled to 7/8, leaving room for later inserts,
	// reusing the leaves it replaces.
	const fill = leafCap * 7 / 8
	m := (len(out) + fill - 1) / fill
	nl := t.scratchLeaves[:0]
	nc := t.scratchCounts[:0]
	nm := t.scratchMins[:0]
	for j, off := 0, 0; j < m; j++ {
		cnt := len(out) / m
		if j < len(out)%m {
			cnt++
		}
		var lf *leaf
		if lo+j < hi {
			lf = s.leaves[lo+j]
		} else {
			lf = s.newLeaf()
		}
		copy(lf[:cnt], out[off:off+cnt])
		nl, nc, nm = append(nl, lf), append(nc, cnt), append(nm, lf[0].Start)
		off += cnt
	}
	for li := lo + m; li < hi; li++ {
		s.freeLeaf(s.leaves[li])
	}
	s.leaves = replace(s.leaves, lo, hi, nl)
	s.counts = replace(s.counts, lo, hi, nc)
	s.mins = replace(s.mins, lo, hi, nm)
	s.n += len(out) - len(in)

	clear(nl)
	t.scratchIn, t.scratchOut = keepScratch(in), keepScratch(out)
	t.scratchLeaves, t.scratchCounts, t.scratchMins = keepScratch(nl), keepScratch(nc), keepScratch(nm)
	return changed
}

// replace returns dst with dst[lo:hi] replaced by src, in place (growing
// dst only when it must). It clears the vacated tail, so dropped leaf
// pointers do not stay reachable.
func replace[T any](dst []T, lo, hi int, src []T) []T {
	n, d := len(dst), len(src)-(hi-lo)
	switch {
	case d > 0:
		dst = slices.Grow(dst, d)[:n+d]
		copy(dst[hi+d:], dst[hi:n])
	case d < 0:
		copy(dst[hi+d:], dst[hi:n])
		clear(dst[n+d : n])
		dst = dst[:n+d]
	}
	copy(dst[lo:], src)
	return dst
}

func keepScratch[T any](b []T) []T {
	if cap(b) > maxKeptScratch {
		return nil
	}
	return b[:0]
}
