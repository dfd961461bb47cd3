package statetree

import "slices"

// leafCap is the number of records in one leaf. 64 records of 24 bytes are
// 1536 bytes, exactly one Go size class, so a full leaf wastes nothing.
const leafCap = 64

// leaf holds up to leafCap records; only the first counts[li] are live.
// Records contain no pointers, so the garbage collector never scans leaves.
type leaf [leafCap]Range

// maxFreeLeaves bounds the recycled-leaf list. A few spare leaves are enough
// to make a split after a merge (and the reverse) allocation-free.
const maxFreeLeaves = 8

// store is the ordered record container: a B+tree of height two. The upper
// level is three parallel slices indexed by leaf number; the lower level is
// fixed-size leaves of records kept in place.
//
// Invariants (checked by Tree.Check):
//   - len(mins) == len(leaves) == len(counts)
//   - 0 < counts[li] <= leafCap for every leaf
//   - mins[li] == leaves[li][0].Start
//   - records across leaves, in leaf order, are sorted by Start
//
// A leaf split or merge moves O(number of leaves) words in the index, which
// is a few microseconds at a million ranges and amortised over ~32 inserts.
type store struct {
	mins   []int64 // mins[li]: Start of the first record of leaf li
	leaves []*leaf
	counts []int   // live records in leaf li
	n      int     // total records
	free   []*leaf // recycled leaves, at most maxFreeLeaves

	// hint is the leaf of the last mutation, tried before the index
	// search (the analogue of btrfs's cached_state). Only mutations write
	// it; a stale hint is detected and costs only the search.
	hint int
}

// pos is a position in the store: record i of leaf li. The end position is
// {len(leaves), 0}. A pos is invalidated by any insert or remove except the
// one that returned it.
type pos struct{ li, i int }

func (s *store) valid(p pos) bool { return p.li < len(s.leaves) }

func (s *store) at(p pos) Range { return s.leaves[p.li][p.i] }

// setEnd changes the End of the record at p; order is unaffected.
func (s *store) setEnd(p pos, end int64) { s.leaves[p.li][p.i].End = end }

// set overwrites the record at p. The caller keeps the order: r.Start must
// stay between the neighbours' records.
func (s *store) set(p pos, r Range) {
	s.leaves[p.li][p.i] = r
	if p.i == 0 {
		s.mins[p.li] = r.Start
	}
}

func (s *store) next(p pos) pos {
	p.i++
	if p.i >= s.counts[p.li] {
		p.li++
		p.i = 0
	}
	return p
}

// prev returns the position before p (p may be the end position).
func (s *store) prev(p pos) (pos, bool) {
	if p.i > 0 {
		p.i--
		return p, true
	}
	if p.li == 0 {
		return p, false
	}
	p.li--
	p.i = s.counts[p.li] - 1
	return p, true
}

// normalize turns {li, counts[li]} into the first record of the next leaf.
func (s *store) normalize(p pos) pos {
	if p.li < len(s.leaves) && p.i >= s.counts[p.li] {
		return pos{p.li + 1, 0}
	}
	return p
}

// seek returns the position of the first record with End > off, or the end
// position. Records are non-overlapping, so their Ends are sorted too.
func (s *store) seek(off int64) pos {
	// Last leaf whose first record starts at or before off. The searches
	// are written to compile to conditional moves: offsets arrive in random
	// order, so branches would mispredict half the time.
	mins := s.mins
	if len(mins) == 0 || mins[0] > off {
		return pos{0, 0}
	}
	li := s.hint
	if li >= len(mins) || mins[li] > off || (li+1 < len(mins) && mins[li+1] <= off) {
		li = 0
		for n := len(mins); n > 1; {
			half := n >> 1
			if mins[li+half] <= off {
				li += half
			}
			n -= half
		}
	}
	// First record in the leaf with End > off.
	lf, cnt := s.leaves[li], s.counts[li]
	if lf[cnt-1].End <= off {
		return pos{li + 1, 0}
	}
	i, n := 0, cnt
	for n > 1 {
		half := n >> 1
		if lf[i+half-1].End <= off {
			i += half
		}
		n -= half
	}
	return pos{li, i}
}

