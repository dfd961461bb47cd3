package statetree

import (
	"math"
	"slices"
	"testing"
)

// Regression tests, one per tricky case in section 2.2 of
// shared/research/statetree-anchors.md. Block size 1 KiB; K is one block.
const K = 1024

func TestClearMiddleThenRemerge(t *testing.T) {
	tr := newTestTree(t, 64, K)
	tr.Set(0, 12*K, Dirty|Delalloc, 0)
	tr.Clear(4*K, 8*K, Dirty)
	wantRecords(t, tr,
		Range{0, 4 * K, Dirty | Delalloc, 0}, Range{4 * K, 8 * K, Delalloc, 0}, Range{8 * K, 12 * K, Dirty | Delalloc, 0})
	tr.Clear(4*K, 8*K, Dirty|Delalloc)
	wantRecords(t, tr, Range{0, 4 * K, Dirty | Delalloc, 0}, Range{8 * K, 12 * K, Dirty | Delalloc, 0})
	tr.Set(4*K, 8*K, Dirty|Delalloc, 0)
	wantRecords(t, tr, Range{0, 12 * K, Dirty | Delalloc, 0})

	// The same through the Delalloc-only middle: re-adding Dirty merges
	// both sides.
	tr.Clear(4*K, 8*K, Dirty)
	tr.Set(4*K, 8*K, Dirty, 0)
	wantRecords(t, tr, Range{0, 12 * K, Dirty | Delalloc, 0})
}

func TestSetAcrossGaps(t *testing.T) {
	tr := newTestTree(t, 64, K)
	tr.Set(0, 4*K, Dirty, 0)
	tr.Set(8*K, 12*K, Dirty, 0)
	tr.Set(16*K, 20*K, Dirty, 0)
	tr.Set(2*K, 18*K, Dirty, 0)
	wantRecords(t, tr, Range{0, 20 * K, Dirty, 0})
	if got := tr.Bytes(Dirty); got != 20*K {
		t.Fatalf("Bytes(Dirty) = %d, want %d", got, 20*K)
	}
}

func TestSetNoSplitWhenBitsPresent(t *testing.T) {
	tr := newTestTree(t, 64, K)
	tr.Set(0, 12*K, Dirty|Delalloc, 7)
	gen := tr.Gen()
	allocs := testing.AllocsPerRun(100, func() {
		tr.Set(4*K, 8*K, Dirty, 7)
		tr.Set(0, 12*K, Delalloc, 7)
	})
	if allocs != 0 {
		t.Errorf("Set over a record that already has the bits allocated %v times", allocs)
	}
	if tr.Len() != 1 || tr.Gen() != gen {
		t.Errorf("Len %d (want 1), Gen %d -> %d (want unchanged)", tr.Len(), gen, tr.Gen())
	}
	wantRecords(t, tr, Range{0, 12 * K, Dirty | Delalloc, 7})
}

func TestTrySetExclusivePartialConflict(t *testing.T) {
	for _, tc := range []struct {
		name           string
		lockS, lockE   int64 // existing Locked range
		tryS, tryE     int64
		wantConflictAt int64
	}{
		{"conflict inside", 8 * K, 12 * K, 0, 16 * K, 8 * K},
		{"conflict before request start", 0, 8 * K, 4 * K, 12 * K, 4 * K},
		{"conflict at last block", 12 * K, 16 * K, 0, 13 * K, 12 * K},
		{"conflict is whole request", 0, 16 * K, 4 * K, 8 * K, 4 * K},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTestTree(t, 64, K)
			tr.Set(tc.lockS, tc.lockE, Locked, 1)
			tr.Set(20*K, 24*K, Dirty, 0)
			before, gen := records(tr), tr.Gen()
			ok, at := tr.TrySetExclusive(tc.tryS, tc.tryE, Locked, 2)
			if ok || at != tc.wantConflictAt {
				t.Fatalf("TrySetExclusive = (%v, %d), want (false, %d)", ok, at, tc.wantConflictAt)
			}
			if !slices.Equal(records(tr), before) || tr.Gen() != gen {
				t.Fatalf("failed exclusive set changed the tree: %v (gen %d -> %d)", records(tr), gen, tr.Gen())
			}
		})
	}
	t.Run("conflict at last byte", func(t *testing.T) {
		tr := newTestTree(t, 64*K, 1)
		tr.Set(12*K-1, 12*K, Writeback, 0)
		ok, at := tr.TrySetExclusive(0, 12*K, Writeback|Locked, 3)
		if ok || at != 12*K-1 || tr.Len() != 1 {
			t.Fatalf("TrySetExclusive = (%v, %d) Len %d, want (false, %d) Len 1", ok, at, tr.Len(), 12*K-1)
		}
	})
	t.Run("success", func(t *testing.T) {
		tr := newTestTree(t, 64, K)
		tr.Set(0, 4*K, Dirty, 0)
		ok, at := tr.TrySetExclusive(0, 8*K, Locked, 5)
		if !ok || at != -1 {
			t.Fatalf("TrySetExclusive = (%v, %d), want (true, -1)", ok, at)
		}
		wantRecords(t, tr, Range{0, 4 * K, Dirty | Locked, 5}, Range{4 * K, 8 * K, Locked, 5})
	})
}

