package statetree

import (
	"fmt"
	"math/bits"
	"sync"
)

// Tree is an extent state tree: a set of non-overlapping half-open byte
// ranges, each carrying a bit mask of states and an owner tag.
//
// # Model
//
// Think of the device as an array of bytes, each holding (Bits, Owner). A
// byte with no bits is a gap and has owner 0. The tree stores maximal runs of
// equal non-zero (Bits, Owner) as records: neighbours that touch and are
// equal are always merged, and records never have empty bits. Every query
// answers as if it looked at the bytes, so the record boundaries are not
// observable except through Get, FindFirst and AscendRecords, which return
// whole records.
//
// # Mutations
//
// Set, Clear, Convert, SetRecord, ClearRecord, TrySetExclusive and Unlock
// are atomic and all-or-nothing: arguments are validated before anything
// changes, the tree lock (held by the caller) is never dropped in the middle,
// and nothing in the mutation path can fail. Gen changes exactly when the
// bytes' (Bits, Owner) change.
//
// # Costs
//
// Records are 24-byte pointer-free values in 64-record leaves under a flat
// leaf index (a B+tree of height two; see docs/statetree.md). A search is
// O(log n) and tries the leaf of the last mutation first. A mutation
// touching k records costs a search plus O(k), and allocates nothing in
// steady state; one spanning many leaves rewrites them in O(k + leaves).
// Queries that walk (FindFirst, FindFirstClear, FindContiguous, Cluster,
// Count, Test*, Union, Ascend) cost a search plus the records they pass.
// Memory: about 24 bytes per range after sequential fills, 35 after random
// ones.
//
// # Concurrency
//
// Tree has no lock of its own; see the package documentation.
type Tree struct {
	s         store
	size      int64
	blockSize int64
	blockMask int64 // blockSize-1 when it is a power of two, else -1
	locker    sync.Locker
	gen       uint64
	bytes     [NumBits]int64 // bytes[i]: total bytes having bit i; sums over records
	waiters   []*waiter      // goroutines blocked in WaitClear or Lock
	woken     uint64         // waiters woken so far (for tests)

	// bulkLeaves: ops spanning more leaves than this take bulkApply;
	// 0 sends every op there (tests use it to cover that path).
	bulkLeaves int
	// Scratch buffers for bulkApply, kept between calls while small.
	scratchIn, scratchOut []Range
	scratchLeaves         []*leaf
	scratchCounts         []int
	scratchMins           []int64
}

// New returns an empty Tree. It panics if opts (after EnsureDefaults) is
// invalid; use Options.Validate first to get an error instead.
func New(opts Options) *Tree {
	opts.EnsureDefaults()
	if err := opts.Validate(); err != nil {
		panic(err)
	}
	mask := int64(-1)
	if opts.BlockSize&(opts.BlockSize-1) == 0 {
		mask = opts.BlockSize - 1
	}
	return &Tree{size: opts.Size, blockSize: opts.BlockSize, blockMask: mask, locker: opts.Locker,
		bulkLeaves: defaultBulkLeaves}
}

// Size returns the device size the tree covers.
func (t *Tree) Size() int64 { return t.size }

// BlockSize returns the offset granularity.
func (t *Tree) BlockSize() int64 { return t.blockSize }

// Len returns the number of records.
func (t *Tree) Len() int { return t.s.n }

// Gen returns the generation number. It changes on every mutation that
// changes the tree's contents (never on a call that changes nothing), so a
// caller may cache a query result together with Gen and reuse it while Gen
// is unchanged.
func (t *Tree) Gen() uint64 { return t.gen }

// Bytes returns, in O(1), how many bytes have bit b. b must be a single bit
// for the answer to mean anything: for a mask it returns the sum of the
// per-bit totals, which counts a byte once per bit it has, not the size of
// the union.
func (t *Tree) Bytes(b Bits) int64 {
	var n int64
	for v := uint32(b); v != 0; v &= v - 1 {
		n += t.bytes[bits.TrailingZeros32(v)]
	}
	return n
}

// checkRange panics unless [start,end) is a valid mutation range.
func (t *Tree) checkRange(op string, start, end int64) {
	if start < 0 || end > t.size || start > end ||
		(t.misaligned(start) && start != t.size) || (t.misaligned(end) && end != t.size) {
		badRange(op, start, end, t.size, t.blockSize)
	}
}

// misaligned reports whether off is not a multiple of the block size,
// without a division when the block size is a power of two (the usual case).
func (t *Tree) misaligned(off int64) bool {
	if t.blockMask >= 0 {
		return off&t.blockMask != 0
	}
	return off%t.blockSize != 0
}

