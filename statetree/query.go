package statetree

import "iter"

// Walks step over segments of the device: a segment is either a record or a
// gap (bits 0), clipped to the walk's bounds. Queries that reason about
// bytes use them, so gaps are handled exactly like records with no bits.

// fwdWalk yields the segments covering [cur, limit) in ascending order.
type fwdWalk struct {
	t     *Tree
	p     pos
	cur   int64
	limit int64
}

func (t *Tree) walkFrom(from, limit int64) fwdWalk {
	return fwdWalk{t: t, p: t.s.seek(from), cur: from, limit: limit}
}

// next returns the next segment [start,end) and its bits.
func (w *fwdWalk) next() (start, end int64, b Bits, ok bool) {
	if w.cur >= w.limit {
		return 0, 0, 0, false
	}
	s := &w.t.s
	start = w.cur
	if s.valid(w.p) {
		r := s.at(w.p)
		if r.Start > w.cur {
			end = min(r.Start, w.limit)
		} else {
			end, b = min(r.End, w.limit), r.Bits
			w.p = s.next(w.p)
		}
	} else {
		end = w.limit
	}
	w.cur = end
	return start, end, b, true
}

// bwdWalk yields the segments covering [limit, cur) in descending order.
type bwdWalk struct {
	t     *Tree
	p     pos // the last record with Start < cur, if ok
	ok    bool
	cur   int64
	limit int64
}

func (t *Tree) walkBack(from, limit int64) bwdWalk {
	return t.walkBackPos(t.s.seek(from), from, limit)
}

// walkBackPos is walkBack with p = t.s.seek(from) already known.
func (t *Tree) walkBackPos(p pos, from, limit int64) bwdWalk {
	// The last record with Start < from is p itself when p starts before
	// from (it contains from), else the record before p.
	w := bwdWalk{t: t, cur: from, limit: limit}
	if t.s.valid(p) && t.s.at(p).Start < from {
		w.p, w.ok = p, true
	} else {
		w.p, w.ok = t.s.prev(p)
	}
	return w
}

// next returns the next segment [start,end) going down, and its bits.
func (w *bwdWalk) next() (start, end int64, b Bits, ok bool) {
	if w.cur <= w.limit {
		return 0, 0, 0, false
	}
	end = w.cur
	if w.ok {
		r := w.t.s.at(w.p)
		if r.End < w.cur {
			start = max(r.End, w.limit)
		} else {
			start, b = max(r.Start, w.limit), r.Bits
			w.p, w.ok = w.t.s.prev(w.p)
		}
	} else {
		start = w.limit
	}
	w.cur = start
	return start, end, b, true
}

// clampQuery clips a query range to the device.
func (t *Tree) clampQuery(start, end int64) (int64, int64) {
	return max(start, 0), min(end, t.size)
}

// Get returns a copy of the record containing byte off.
func (t *Tree) Get(off int64) (Range, bool) {
	p := t.s.seek(off)
	if t.s.valid(p) {
		if r := t.s.at(p); r.Start <= off {
			return r, true
		}
	}
	return Range{}, false
}

// FindFirst returns a copy of the first record with End > from that has any
// of the bits in any. The record may start before from. Gaps are never
// returned; any == 0 finds nothing.
func (t *Tree) FindFirst(from int64, any Bits) (Range, bool) {
	if any == 0 {
		return Range{}, false
	}
	for p := t.s.seek(max(from, 0)); t.s.valid(p); p = t.s.next(p) {
		if r := t.s.at(p); r.Bits&any != 0 {
			return r, true
		}
	}
	return Range{}, false
}

// FindFirstMatch is FindFirst that also skips records having any bit of
// avoid: it returns a copy of the first record with End > from that has a
// bit of any and no bit of avoid, such as the first Dirty record not
// already under Writeback or Locked. The record may start before from.
func (t *Tree) FindFirstMatch(from int64, any, avoid Bits) (Range, bool) {
	if any == 0 {
		return Range{}, false
	}
	for p := t.s.seek(max(from, 0)); t.s.valid(p); p = t.s.next(p) {
		if r := t.s.at(p); r.Bits&any != 0 && r.Bits&avoid == 0 {
			return r, true
		}
	}
	return Range{}, false
}

