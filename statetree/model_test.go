package statetree

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"
)

var seedFlag = flag.Uint64("statetree.seed", 0, "seed for TestModel (0: derived from the clock)")

// cell is the model's state of one block.
type cell struct {
	bits  Bits
	owner uint32
}

type opKind uint8

const (
	opSet opKind = iota
	opClear
	opConvert
	opSetRecord
	opClearRecord
	opTryExclusive
	opUnlock
	opLockCanceled
	numOpKinds
)

var opNames = [...]string{"Set", "Clear", "Convert", "SetRecord", "ClearRecord", "TrySetExclusive", "Unlock", "LockCanceled"}

// mop is one model operation over blocks [a,b).
type mop struct {
	kind       opKind
	a, b       int64
	set, clear Bits
	owner      uint32
}

func (o mop) String() string {
	return fmt.Sprintf("%s[%d,%d) set=%v clear=%v owner=%d", opNames[o.kind], o.a, o.b, o.set, o.clear, o.owner)
}

// harness applies operations to a Tree and to a per-block model and compares
// them after every step.
type harness struct {
	tb     testing.TB
	tr     *Tree
	mu     sync.Mutex
	m      []cell
	bs     int64
	size   int64
	nb     int64 // number of blocks (the last may be partial)
	cs     ChangeSet
	steps  int
	recent []string

	shortPct int     // percentage of random ops over 1-4 blocks
	recs     []Range // modelRecords after the last op
}

func newHarness(tb testing.TB, blocks, bs, size int64) *harness {
	h := &harness{tb: tb, bs: bs, size: size, nb: blocks, m: make([]cell, blocks)}
	h.tr = New(Options{Size: size, BlockSize: bs, Locker: &h.mu})
	return h
}

func (h *harness) bStart(b int64) int64 { return min(b*h.bs, h.size) }
func (h *harness) bEnd(b int64) int64   { return min((b+1)*h.bs, h.size) }

// fail reports a mismatch with the recent operation history.
func (h *harness) fail(format string, args ...any) {
	h.tb.Helper()
	h.tb.Fatalf("step %d: %s\nrecent ops (oldest first):\n  %s", h.steps, fmt.Sprintf(format, args...),
		joinLines(h.recent))
}

func joinLines(ss []string) string {
	out := ""
	for i, s := range ss {
		if i > 0 {
			out += "\n  "
		}
		out += s
	}
	return out
}

func (h *harness) note(s string) {
	h.recent = append(h.recent, s)
	if len(h.recent) > 12 {
		h.recent = h.recent[1:]
	}
}