func TestConvertOverlappingSetAndClear(t *testing.T) {
	tr := newTestTree(t, 64, K)
	tr.Set(0, 8*K, Dirty|Delalloc, 0)
	// Clear wins where set and clear overlap.
	tr.Convert(0, 8*K, Writeback|Dirty, Dirty)
	wantRecords(t, tr, Range{0, 8 * K, Delalloc | Writeback, 0})
	// Over a gap, Convert sets set&^clear with owner 0.
	tr.Convert(8*K, 12*K, Zeroed|Locked, Locked)
	wantRecords(t, tr, Range{0, 8 * K, Delalloc | Writeback, 0}, Range{8 * K, 12 * K, Zeroed, 0})
	// The writeback claim never leaves a byte with both or neither of
	// Dirty and Writeback.
	tr.Set(0, 12*K, Dirty, 0)
	tr.Clear(0, 12*K, Writeback)
	tr.Convert(2*K, 10*K, Writeback, Dirty)
	tr.Ascend(0, 12*K, func(r Range) bool {
		if (r.Bits&Dirty != 0) == (r.Bits&Writeback != 0) {
			t.Errorf("record %v has both or neither of Dirty and Writeback", r)
		}
		return true
	})
}

func TestFindFirst(t *testing.T) {
	tr := newTestTree(t, 64, K)
	tr.Set(4*K, 12*K, Delalloc, 0)
	tr.Set(16*K, 20*K, Writeback, 0)
	// The whole record is returned, beginning before from.
	if r, ok := tr.FindFirst(6*K, Delalloc|Dirty); !ok || r != (Range{4 * K, 12 * K, Delalloc, 0}) {
		t.Errorf("FindFirst(6K, Delalloc|Dirty) = %v,%v", r, ok)
	}
	// From inside a gap: the next record with any of the bits.
	if r, ok := tr.FindFirst(12*K, Writeback|Dirty); !ok || r.Start != 16*K {
		t.Errorf("FindFirst(12K, Writeback|Dirty) = %v,%v", r, ok)
	}
	if _, ok := tr.FindFirst(0, Dirty); ok {
		t.Errorf("FindFirst(0, Dirty) found a record in a tree without Dirty")
	}
}

func TestFindFirstClear(t *testing.T) {
	tr := newTestTree(t, 64, K)
	if s, e := tr.FindFirstClear(5*K, Dirty); s != 0 || e != 64*K {
		t.Errorf("empty tree: FindFirstClear = [%d,%d), want [0,%d)", s, e, 64*K)
	}
	tr.Set(4*K, 8*K, Dirty, 0)
	tr.Set(8*K, 12*K, Delalloc, 0) // lacks Dirty
	tr.Set(16*K, 20*K, Dirty, 0)
	if s, e := tr.FindFirstClear(4*K, Dirty); s != 8*K || e != 16*K {
		t.Errorf("FindFirstClear(4K) = [%d,%d), want [8K,16K)", s, e)
	}
	if s, e := tr.FindFirstClear(10*K, Dirty); s != 8*K || e != 16*K {
		t.Errorf("inside a record lacking the bit: FindFirstClear(10K) = [%d,%d), want [8K,16K)", s, e)
	}
	if s, e := tr.FindFirstClear(18*K, Dirty); s != 20*K || e != 64*K {
		t.Errorf("past the last record: FindFirstClear(18K) = [%d,%d), want [20K,64K)", s, e)
	}
	tr.Set(60*K, 64*K, Dirty, 0)
	if s, e := tr.FindFirstClear(61*K, Dirty); s != 64*K || e != 64*K {
		t.Errorf("nothing clear: FindFirstClear(61K) = [%d,%d), want [64K,64K)", s, e)
	}
}