func (s *store) newLeaf() *leaf {
	if n := len(s.free); n > 0 {
		lf := s.free[n-1]
		s.free = s.free[:n-1]
		return lf
	}
	return new(leaf)
}

func (s *store) freeLeaf(lf *leaf) {
	if len(s.free) < maxFreeLeaves {
		s.free = append(s.free, lf)
	}
}

// addLeaf inserts leaf lf holding n records at index li.
func (s *store) addLeaf(li int, lf *leaf, n int) {
	s.leaves = slices.Insert(s.leaves, li, lf)
	s.counts = slices.Insert(s.counts, li, n)
	s.mins = slices.Insert(s.mins, li, lf[0].Start)
}

// dropLeaf removes leaf li from the index and recycles it.
func (s *store) dropLeaf(li int) {
	lf := s.leaves[li]
	s.leaves[li] = nil
	s.leaves = slices.Delete(s.leaves, li, li+1)
	s.counts = slices.Delete(s.counts, li, li+1)
	s.mins = slices.Delete(s.mins, li, li+1)
	s.freeLeaf(lf)
}

// insert puts r before position p and returns r's position. The caller keeps
// the order.
func (s *store) insert(p pos, r Range) pos {
	s.n++
	if len(s.leaves) == 0 {
		lf := s.newLeaf()
		lf[0] = r
		s.addLeaf(0, lf, 1)
		return pos{0, 0}
	}
	if p.i == 0 && p.li > 0 {
		// Between two leaves (or after the last one): prefer the end of
		// the previous leaf, then the front of this one, then a new leaf
		// (spill, which fills leaves completely under sequential appends).
		switch {
		case s.counts[p.li-1] < leafCap:
			p = pos{p.li - 1, s.counts[p.li-1]}
		case p.li < len(s.leaves) && s.counts[p.li] < leafCap:
		default:
			lf := s.newLeaf()
			lf[0] = r
			s.addLeaf(p.li, lf, 1)
			return pos{p.li, 0}
		}
	}
	n := s.counts[p.li]
	if n == leafCap {
		// Split in half and insert into the half that owns p.
		h := leafCap / 2
		lf, nf := s.leaves[p.li], s.newLeaf()
		copy(nf[:], lf[h:n])
		s.counts[p.li] = h
		s.addLeaf(p.li+1, nf, n-h)
		if p.i > h {
			p = pos{p.li + 1, p.i - h}
		}
		n = s.counts[p.li]
	}
	lf := s.leaves[p.li]
	copy(lf[p.i+1:n+1], lf[p.i:n])
	lf[p.i] = r
	s.counts[p.li] = n + 1
	if p.i == 0 {
		s.mins[p.li] = r.Start
	}
	return p
}

// remove deletes the record at p and returns the position of the record that
// followed it (or the end position).
func (s *store) remove(p pos) pos {
	s.n--
	li := p.li
	lf, n := s.leaves[li], s.counts[li]
	copy(lf[p.i:n-1], lf[p.i+1:n])
	n--
	s.counts[li] = n
	if n == 0 {
		s.dropLeaf(li)
		return pos{li, 0}
	}
	if p.i == 0 {
		s.mins[li] = lf[0].Start
	}
	// Rebalance: merge a small leaf into a neighbour when the result
	// leaves room (hysteresis keeps a split and a merge from alternating).
	const low, high = leafCap / 4, leafCap * 3 / 4
	if n < low {
		if li+1 < len(s.leaves) && n+s.counts[li+1] <= high {
			m := s.counts[li+1]
			copy(lf[n:n+m], s.leaves[li+1][:m])
			s.counts[li] = n + m
			s.dropLeaf(li + 1)
			return s.normalize(p)
		}
		if li > 0 && s.counts[li-1]+n <= high {
			pl, m := s.leaves[li-1], s.counts[li-1]
			copy(pl[m:m+n], lf[:n])
			s.counts[li-1] = m + n
			s.dropLeaf(li)
			return s.normalize(pos{li - 1, m + p.i})
		}
	}
	return s.normalize(p)
}