// apply runs o on both the tree and the model and verifies the result.
func (h *harness) apply(o mop) {
	h.tb.Helper()
	h.steps++
	h.note(o.String())
	start, end := h.bStart(o.a), h.bStart(o.b)
	old := slices.Clone(h.m)
	gen := h.tr.Gen()
	h.cs.Reset()
	var expCS ChangeSet
	record := false
	transform := func(c cell, set, clear Bits, owner uint32, setOwner bool) cell {
		n := cell{(c.bits | set) &^ clear, c.owner}
		if setOwner {
			n.owner = owner
		}
		if n.bits == 0 {
			n.owner = 0
		}
		return n
	}
	applyModel := func(set, clear Bits, owner uint32, setOwner bool) {
		for b := o.a; b < o.b; b++ {
			h.m[b] = transform(h.m[b], set, clear, owner, setOwner)
		}
	}
	switch o.kind {
	case opSet:
		h.tr.Set(start, end, o.set, o.owner)
		applyModel(o.set, 0, o.owner, true)
	case opClear:
		h.tr.Clear(start, end, o.clear)
		applyModel(0, o.clear, 0, false)
	case opConvert:
		h.tr.Convert(start, end, o.set, o.clear)
		applyModel(o.set, o.clear, 0, false)
	case opSetRecord:
		record = true
		h.tr.SetRecord(start, end, o.set, o.owner, &h.cs)
		applyModel(o.set, 0, o.owner, true)
		for b := o.a; b < o.b; b++ {
			if d := h.m[b].bits &^ old[b].bits; d != 0 {
				expCS.add(h.bStart(b), h.bEnd(b), d, h.m[b].owner)
			}
		}
	case opClearRecord:
		record = true
		h.tr.ClearRecord(start, end, o.clear, &h.cs)
		applyModel(0, o.clear, 0, false)
		for b := o.a; b < o.b; b++ {
			if d := old[b].bits &^ h.m[b].bits; d != 0 {
				expCS.add(h.bStart(b), h.bEnd(b), d, old[b].owner)
			}
		}
	case opTryExclusive:
		ok, at := h.tr.TrySetExclusive(start, end, o.set, o.owner)
		wantOK, wantAt := true, int64(-1)
		if o.set != 0 {
			for b := o.a; b < o.b; b++ {
				if h.m[b].bits&o.set != 0 {
					wantOK, wantAt = false, h.bStart(b)
					break
				}
			}
		}
		if ok != wantOK || at != wantAt {
			h.fail("TrySetExclusive = (%v, %d), want (%v, %d)", ok, at, wantOK, wantAt)
		}
		if ok {
			applyModel(o.set, 0, o.owner, true)
		}
	case opUnlock:
		h.tr.Unlock(start, end)
		applyModel(0, Locked, 0, false)
	case opLockCanceled:
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		h.mu.Lock()
		err := h.tr.Lock(ctx, start, end, o.owner)
		h.mu.Unlock()
		free := true
		for b := o.a; b < o.b; b++ {
			free = free && h.m[b].bits&Locked == 0
		}
		if (err == nil) != free {
			h.fail("Lock with canceled ctx = %v, range free = %v", err, free)
		}
		if err == nil {
			applyModel(Locked, 0, o.owner, true)
		}
	}
	h.verifyContents()
	if record {
		if !slices.Equal(h.cs.Pieces, expCS.Pieces) || h.cs.Bytes != expCS.Bytes {
			h.fail("changeset:\n got  %v (%d bytes)\n want %v (%d bytes)", h.cs.Pieces, h.cs.Bytes, expCS.Pieces, expCS.Bytes)
		}
	}
	if changed := !slices.Equal(old, h.m); changed != (h.tr.Gen() != gen) {
		h.fail("contents changed = %v but Gen went %d -> %d", changed, gen, h.tr.Gen())
	}
}

// modelRecords returns the model's maximal runs of equal non-empty cells.
func (h *harness) modelRecords() []Range {
	var out []Range
	for b := int64(0); b < h.nb; b++ {
		c := h.m[b]
		if c.bits == 0 {
			continue
		}
		if n := len(out); n > 0 && out[n-1].End == h.bStart(b) && out[n-1].Bits == c.bits && out[n-1].Owner == c.owner {
			out[n-1].End = h.bEnd(b)
			continue
		}
		out = append(out, Range{h.bStart(b), h.bEnd(b), c.bits, c.owner})
	}
	return out
}

func (h *harness) verifyContents() {
	h.tb.Helper()
	if err := h.tr.Check(); err != nil {
		h.fail("Check: %v", err)
	}
	want := h.modelRecords()
	h.recs = want
	got := records(h.tr)
	if !slices.Equal(got, want) {
		h.fail("contents:\n got  %v\n want %v", got, want)
	}
	if h.tr.Len() != len(want) {
		h.fail("Len = %d, want %d", h.tr.Len(), len(want))
	}
	for i := range 6 {
		bit := Bits(1) << i
		var n int64
		for b := int64(0); b < h.nb; b++ {
			if h.m[b].bits&bit != 0 {
				n += h.bEnd(b) - h.bStart(b)
			}
		}
		if got := h.tr.Bytes(bit); got != n {
			h.fail("Bytes(%v) = %d, want %d", bit, got, n)
		}
	}
}

// recordAt returns the model record containing block b.
func (h *harness) recordAt(b int64) (Range, bool) {
	off := h.bStart(b)
	i, _ := slices.BinarySearchFunc(h.recs, off, func(r Range, off int64) int {
		switch {
		case r.End <= off:
			return -1
		case r.Start > off:
			return 1
		}
		return 0
	})
	if i < len(h.recs) && h.recs[i].Start <= off {
		return h.recs[i], true
	}
	return Range{}, false
}