func TestFindContiguousStopsAtTouchingRecordLackingBits(t *testing.T) {
	tr := newTestTree(t, 64, K)
	tr.Set(0, 4*K, Dirty, 0)
	tr.Set(4*K, 8*K, Delalloc, 0) // touches, lacks Dirty
	tr.Set(8*K, 12*K, Dirty, 0)
	if s, e, ok := tr.FindContiguous(0, Dirty, 0); !ok || s != 0 || e != 4*K {
		t.Errorf("FindContiguous(0) = [%d,%d),%v, want [0,4K)", s, e, ok)
	}
	tr.Set(12*K, 16*K, Dirty|Writeback, 0) // touches, has Dirty and more
	if s, e, ok := tr.FindContiguous(5*K, Dirty, 0); !ok || s != 8*K || e != 16*K {
		t.Errorf("FindContiguous(5K) = [%d,%d),%v, want [8K,16K)", s, e, ok)
	}
	if s, e, ok := tr.FindContiguous(9*K, Dirty, 3*K); !ok || s != 9*K || e != 12*K {
		t.Errorf("FindContiguous(9K, max 3K) = [%d,%d),%v, want [9K,12K)", s, e, ok)
	}
}

func TestCountFirstWhenFirstMatchExceedsMax(t *testing.T) {
	tr := newTestTree(t, 64, K)
	tr.Set(4*K, 16*K, Dirty, 0)
	tr.Set(20*K, 24*K, Dirty, 0)
	if n, first := tr.Count(0, 32*K, Dirty, false, 2*K); n != 2*K || first != 4*K {
		t.Errorf("Count(max 2K) = (%d, %d), want (2K, 4K)", n, first)
	}
	// No overshoot past max.
	if n, first := tr.Count(0, 32*K, Dirty, false, 14*K); n != 14*K || first != 4*K {
		t.Errorf("Count(max 14K) = (%d, %d), want (14K, 4K)", n, first)
	}
	if n, first := tr.Count(0, 32*K, Dirty, true, 0); n != 12*K || first != 4*K {
		t.Errorf("Count(contig) = (%d, %d), want (12K, 4K)", n, first)
	}
	if n, first := tr.Count(0, 32*K, Dirty, false, 0); n != 16*K || first != 4*K {
		t.Errorf("Count = (%d, %d), want (16K, 4K)", n, first)
	}
	if n, first := tr.Count(0, 32*K, Writeback, false, 0); n != 0 || first != -1 {
		t.Errorf("Count(no match) = (%d, %d), want (0, -1)", n, first)
	}
}

func TestWritebackCompletionWithRedirtyKeepsDirty(t *testing.T) {
	tr := newTestTree(t, 64, K)
	tr.Set(0, 16*K, Dirty|Delalloc, 0)
	s, e, ok := tr.Cluster(5*K, Dirty, Writeback|Locked, 0, 0)
	if !ok || s != 0 || e != 16*K {
		t.Fatalf("Cluster = [%d,%d),%v", s, e, ok)
	}
	tr.Convert(s, e, Writeback, Dirty) // claim
	tr.Set(4*K, 8*K, Dirty, 0)         // re-dirtied while in flight
	// Completion clears Writeback (and Delalloc: now allocated) only.
	tr.Clear(s, e, Writeback|Delalloc)
	wantRecords(t, tr, Range{4 * K, 8 * K, Dirty, 0})
	if !tr.TestAll(4*K, 8*K, Dirty) || tr.Bytes(Dirty) != 4*K {
		t.Fatalf("re-dirtied bytes lost Dirty")
	}
}