//go:noinline
func badRange(op string, start, end, size, bs int64) {
	panic(fmt.Sprintf("statetree: %s [%d,%d): range must satisfy 0 <= start <= end <= size (%d), "+
		"start and end multiples of block size %d (end may equal size)", op, start, end, size, bs))
}

// op describes one mutation: every byte (bits, owner) in the range becomes
// ((bits|set)&^clear, owner') where owner' is owner when setOwner, the old
// owner otherwise, and 0 when the new bits are empty.
type op struct {
	set, clear Bits
	owner      uint32
	setOwner   bool
	cs         *ChangeSet
}

// on returns what o makes of a byte holding bits and owner.
func (o *op) on(bits Bits, owner uint32) (Bits, uint32) {
	nb := (bits | o.set) &^ o.clear
	if nb == 0 {
		return 0, 0
	}
	if o.setOwner {
		return nb, o.owner
	}
	return nb, owner
}

// Set adds bits b to every byte of [start,end) and sets their owner to
// owner. Gaps are filled. A record that already has b and owner is left
// untouched (no split).
func (t *Tree) Set(start, end int64, b Bits, owner uint32) {
	t.checkRange("set", start, end)
	t.apply(start, end, op{set: b, owner: owner, setOwner: true})
}

// Clear removes bits b from every byte of [start,end). Owners are kept where
// bits remain. Waiters whose range overlaps bytes that lost a bit they wait
// for are woken.
func (t *Tree) Clear(start, end int64, b Bits) {
	t.checkRange("clear", start, end)
	t.apply(start, end, op{clear: b})
}

// Convert sets bits set and clears bits clear over [start,end) in one atomic
// step: each byte becomes (bits|set)&^clear, so clear wins where the masks
// overlap. Owners are kept; gaps gain set&^clear with owner 0. It is the
// writeback claim: Convert(s, e, Writeback, Dirty).
func (t *Tree) Convert(start, end int64, set, clear Bits) {
	t.checkRange("convert", start, end)
	t.apply(start, end, op{set: set, clear: clear})
}

// SetRecord is Set that also appends to cs the exact sub-ranges that gained
// bits (Bits = the bits gained there; Owner = owner). Bytes that only changed
// owner are not recorded.
func (t *Tree) SetRecord(start, end int64, b Bits, owner uint32, cs *ChangeSet) {
	t.checkRange("set", start, end)
	t.apply(start, end, op{set: b, owner: owner, setOwner: true, cs: cs})
}

// ClearRecord is Clear that also appends to cs the exact sub-ranges that lost
// bits (Bits = the bits lost there; Owner = the owner they had).
func (t *Tree) ClearRecord(start, end int64, b Bits, cs *ChangeSet) {
	t.checkRange("clear", start, end)
	t.apply(start, end, op{clear: b, cs: cs})
}

// TrySetExclusive sets b with owner over [start,end) only if no byte in the
// range has any bit of b. On conflict it changes nothing and returns
// ok=false and conflictAt, the first byte of the range that has one of the
// bits (which is start when the conflicting record begins before start). On
// success conflictAt is -1.
func (t *Tree) TrySetExclusive(start, end int64, b Bits, owner uint32) (ok bool, conflictAt int64) {
	t.checkRange("set exclusive", start, end)
	if b != 0 && start < end {
		for p := t.s.seek(start); t.s.valid(p); p = t.s.next(p) {
			r := t.s.at(p)
			if r.Start >= end {
				break
			}
			if r.Bits&b != 0 {
				return false, max(r.Start, start)
			}
		}
	}
	t.apply(start, end, op{set: b, owner: owner, setOwner: true})
	return true, -1
}

// apply performs o over [start,end): in place when it touches a few leaves,
// by rewriting the affected leaves (bulkApply) when it spans many.
func (t *Tree) apply(start, end int64, o op) {
	if start >= end {
		return
	}
	s := &t.s
	p := s.seek(start)
	var changed bool
	if k := t.bulkLeaves; k == 0 || (p.li+k < len(s.mins) && s.mins[p.li+k] < end) {
		changed = t.bulkApply(start, end, o, p)
	} else {
		changed = t.applyInPlace(start, end, o, p)
	}
	if changed {
		t.gen++
	}
	s.hint = max(0, min(p.li, len(s.leaves)-1))
	if invariants {
		if err := t.Check(); err != nil {
			panic(fmt.Sprintf("statetree: after op [%d,%d) set=%v clear=%v: %v", start, end, o.set, o.clear, err))
		}
	}
}