// checkQueries compares every query at offset x (and ranges [x,y)) with a
// brute-force answer from the model. masks come from r.
func (h *harness) checkQueries(x, y int64, m1, m2 Bits, maxLen, align int64, contig bool) {
	h.tb.Helper()
	x = min(max(x, 0), h.size-1)
	y = min(max(y, 0), h.size)
	if x > y {
		x, y = y, x
	}
	xb := x / h.bs

	// Get.
	gr, gok := h.tr.Get(x)
	wr, wok := h.recordAt(xb)
	if gr != wr || gok != wok {
		h.fail("Get(%d) = %v,%v want %v,%v", x, gr, gok, wr, wok)
	}

	// FindFirst.
	gr, gok = h.tr.FindFirst(x, m1)
	wr, wok = Range{}, false
	if m1 != 0 {
		for b := xb; b < h.nb; b++ {
			if h.m[b].bits&m1 != 0 {
				wr, wok = h.recordAt(b)
				break
			}
		}
	}
	if gr != wr || gok != wok {
		h.fail("FindFirst(%d, %v) = %v,%v want %v,%v", x, m1, gr, gok, wr, wok)
	}

	// FindFirstMatch.
	gr, gok = h.tr.FindFirstMatch(x, m1, m2)
	wr, wok = Range{}, false
	if m1 != 0 {
		for b := xb; b < h.nb; b++ {
			if h.m[b].bits&m1 != 0 && h.m[b].bits&m2 == 0 {
				wr, wok = h.recordAt(b)
				break
			}
		}
	}
	if gr != wr || gok != wok {
		h.fail("FindFirstMatch(%d, %v, avoid %v) = %v,%v want %v,%v", x, m1, m2, gr, gok, wr, wok)
	}

	// FindFirstClear.
	{
		gs, ge := h.tr.FindFirstClear(x, m1)
		ws, we := h.size, h.size
		for b := xb; b < h.nb; b++ {
			if h.m[b].bits&m1 != 0 {
				continue
			}
			s, e := b, b
			if b == xb {
				for s > 0 && h.m[s-1].bits&m1 == 0 {
					s--
				}
			}
			for e < h.nb && h.m[e].bits&m1 == 0 {
				e++
			}
			ws, we = h.bStart(s), h.bStart(e)
			if b == xb {
				// The run contains x, which may be mid-block.
			} else if ws < x {
				h.fail("model bug")
			}
			break
		}
		if gs != ws || ge != we {
			h.fail("FindFirstClear(%d, %v) = [%d,%d) want [%d,%d)", x, m1, gs, ge, ws, we)
		}
	}

	// FindContiguous.
	{
		gs, ge, gok := h.tr.FindContiguous(x, m1, maxLen)
		var ws, we int64
		wok := false
		for b := xb; b < h.nb; b++ {
			if h.m[b].bits&m1 != m1 {
				continue
			}
			ws, wok = max(x, h.bStart(b)), true
			e := b
			for e < h.nb && h.m[e].bits&m1 == m1 {
				e++
			}
			we = h.bStart(e)
			if maxLen > 0 {
				we = min(we, ws+maxLen)
			}
			break
		}
		if gs != ws || ge != we || gok != wok {
			h.fail("FindContiguous(%d, %v, %d) = [%d,%d),%v want [%d,%d),%v", x, m1, maxLen, gs, ge, gok, ws, we, wok)
		}
	}

	// Cluster.
	{
		gs, ge, gok := h.tr.Cluster(x, m1, m2, maxLen, align)
		match := func(b int64) bool { return h.m[b].bits&m1 == m1 && h.m[b].bits&m2 == 0 }
		var ws, we int64
		wok := match(xb)
		if wok {
			winS, winE := int64(0), h.size
			if align > 0 {
				winS = x / align * align
				winE = min(winS+align, h.size)
			}
			ob := xb * h.bs
			lo := winS
			ml := int64(0)
			if maxLen > 0 {
				ml = max(maxLen/h.bs*h.bs, h.bs)
				lo = max(lo, ob+h.bs-ml)
			}
			s := xb
			for s > 0 && h.bStart(s-1) >= lo && match(s-1) {
				s--
			}
			ws = h.bStart(s)
			hi := winE
			if ml > 0 {
				hi = min(hi, ws+ml)
			}
			e := xb
			for e < h.nb && h.bEnd(e) <= hi && match(e) {
				e++
			}
			we = h.bStart(e)
		}
		if gs != ws || ge != we || gok != wok {
			h.fail("Cluster(%d, want %v, avoid %v, max %d, align %d) = [%d,%d),%v want [%d,%d),%v",
				x, m1, m2, maxLen, align, gs, ge, gok, ws, we, wok)
		}
	}

	// Count, TestAll, TestAny, Union, Ascend over [x,y).
	{
		gn, gf := h.tr.Count(x, y, m1, contig, maxLen)
		var wn int64
		wf := int64(-1)
		allOK, anyOK := true, false
		var union Bits
		var asc []Range
		for b := xb; b < h.nb && h.bStart(b) < y; b++ {
			a, e := max(h.bStart(b), x), min(h.bEnd(b), y)
			if a >= e {
				continue
			}
			c := h.m[b]
			union |= c.bits
			anyOK = anyOK || c.bits&m1 != 0
			allOK = allOK && c.bits&m1 == m1
			if c.bits != 0 {
				if n := len(asc); n > 0 && asc[n-1].End == a && asc[n-1].Bits == c.bits && asc[n-1].Owner == c.owner {
					asc[n-1].End = e
				} else {
					asc = append(asc, Range{a, e, c.bits, c.owner})
				}
			}
		}
		done := false
		for b := xb; b < h.nb && h.bStart(b) < y && !done; b++ {
			a, e := max(h.bStart(b), x), min(h.bEnd(b), y)
			if a >= e {
				continue
			}
			if h.m[b].bits&m1 != m1 {
				if contig && wf >= 0 {
					done = true
				}
				continue
			}
			if wf < 0 {
				wf = a
			}
			wn += e - a
			if maxLen > 0 && wn >= maxLen {
				wn, done = maxLen, true
			}
		}
		if gn != wn || gf != wf {
			h.fail("Count([%d,%d), %v, contig=%v, max=%d) = (%d, %d) want (%d, %d)", x, y, m1, contig, maxLen, gn, gf, wn, wf)
		}
		if g := h.tr.TestAll(x, y, m1); g != allOK {
			h.fail("TestAll([%d,%d), %v) = %v want %v", x, y, m1, g, allOK)
		}
		if g := h.tr.TestAny(x, y, m1); g != anyOK {
			h.fail("TestAny([%d,%d), %v) = %v want %v", x, y, m1, g, anyOK)
		}
		if g := h.tr.Union(x, y); g != union {
			h.fail("Union([%d,%d)) = %v want %v", x, y, g, union)
		}
		var gasc []Range
		h.tr.Ascend(x, y, func(r Range) bool { gasc = append(gasc, r); return true })
		if !slices.Equal(gasc, asc) {
			h.fail("Ascend([%d,%d)):\n got  %v\n want %v", x, y, gasc, asc)
		}
	}
}