func TestBoundaries(t *testing.T) {
	const size = 64 * K
	tr := newTestTree(t, 64, K)
	tr.Set(0, K, Dirty, 0)
	tr.Set(size-K, size, Dirty, 0)
	wantRecords(t, tr, Range{0, K, Dirty, 0}, Range{size - K, size, Dirty, 0})
	if r, ok := tr.Get(size - 1); !ok || r.End != size {
		t.Errorf("Get(size-1) = %v,%v", r, ok)
	}
	if _, ok := tr.Get(size); ok {
		t.Errorf("Get(size) found a record")
	}
	if s, e, ok := tr.Cluster(size-1, Dirty, 0, 32*K, 32*K); !ok || s != size-K || e != size {
		t.Errorf("Cluster(size-1) = [%d,%d),%v", s, e, ok)
	}
	if s, e, ok := tr.Cluster(0, Dirty, 0, 32*K, 32*K); !ok || s != 0 || e != K {
		t.Errorf("Cluster(0) = [%d,%d),%v", s, e, ok)
	}
	if _, _, ok := tr.Cluster(size, Dirty, 0, 0, 0); ok {
		t.Errorf("Cluster(size) ok")
	}
	if s, e := tr.FindFirstClear(size-1, Dirty); s != size || e != size {
		t.Errorf("FindFirstClear(size-1) = [%d,%d)", s, e)
	}
	// Zero-length mutations are no-ops and do not bump Gen, even at Size.
	gen := tr.Gen()
	tr.Set(size, size, Dirty, 0)
	tr.Clear(0, 0, Dirty)
	tr.Convert(8*K, 8*K, Dirty, 0)
	if tr.Gen() != gen || tr.Len() != 2 {
		t.Errorf("zero-length ops changed the tree")
	}
	// The whole device in one op.
	tr.Set(0, size, Zeroed, 0)
	tr.Clear(0, size, Dirty|Zeroed)
	wantRecords(t, tr)

	// A device whose size is not a multiple of the block size: the last,
	// partial block ends at Size.
	odd := New(Options{Size: 10*K + 100, BlockSize: K})
	odd.Set(9*K, 10*K+100, Dirty, 0)
	odd.Set(10*K, 10*K+100, Writeback, 0)
	if err := odd.Check(); err != nil {
		t.Fatal(err)
	}
	if got := odd.Bytes(Writeback); got != 100 {
		t.Errorf("Bytes(Writeback) = %d, want 100", got)
	}
}

func TestOwnerSplitAndMerge(t *testing.T) {
	tr := newTestTree(t, 64, K)
	tr.Set(0, 8*K, Dirty, 1)
	tr.Set(4*K, 8*K, Dirty, 2)
	wantRecords(t, tr, Range{0, 4 * K, Dirty, 1}, Range{4 * K, 8 * K, Dirty, 2})
	tr.Set(4*K, 8*K, Dirty, 1)
	wantRecords(t, tr, Range{0, 8 * K, Dirty, 1})
	// Splitting copies the owner to both halves.
	tr.Set(2*K, 3*K, Writeback, 1)
	tr.Clear(5*K, 6*K, Dirty)
	wantRecords(t, tr, Range{0, 2 * K, Dirty, 1}, Range{2 * K, 3 * K, Dirty | Writeback, 1},
		Range{3 * K, 5 * K, Dirty, 1}, Range{6 * K, 8 * K, Dirty, 1})
	// Clear keeps owners where bits remain; a gap has no owner, so a
	// later Set with a different owner does not merge.
	tr.Clear(0, 8*K, Writeback)
	tr.Set(5*K, 6*K, Dirty, 3)
	wantRecords(t, tr, Range{0, 5 * K, Dirty, 1}, Range{5 * K, 6 * K, Dirty, 3}, Range{6 * K, 8 * K, Dirty, 1})
}

func TestUndoTouchesOnlyChangeSet(t *testing.T) {
	tr := newTestTree(t, 64, K)
	tr.Set(0, 4*K, Delalloc, 1) // pre-existing reservation with valid data
	var cs ChangeSet
	tr.SetRecord(0, 8*K, Delalloc, 1, &cs)
	if want := []Range{{4 * K, 8 * K, Delalloc, 1}}; !slices.Equal(cs.Pieces, want) || cs.Bytes != 4*K {
		t.Fatalf("changeset %v (%d bytes), want %v (4K)", cs.Pieces, cs.Bytes, want)
	}
	// Undo (e.g. the reservation failed): clear exactly what was set.
	for _, p := range cs.Pieces {
		tr.Clear(p.Start, p.End, p.Bits)
	}
	wantRecords(t, tr, Range{0, 4 * K, Delalloc, 1})

	// ClearRecord reports what it removed with the old owner, so it can
	// be undone exactly too.
	tr.Set(8*K, 12*K, Dirty|Delalloc, 2)
	before := records(tr)
	cs.Reset()
	tr.ClearRecord(0, 16*K, Delalloc, &cs)
	if want := []Range{{0, 4 * K, Delalloc, 1}, {8 * K, 12 * K, Delalloc, 2}}; !slices.Equal(cs.Pieces, want) || cs.Bytes != 8*K {
		t.Fatalf("changeset %v (%d bytes), want %v (8K)", cs.Pieces, cs.Bytes, want)
	}
	for _, p := range cs.Pieces {
		tr.Set(p.Start, p.End, p.Bits, p.Owner)
	}
	if got := records(tr); !slices.Equal(got, before) {
		t.Fatalf("after undo %v, want %v", got, before)
	}
}