// FindFirstClear returns the first maximal run of bytes having none of the
// bits b, gaps included, that contains from or lies after it. The run may
// start before from. end is Size when the run reaches the end of the device.
// If no byte at or after from lacks b, it returns (Size, Size). b == 0
// returns the whole device.
func (t *Tree) FindFirstClear(from int64, b Bits) (start, end int64) {
	from = max(from, 0)
	w := t.walkFrom(from, t.size)
	start = -1
	for {
		a, _, sb, ok := w.next()
		if !ok {
			break
		}
		if sb&b != 0 {
			if start >= 0 {
				return start, a
			}
			continue
		}
		if start < 0 {
			start = a
			if a == from {
				bw := t.walkBack(from, 0)
				for {
					ba, _, bb, ok := bw.next()
					if !ok || bb&b != 0 {
						break
					}
					start = ba
				}
			}
		}
	}
	if start < 0 {
		return t.size, t.size
	}
	return start, t.size
}

// FindContiguous finds the first byte at or after from that has all the
// bits in all, and returns the run of contiguous bytes from there that all
// have them, at most maxLen bytes long (maxLen <= 0: unbounded). Unlike
// btrfs's find_contiguous_extent_bit it re-checks every record, so it stops
// at a touching record that lacks the bits as well as at a gap. The start is
// never before from. all == 0 matches every byte, gaps included.
func (t *Tree) FindContiguous(from int64, all Bits, maxLen int64) (start, end int64, ok bool) {
	from = max(from, 0)
	w := t.walkFrom(from, t.size)
	start = -1
	for {
		a, e, sb, more := w.next()
		if !more {
			break
		}
		if sb&all != all {
			if start >= 0 {
				break
			}
			continue
		}
		if start < 0 {
			start = a
			if maxLen > 0 && maxLen < w.limit-start {
				w.limit = start + maxLen
			}
		}
		end = min(e, w.limit)
	}
	if start < 0 {
		return 0, 0, false
	}
	return start, end, true
}

// Cluster returns the largest run of contiguous bytes around off whose bits
// include all of want and none of avoid, for writeback to claim as one I/O.
// It grows backwards and forwards from off over records and (when want is 0
// and avoid allows) gaps. The result:
//   - contains off, and ok is false if the byte at off itself does not
//     qualify;
//   - lies within the aligned window [floor(off/align)*align, +align) when
//     align > 0 (and within [0, Size) always);
//   - is at most maxLen bytes when maxLen > 0. When the run is longer, the
//     result starts as early as it can while still containing the block of
//     off.
//
// maxLen and align are rounded down to multiples of BlockSize (at least one
// block). off need not be block-aligned.
func (t *Tree) Cluster(off int64, want, avoid Bits, maxLen, align int64) (start, end int64, ok bool) {
	if off < 0 || off >= t.size {
		return 0, 0, false
	}
	bs := t.blockSize
	ob := off / bs * bs
	// One search serves the test at off and both walks: records are
	// block-aligned, so the record holding ob holds off.
	p := t.s.seek(ob)
	var b Bits
	if t.s.valid(p) {
		if r := t.s.at(p); r.Start <= ob {
			b = r.Bits
		}
	}
	if b&want != want || b&avoid != 0 {
		return 0, 0, false
	}
	ws, we := int64(0), t.size
	if align > 0 {
		align = max(align/bs*bs, bs)
		ws = off / align * align
		we = ws + min(align, t.size-ws)
	}
	lo := ws
	if maxLen > 0 {
		ml := max(maxLen/bs*bs, bs)
		lo = max(lo, ob+bs-ml)
		maxLen = ml
	}
	// The walks below loop over the leaf arrays directly: Cluster is on
	// writeback's hot path and may cross hundreds of records.
	gapOK := want == 0 // a gap has no bits, so it never has avoid
	sl := &t.s

	// Backwards from the start of off's block, down to lo.
	start = ob
	q, ok := p, false
	if sl.valid(p) && sl.at(p).Start < ob {
		ok = true
	} else {
		q, ok = sl.prev(p)
	}
	stopped := false
back:
	for li, i := q.li, q.i; ok && li >= 0 && start > lo; li, i = li-1, -1 {
		lf := sl.leaves[li][:sl.counts[li]]
		if i < 0 {
			i = len(lf) - 1
		}
		for ; i >= 0; i-- {
			r := &lf[i]
			if r.End < start {
				if !gapOK {
					stopped = true
					break back
				}
				if start = max(r.End, lo); start <= lo {
					break back
				}
			}
			if r.Bits&want != want || r.Bits&avoid != 0 {
				stopped = true
				break back
			}
			if start = max(r.Start, lo); start <= lo {
				break back
			}
		}
	}
	if !stopped && gapOK {
		start = lo // a gap reaches down to lo
	}

	hi := we
	if maxLen > 0 && maxLen < hi-start {
		hi = start + maxLen
	}

	// Forwards from ob, up to hi.
	end = ob
	stopped = false
fwd:
	for li, i := p.li, p.i; li < len(sl.leaves) && end < hi; li, i = li+1, 0 {
		lf := sl.leaves[li][:sl.counts[li]]
		for ; i < len(lf); i++ {
			r := &lf[i]
			if r.Start > end {
				if !gapOK {
					stopped = true
					break fwd
				}
				if end = min(r.Start, hi); end >= hi {
					break fwd
				}
			}
			if r.Bits&want != want || r.Bits&avoid != 0 {
				stopped = true
				break fwd
			}
			if end = min(r.End, hi); end >= hi {
				break fwd
			}
		}
	}
	if !stopped && gapOK {
		end = hi // a gap reaches up to hi
	}
	return start, end, true
}