// edges returns the model's record boundaries in blocks, plus 0 and nb.
func (h *harness) edges() []int64 {
	out := []int64{0, h.nb}
	for b := int64(1); b < h.nb; b++ {
		if h.m[b] != h.m[b-1] {
			out = append(out, b)
		}
	}
	return out
}

// randBlock picks a block boundary in [0, nb], biased to 0, the end, record
// edges and one block either side of them.
func (h *harness) randBlock(r *rand.Rand) int64 {
	var b int64
	switch r.IntN(8) {
	case 0:
		b = 0
	case 1:
		b = h.nb - 1 + r.Int64N(2)
	case 2, 3, 4:
		e := h.edges()
		b = e[r.IntN(len(e))] + r.Int64N(3) - 1
	default:
		b = r.Int64N(h.nb + 1)
	}
	return min(max(b, 0), h.nb)
}

func randBits(r *rand.Rand) Bits {
	switch r.IntN(4) {
	case 0:
		return Bits(r.IntN(64))
	default:
		return 1 << r.IntN(6)
	}
}

func (h *harness) randOp(r *rand.Rand) mop {
	a, b := h.randBlock(r), h.randBlock(r)
	if a > b {
		a, b = b, a
	}
	if r.IntN(100) < h.shortPct {
		b = min(a+1+r.Int64N(4), h.nb) // short ranges fragment the tree
	}
	o := mop{kind: opKind(r.IntN(int(numOpKinds))), a: a, b: b, set: randBits(r), clear: randBits(r)}
	if r.IntN(4) == 0 {
		o.owner = uint32(1 + r.IntN(2))
	}
	if o.kind == opConvert && r.IntN(3) == 0 {
		o.clear |= o.set // set and clear overlap: clear wins
	}
	return o
}