func TestGenChangesOnEveryMutation(t *testing.T) {
	tr := newTestTree(t, 64, K)
	g := tr.Gen()
	step := func(name string, f func(), wantChange bool) {
		t.Helper()
		f()
		if changed := tr.Gen() != g; changed != wantChange {
			t.Errorf("%s: Gen changed = %v, want %v", name, changed, wantChange)
		}
		g = tr.Gen()
	}
	step("set", func() { tr.Set(0, 4*K, Dirty, 0) }, true)
	step("set again", func() { tr.Set(0, 4*K, Dirty, 0) }, false)
	step("set owner", func() { tr.Set(0, 4*K, Dirty, 9) }, true)
	step("clear absent bit", func() { tr.Clear(0, 4*K, Writeback) }, false)
	step("convert", func() { tr.Convert(0, 4*K, Writeback, Dirty) }, true)
	step("unlock unlocked", func() { tr.Unlock(0, 4*K) }, false)
	step("exclusive fail", func() { tr.TrySetExclusive(0, 8*K, Writeback, 0) }, false)
	step("clear", func() { tr.Clear(0, 64*K, Writeback) }, true)
}

func TestAscendClipsAndStops(t *testing.T) {
	tr := newTestTree(t, 64, K)
	tr.Set(0, 8*K, Dirty, 0)
	tr.Set(12*K, 16*K, Dirty, 0)
	tr.Set(20*K, 24*K, Dirty, 0)
	var got []Range
	tr.Ascend(4*K, 14*K, func(r Range) bool { got = append(got, r); return true })
	if want := []Range{{4 * K, 8 * K, Dirty, 0}, {12 * K, 14 * K, Dirty, 0}}; !slices.Equal(got, want) {
		t.Errorf("Ascend = %v, want %v", got, want)
	}
	got = got[:0]
	tr.AscendRecords(4*K, 14*K, func(r Range) bool { got = append(got, r); return false })
	if want := []Range{{0, 8 * K, Dirty, 0}}; !slices.Equal(got, want) {
		t.Errorf("AscendRecords = %v, want %v", got, want)
	}
}

// TestStaleHint: the last-leaf hint is only a shortcut. Whatever leaf it
// names (stale after splits and merges, or out of range), searches return
// the same answers.
func TestStaleHint(t *testing.T) {
	tr := newTestTree(t, 4096, K)
	for b := int64(0); b < 4096; b += 2 {
		tr.Set(b*K, (b+1)*K, Dirty, uint32(b%3))
	}
	if len(tr.s.leaves) < 8 {
		t.Fatalf("only %d leaves", len(tr.s.leaves))
	}
	want := make([]Range, 0, 4096)
	for b := int64(0); b < 4096; b++ {
		r, _ := tr.Get(b * K)
		want = append(want, r)
	}
	for _, h := range []int{0, 1, len(tr.s.leaves) / 2, len(tr.s.leaves) - 1, len(tr.s.leaves) + 5} {
		tr.s.hint = h
		for b := int64(0); b < 4096; b++ {
			if r, _ := tr.Get(b * K); r != want[b] {
				t.Fatalf("hint %d: Get(%d) = %v, want %v", h, b*K, r, want[b])
			}
		}
	}
	// A mutation through a stale hint lands in the right place.
	tr.s.hint = len(tr.s.leaves) - 1
	tr.Set(K, 2*K, Dirty, 0)
	if r, _ := tr.Get(0); r != (Range{0, 2 * K, Dirty, 0}) {
		t.Fatalf("after Set through a stale hint: %v", r)
	}
}

// TestHugeLimitsDoNotOverflow: maxLen and align near MaxInt64 mean
// "unbounded", not a wrapped negative limit.
func TestHugeLimitsDoNotOverflow(t *testing.T) {
	const size = 1 << 62
	tr := New(Options{Size: size, BlockSize: 4096})
	tr.Set(size-8192, size, Dirty, 0)
	const huge = math.MaxInt64
	if s, e, ok := tr.Cluster(size-1, Dirty, 0, huge, huge); !ok || s != size-8192 || e != size {
		t.Errorf("Cluster = [%d,%d),%v", s, e, ok)
	}
	if s, e, ok := tr.FindContiguous(size-4096, Dirty, huge); !ok || s != size-4096 || e != size {
		t.Errorf("FindContiguous = [%d,%d),%v", s, e, ok)
	}
	if n, first := tr.Count(0, size, Dirty, false, huge); n != 8192 || first != size-8192 {
		t.Errorf("Count = (%d, %d)", n, first)
	}
}