// Count returns n, the number of bytes in [start,end) that have all the bits
// in all, and first, the first such byte (-1 when n is 0). With contig it
// counts only the first contiguous run of such bytes. With max > 0 it stops
// once n reaches max and never returns more than max (no overshoot, unlike
// btrfs's count_range_bits); first is correct even when the first matching
// record alone exceeds max. all == 0 matches every byte, gaps included.
func (t *Tree) Count(start, end int64, all Bits, contig bool, max int64) (n, first int64) {
	start, end = t.clampQuery(start, end)
	first = -1
	w := t.walkFrom(start, end)
	for {
		a, e, b, ok := w.next()
		if !ok {
			break
		}
		if b&all != all {
			if contig && first >= 0 {
				break
			}
			continue
		}
		if first < 0 {
			first = a
		}
		n += e - a
		if max > 0 && n >= max {
			n = max
			break
		}
	}
	return n, first
}

// TestAll reports whether every byte of [start,end) has all the bits in b.
// A gap fails unless b is 0. An empty range gives true.
func (t *Tree) TestAll(start, end int64, b Bits) bool {
	start, end = t.clampQuery(start, end)
	w := t.walkFrom(start, end)
	for {
		_, _, sb, ok := w.next()
		if !ok {
			return true
		}
		if sb&b != b {
			return false
		}
	}
}

// TestAny reports whether any byte of [start,end) has any of the bits in b.
func (t *Tree) TestAny(start, end int64, b Bits) bool {
	start, end = t.clampQuery(start, end)
	if b == 0 || start >= end {
		return false
	}
	for p := t.s.seek(start); t.s.valid(p); p = t.s.next(p) {
		r := t.s.at(p)
		if r.Start >= end {
			break
		}
		if r.Bits&b != 0 {
			return true
		}
	}
	return false
}

// Union returns the OR of the bits of every byte in [start,end) (btrfs
// get_range_bits).
func (t *Tree) Union(start, end int64) Bits {
	start, end = t.clampQuery(start, end)
	var u Bits
	if start >= end {
		return 0
	}
	for p := t.s.seek(start); t.s.valid(p); p = t.s.next(p) {
		r := t.s.at(p)
		if r.Start >= end {
			break
		}
		u |= r.Bits
	}
	return u
}

// Ascend calls fn, in ascending order, with a copy of every record that
// overlaps [start,end), clipped to [start,end), until fn returns false. Gaps
// are skipped. fn must not mutate t.
func (t *Tree) Ascend(start, end int64, fn func(Range) bool) {
	start, end = t.clampQuery(start, end)
	if start >= end {
		return
	}
	for p := t.s.seek(start); t.s.valid(p); p = t.s.next(p) {
		r := t.s.at(p)
		if r.Start >= end {
			return
		}
		r.Start, r.End = max(r.Start, start), min(r.End, end)
		if !fn(r) {
			return
		}
	}
}

// Ranges returns an iterator over the records overlapping [start,end),
// clipped like Ascend. The loop body must not mutate t.
func (t *Tree) Ranges(start, end int64) iter.Seq[Range] {
	return func(yield func(Range) bool) { t.Ascend(start, end, yield) }
}

// AscendRecords is Ascend without clipping: fn sees whole records, which may
// begin before start or end after end.
func (t *Tree) AscendRecords(start, end int64, fn func(Range) bool) {
	start, end = t.clampQuery(start, end)
	if start >= end {
		return
	}
	for p := t.s.seek(start); t.s.valid(p); p = t.s.next(p) {
		r := t.s.at(p)
		if r.Start >= end || !fn(r) {
			return
		}
	}
}