func (h *harness) randQueries(r *rand.Rand) {
	for range 3 {
		x := h.bStart(h.randBlock(r)) + r.Int64N(h.bs)
		y := h.bStart(h.randBlock(r)) + r.Int64N(h.bs)
		maxLen := int64(0)
		if r.IntN(2) == 0 {
			maxLen = r.Int64N(h.bs * 10)
		}
		align := int64(0)
		if r.IntN(2) == 0 {
			align = h.bs << r.IntN(6)
		}
		h.checkQueries(x, y, randBits(r), randBits(r), maxLen, align, r.IntN(2) == 0)
	}
}

func TestModel(t *testing.T) {
	seed := *seedFlag
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (rerun with -statetree.seed=%d)", seed, seed)
	for _, tc := range []struct {
		name           string
		blocks, bs     int64
		partial        int64 // bytes cut from the last block
		seqs, opsPerSq int
		shortPct       int
	}{
		{"bs1", 256, 1, 0, 20, 300, 30},
		{"bs512", 256, 512, 0, 20, 300, 30},
		{"bs512-partial-tail", 200, 512, 100, 10, 300, 30},
		{"small", 8, 4, 0, 40, 100, 30},
		{"bs3-not-power-of-two", 200, 3, 1, 6, 300, 30},
		// Mostly short ops grow the tree past several leaves, exercising
		// leaf splits, spills and merges.
		{"many-leaves", 1500, 1, 0, 2, 1200, 97},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, uint64(len(tc.name))))
			maxLen := 0
			defer func() { t.Logf("largest tree: %d records", maxLen) }()
			seqs := tc.seqs
			if raceEnabled {
				seqs = (seqs + 1) / 2
			}
			for range seqs {
				h := newHarness(t, tc.blocks, tc.bs, tc.blocks*tc.bs-tc.partial)
				h.shortPct = tc.shortPct
				// Cover both mutation paths: always bulk, bulk past
				// one leaf, and the default.
				h.tr.bulkLeaves = []int{0, 1, defaultBulkLeaves}[r.IntN(3)]
				for range tc.opsPerSq {
					h.apply(h.randOp(r))
					h.randQueries(r)
					maxLen = max(maxLen, h.tr.Len())
				}
			}
		})
	}
}

// FuzzStateTree decodes its input into a device shape (byte 0: blocks - 1;
// byte 1: log2 block size, bit 7: partial last block, bit 6: every op
// takes the bulk path) and a sequence of
// 6-byte operations (kind, start block, end block, set bits, clear bits,
// owner), and checks each one, and queries derived from its bytes, against
// the per-block model exactly as TestModel does.
func FuzzStateTree(f *testing.F) {
	f.Add([]byte{0, 1, 0, 2, 6, 1, 0, 0, 1, 1, 3, 1, 0, 0})
	f.Add([]byte{1, 2, 0, 0, 8, 3, 0, 0, 1, 2, 4, 1, 3, 0, 5, 0, 10, 1, 8, 2})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 2 {
			return
		}
		nb := int64(data[0]) + 1
		bs := int64(1) << (data[1] % 4)
		partial := int64(0)
		if bs > 1 && data[1]&0x80 != 0 {
			partial = bs / 2
		}
		h := newHarness(t, nb, bs, nb*bs-partial)
		if data[1]&0x40 != 0 {
			h.tr.bulkLeaves = 0
		}
		data = data[2:]
		for len(data) >= 6 && h.steps < 200 {
			d := data[:6]
			data = data[6:]
			a, b := int64(d[1])%(nb+1), int64(d[2])%(nb+1)
			if a > b {
				a, b = b, a
			}
			o := mop{kind: opKind(d[0] % uint8(numOpKinds)), a: a, b: b,
				set: Bits(d[3] % 64), clear: Bits(d[4] % 64), owner: uint32(d[5] % 3)}
			h.apply(o)
			x := h.bStart(int64(d[4])%nb) + int64(d[5])%bs
			y := h.bStart(int64(d[1]) % (nb + 1))
			maxLen := int64(d[3]>>6) * bs * 2
			align := int64(0)
			if d[0]&0x80 != 0 {
				align = bs << (d[0] >> 4 & 3)
			}
			h.checkQueries(x, y, Bits(d[3]%64), Bits(d[4]>>2%64), maxLen, align, d[0]&0x40 != 0)
		}
	})
}