// applyInPlace performs o over [start,end) in one pass from p =
// s.seek(start): it splits the records that straddle start or end, rewrites
// or deletes the covered records, fills gaps, and merges every touched
// record with its neighbours.
func (t *Tree) applyInPlace(start, end int64, o op, p pos) (changed bool) {
	s := &t.s
	gapBits, gapOwner := o.on(0, 0) // what a gap becomes
	for cur := start; cur < end; {
		var r Range
		have := false
		if s.valid(p) {
			r = s.at(p)
			have = r.Start < end
		}
		if !have || r.Start > cur {
			// A gap [cur, gapEnd).
			gapEnd := end
			if have {
				gapEnd = r.Start
			}
			if gapBits != 0 {
				changed = true
				t.account(cur, gapEnd, 0, 0, gapBits, gapOwner, &o)
				q := s.insert(p, Range{cur, gapEnd, gapBits, gapOwner})
				q = t.mergePrev(q)
				p = s.next(q)
			}
			cur = gapEnd
			continue
		}
		// r overlaps: r.Start <= cur < r.End.
		nb, no := o.on(r.Bits, r.Owner)
		pieceEnd := min(r.End, end)
		if nb == r.Bits && no == r.Owner {
			// Unchanged; its predecessor may have changed, so merge.
			q := t.mergePrev(p)
			p = s.next(q)
			cur = pieceEnd
			continue
		}
		changed = true
		t.account(cur, pieceEnd, r.Bits, r.Owner, nb, no, &o)
		hasL, hasM, hasR := r.Start < cur, nb != 0, r.End > end
		var pcs [3]Range
		k := 0
		if hasL {
			pcs[k] = Range{r.Start, cur, r.Bits, r.Owner}
			k++
		}
		if hasM {
			pcs[k] = Range{cur, pieceEnd, nb, no}
			k++
		}
		if hasR {
			pcs[k] = Range{end, r.End, r.Bits, r.Owner}
			k++
		}
		cur = pieceEnd
		if k == 0 {
			p = s.remove(p)
			continue
		}
		s.set(p, pcs[0])
		q := p
		for j := 1; j < k; j++ {
			q = s.insert(s.next(q), pcs[j])
		}
		// q is the last piece. Only a middle piece that came first can
		// merge with its predecessor; the rest differ from their
		// neighbours inside this record.
		if hasR {
			if hasM && !hasL {
				m, _ := s.prev(q)
				m = t.mergePrev(m)
				q = s.next(m)
			}
			p = q
		} else {
			if hasM && !hasL {
				q = t.mergePrev(q)
			}
			p = s.next(q)
		}
	}
	if s.valid(p) {
		t.mergePrev(p)
	}
	return changed
}

// Clone returns a deep copy of t, in O(n), with the same Size, BlockSize and
// Gen. The copy shares nothing with t and has no waiters and no Locker (so
// Lock and WaitClear panic on it); it may be read or changed under a
// different lock, for example as a snapshot for a long block-status scan.
func (t *Tree) Clone() *Tree {
	c := &Tree{size: t.size, blockSize: t.blockSize, blockMask: t.blockMask, gen: t.gen, bytes: t.bytes, bulkLeaves: t.bulkLeaves}
	c.s.n = t.s.n
	c.s.mins = append([]int64(nil), t.s.mins...)
	c.s.counts = append([]int(nil), t.s.counts...)
	c.s.leaves = make([]*leaf, len(t.s.leaves))
	for i, lf := range t.s.leaves {
		nl := new(leaf)
		*nl = *lf
		c.s.leaves[i] = nl
	}
	return c
}

// mergePrev merges the record at p into its predecessor when they touch and
// are equal, and returns the position of the record that now covers p's
// bytes.
func (t *Tree) mergePrev(p pos) pos {
	s := &t.s
	pp, ok := s.prev(p)
	if !ok {
		return p
	}
	r, pr := s.at(p), s.at(pp)
	if pr.End != r.Start || pr.Bits != r.Bits || pr.Owner != r.Owner {
		return p
	}
	s.setEnd(pp, r.End)
	n := s.remove(p)
	pp, _ = s.prev(n)
	return pp
}

// account updates the per-bit counters, the change set and the waiters for
// bytes [a,b) going from (ob,oo) to (nb,no).
func (t *Tree) account(a, b int64, ob Bits, oo uint32, nb Bits, no uint32, o *op) {
	diff := ob ^ nb
	l := b - a
	for v := uint32(diff); v != 0; v &= v - 1 {
		i := bits.TrailingZeros32(v)
		if nb&(1<<i) != 0 {
			t.bytes[i] += l
		} else {
			t.bytes[i] -= l
		}
	}
	if o.cs != nil && diff != 0 {
		if nb&^ob != 0 {
			o.cs.add(a, b, diff, no)
		} else {
			o.cs.add(a, b, diff, oo)
		}
	}
	if cleared := ob &^ nb; cleared != 0 && len(t.waiters) > 0 {
		t.wake(a, b, cleared)
	}
}
