package alloc

import (
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/extentd/extentd/device"
	"github.com/extentd/extentd/statetree"
)

var seedFlag = flag.Uint64("alloc.seed", 0, "seed for the random model tests (0: random)")

func testSeed(tb testing.TB) uint64 {
	tb.Helper()
	seed := *seedFlag
	if seed == 0 {
		seed = rand.Uint64()
	}
	tb.Logf("seed %d (replay with -alloc.seed=%d)", seed, seed)
	return seed
}

// fakeHost is a host filesystem of total bytes of which other tenants use
// other; the image uses what its Space says is allocated.
type fakeHost struct {
	total, other int64
	space        *Space
	calls        int
	err          error
}

func (h *fakeHost) statfs() (int64, error) {
	h.calls++
	if h.err != nil {
		return 0, h.err
	}
	// Called without s.mu (see refreshLocked), so this may lock it.
	h.space.mu.Lock()
	used := h.space.t.Bytes(allocatedBit)
	h.space.mu.Unlock()
	return max(0, h.total-h.other-used), nil
}

const testBS = 4096

// newTestSpace returns a Space over an image of size bytes on a fakeHost.
func newTestSpace(tb testing.TB, size, thin, margin, hostTotal int64, interval time.Duration) (*Space, *fakeHost) {
	tb.Helper()
	h := &fakeHost{total: hostTotal}
	s := newSpace(spaceConfig{
		size: size, blockSize: testBS, thinLimit: thin, margin: margin,
		interval: interval, statfs: h.statfs, log: zaptest.NewLogger(tb),
	})
	h.space = s
	s.refresh()
	tb.Cleanup(func() {
		if err := s.Check(); err != nil {
			tb.Errorf("Check at cleanup: %v", err)
		}
	})
	return s, h
}

// spaceModel is the brute-force model: one state per block.
type spaceModel struct {
	state    []statetree.Bits // 0, allocatedBit or reservedBit
	capacity int64
	oos      bool
}

func (m *spaceModel) bytes(b statetree.Bits) int64 {
	var n int64
	for _, s := range m.state {
		if s == b {
			n += testBS
		}
	}
	return n
}

func (m *spaceModel) used() int64 { return m.bytes(allocatedBit) + m.bytes(reservedBit) }

func outBlocks(off, n int64) (int, int) {
	return int(off / testBS), int((off + n + testBS - 1) / testBS)
}

func inBlocks(off, n, devSize int64) (int, int) {
	a := int((off + testBS - 1) / testBS)
	b := int((off + n) / testBS)
	if off+n >= devSize {
		b = int((devSize + testBS - 1) / testBS)
	}
	return a, max(a, b)
}

// compare checks s against m block by block and the accounting invariants.
func compare(tb testing.TB, s *Space, m *spaceModel, step string) {
	tb.Helper()
	if err := s.Check(); err != nil {
		tb.Fatalf("%s: Check: %v", step, err)
	}
	got := make([]statetree.Bits, len(m.state))
	s.mu.Lock()
	s.t.Ascend(0, s.size, func(r statetree.Range) bool {
		for b := r.Start / testBS; b < r.End/testBS; b++ {
			got[b] = r.Bits
		}
		return true
	})
	s.mu.Unlock()
	for i := range got {
		if got[i] != m.state[i] {
			tb.Fatalf("%s: block %d is %s, model says %s", step, i, stateName(got[i]), stateName(m.state[i]))
		}
	}
	st := s.Stats()
	if st.Reserved != m.bytes(reservedBit) || st.Allocated != m.bytes(allocatedBit) {
		tb.Fatalf("%s: stats %+v, model reserved %d allocated %d", step, st, m.bytes(reservedBit), m.bytes(allocatedBit))
	}
	if st.Allocated+st.Reserved > st.Capacity {
		tb.Fatalf("%s: allocated %d + reserved %d > capacity %d", step, st.Allocated, st.Reserved, st.Capacity)
	}
	if st.Capacity != m.capacity {
		tb.Fatalf("%s: capacity %d, model %d", step, st.Capacity, m.capacity)
	}
}

// spaceGeometry is an image and host for model runs.
type spaceGeometry struct {
	name                     string
	size, thin, margin, host int64
}

var modelGeometries = []spaceGeometry{
	{"host-bound", 256*testBS + 100, 0, 8 * testBS, 120 * testBS},
	{"thin-bound", 256 * testBS, 90 * testBS, 0, 1 << 40},
	{"roomy", 64 * testBS, 0, 0, 1 << 40},
}

// spaceOp is one model step: kind selects the operation, [off, off+n) is
// the range (within the image), flag varies it (failed write, flag value).
type spaceOp struct {
	kind   int // 0..11, see step
	off, n int64
	flag   bool
}

// spaceHarness runs spaceOps against a Space and its per-block model.
type spaceHarness struct {
	g spaceGeometry
	s *Space
	m *spaceModel
}

func newSpaceHarness(tb testing.TB, g spaceGeometry) *spaceHarness {
	s, _ := newTestSpace(tb, g.size, g.thin, g.margin, g.host, time.Hour)
	nblocks := int((g.size + testBS - 1) / testBS)
	thin := g.thin
	if thin == 0 {
		thin = int64(nblocks) * testBS
	}
	return &spaceHarness{g: g, s: s, m: &spaceModel{state: make([]statetree.Bits, nblocks), capacity: min(thin, g.host-g.margin)}}
}

// step applies op to both and compares them.
func (h *spaceHarness) step(tb testing.TB, i int, op spaceOp) {
	tb.Helper()
	s, m, off, n := h.s, h.m, op.off, op.n
	var step string
	switch k := op.kind; {
	case k < 4: // Reserve
		step = fmt.Sprintf("op %d Reserve(%d, %d)", i, off, n)
		a, b := outBlocks(off, n)
		var need int64
		for k := a; k < b; k++ {
			if m.state[k] == 0 {
				need += testBS
			}
		}
		got, err := s.Reserve(off, n)
		if need > 0 && (m.oos || m.used()+need > m.capacity) {
			if !errors.Is(err, device.ErrNoSpace) || got != 0 {
				tb.Fatalf("%s = %d, %v; want ErrNoSpace (need %d, used %d, cap %d, oos %v)", step, got, err, need, m.used(), m.capacity, m.oos)
			}
			break
		}
		if err != nil || got != need {
			tb.Fatalf("%s = %d, %v; want %d", step, got, err, need)
		}
		for k := a; k < b; k++ {
			if m.state[k] == 0 {
				m.state[k] = reservedBit
			}
		}
	case k < 6: // Release
		step = fmt.Sprintf("op %d Release(%d, %d)", i, off, n)
		a, b := inBlocks(off, n, h.g.size)
		var want int64
		for k := a; k < b; k++ {
			if m.state[k] == reservedBit {
				m.state[k] = 0
				want += testBS
			}
		}
		if got := s.Release(off, n); got != want {
			tb.Fatalf("%s = %d, want %d", step, got, want)
		}
	case k < 9: // a File write: charge, then allocate (or fail: no change)
		step = fmt.Sprintf("op %d write(%d, %d, failed=%v)", i, off, n, op.flag)
		a, b := outBlocks(off, n)
		var need int64
		for k := a; k < b; k++ {
			if m.state[k] == 0 {
				need += testBS
			}
		}
		err := s.beginWrite("write", off, n)
		if need > 0 && m.used()+need > m.capacity {
			if !errors.Is(err, device.ErrNoSpace) {
				tb.Fatalf("%s: beginWrite err %v, want ErrNoSpace", step, err)
			}
			break
		}
		if err != nil {
			tb.Fatalf("%s: beginWrite: %v", step, err)
		}
		s.endWrite(off, n, !op.flag)
		if !op.flag {
			for k := a; k < b; k++ {
				m.state[k] = allocatedBit
			}
		}
	case k < 11: // punch
		step = fmt.Sprintf("op %d punch(%d, %d)", i, off, n)
		s.markFree(off, n)
		a, b := inBlocks(off, n, h.g.size)
		for k := a; k < b; k++ {
			if m.state[k] == allocatedBit {
				m.state[k] = 0
			}
		}
	default:
		m.oos = op.flag
		step = fmt.Sprintf("op %d SetOutOfSpace(%v)", i, m.oos)
		s.SetOutOfSpace(m.oos)
	}
	compare(tb, s, m, step)
}

// TestSpaceModel runs random Reserve/Release/write/failed write/punch and
// out-of-space toggles against a per-block model, on images bounded by the
// host's free space (thin overcommit, partial last block), by the thin
// limit, and by neither.
func TestSpaceModel(t *testing.T) {
	for _, g := range modelGeometries {
		t.Run(g.name, func(t *testing.T) {
			seed := testSeed(t)
			r := rand.New(rand.NewPCG(seed, 1))
			h := newSpaceHarness(t, g)
			for i := range 3000 {
				off := int64(r.IntN(int(g.size)))
				if r.IntN(2) == 0 {
					off = alignDown(off, testBS)
				}
				n := min(int64(r.IntN(12*testBS)+1), g.size-off)
				kind := r.IntN(12)
				flag := r.IntN(4) == 0 // failed write 1 in 4; OutOfSpace set 1 in 4
				h.step(t, i, spaceOp{kind: kind, off: off, n: n, flag: flag})
			}
		})
	}
}

// FuzzSpace decodes op sequences (5 bytes each: kind+flag, offset in
// 64-byte units, length in 64-byte units) and checks every step against
// the model. The first byte of the input picks the geometry.
func FuzzSpace(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 0, 16})
	f.Add([]byte{0, 0, 0, 0, 1, 0, 7, 0, 0, 0, 64, 9, 1, 0, 0, 1, 0})
	f.Add([]byte{1, 12, 0, 0, 3, 0, 0, 1, 0, 0, 200, 10, 1, 1, 0, 100})
	f.Add([]byte{2, 0, 255, 255, 255, 255, 4, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		g := modelGeometries[int(data[0])%len(modelGeometries)]
		h := newSpaceHarness(t, g)
		data = data[1:]
		for i := 0; len(data) >= 5 && i < 200; i++ {
			off := (int64(data[1])<<8 | int64(data[2])) * 64 % g.size
			n := (int64(data[3])<<8|int64(data[4]))*64 + int64(data[0]>>5)
			n = min(max(n, 1), g.size-off)
			h.step(t, i, spaceOp{kind: int(data[0]&0x0f) % 12, off: off, n: n, flag: data[0]&0x10 != 0})
			data = data[5:]
		}
	})
}

func TestSpaceReserveAllOrNothing(t *testing.T) {
	s, _ := newTestSpace(t, 100*testBS, 10*testBS, 0, 1<<40, time.Hour)
	if got, err := s.Reserve(0, 4*testBS); err != nil || got != 4*testBS {
		t.Fatalf("Reserve = %d, %v", got, err)
	}
	// 4 reserved + 10 more (2 of which overlap) = 12 > 10: nothing changes.
	before := s.Stats()
	if _, err := s.Reserve(2*testBS, 10*testBS); !errors.Is(err, device.ErrNoSpace) {
		t.Fatalf("Reserve beyond the thin limit: %v, want ErrNoSpace", err)
	}
	if after := s.Stats(); after != before {
		t.Fatalf("failed Reserve changed stats: %+v -> %+v", before, after)
	}
	// Exactly up to the limit works; overwriting reserved bytes is free.
	if got, err := s.Reserve(2*testBS, 8*testBS); err != nil || got != 6*testBS {
		t.Fatalf("Reserve to the limit = %d, %v; want %d", got, err, 6*testBS)
	}
	if got, err := s.Reserve(1, 1); err != nil || got != 0 {
		t.Fatalf("Reserve of a reserved byte = %d, %v; want 0, nil", got, err)
	}
	// A 1-byte reservation in a fresh block takes the whole block.
	s.Release(0, 100*testBS)
	if got, err := s.Reserve(50*testBS+7, 1); err != nil || got != testBS {
		t.Fatalf("1-byte Reserve = %d, %v; want %d", got, err, testBS)
	}
	// Release rounds inwards: a partial block keeps its reservation.
	if got := s.Release(50*testBS+7, 1); got != 0 {
		t.Fatalf("partial Release released %d", got)
	}
	if got := s.Release(50*testBS, testBS); got != testBS {
		t.Fatalf("whole-block Release released %d", got)
	}
	for _, c := range []struct{ off, n int64 }{{-1, 1}, {0, 100*testBS + 1}, {100 * testBS, 1}, {0, -5}} {
		if _, err := s.Reserve(c.off, c.n); !errors.Is(err, device.ErrOutOfRange) {
			t.Errorf("Reserve(%d, %d): %v, want ErrOutOfRange", c.off, c.n, err)
		}
		s.Release(c.off, c.n) // clipped, must not panic
	}
}

func TestSpaceOutOfSpace(t *testing.T) {
	s, _ := newTestSpace(t, 100*testBS, 0, 0, 1<<40, time.Hour)
	if _, err := s.Reserve(0, 2*testBS); err != nil {
		t.Fatal(err)
	}
	s.SetOutOfSpace(true)
	if !s.Stats().OutOfSpace {
		t.Fatal("Stats().OutOfSpace false after SetOutOfSpace(true)")
	}
	if _, err := s.Reserve(10*testBS, 1); !errors.Is(err, device.ErrNoSpace) {
		t.Fatalf("Reserve of new bytes while out of space: %v, want ErrNoSpace", err)
	}
	if got, err := s.Reserve(0, 2*testBS); err != nil || got != 0 {
		t.Fatalf("Reserve of reserved bytes while out of space = %d, %v; want 0, nil", got, err)
	}
	s.SetOutOfSpace(false)
	if got, err := s.Reserve(10*testBS, 1); err != nil || got != testBS {
		t.Fatalf("Reserve after clearing = %d, %v", got, err)
	}
}

// TestSpaceRefreshBeforeENOSPC: with a statfs cache that never expires, a
// Reserve that would fail re-reads statfs first, so space freed on the host
// is seen at once; a Reserve that fits makes no statfs call.
func TestSpaceRefreshBeforeENOSPC(t *testing.T) {
	s, h := newTestSpace(t, 1000*testBS, 0, 0, 100*testBS, time.Hour)
	if _, err := s.Reserve(0, 100*testBS); err != nil {
		t.Fatal(err)
	}
	calls := h.calls
	if _, err := s.Reserve(0, 50*testBS); err != nil {
		t.Fatal(err)
	}
	if h.calls != calls {
		t.Fatalf("Reserve that fits called statfs %d times", h.calls-calls)
	}
	if _, err := s.Reserve(100*testBS, testBS); !errors.Is(err, device.ErrNoSpace) {
		t.Fatalf("Reserve on a full host: %v, want ErrNoSpace", err)
	}
	if h.calls != calls+1 {
		t.Fatalf("failing Reserve made %d statfs calls, want 1", h.calls-calls)
	}
	h.total += 10 * testBS // another tenant freed space
	if got, err := s.Reserve(100*testBS, 10*testBS); err != nil || got != 10*testBS {
		t.Fatalf("Reserve after the host freed space = %d, %v", got, err)
	}
	// A statfs error keeps the last figure and is not fatal.
	h.err = errors.New("EIO")
	if _, err := s.Reserve(200*testBS, testBS); !errors.Is(err, device.ErrNoSpace) {
		t.Fatalf("Reserve with failing statfs: %v, want ErrNoSpace", err)
	}
	if st := s.Stats(); st.Capacity != 110*testBS {
		t.Fatalf("capacity after statfs error = %d, want %d", st.Capacity, 110*testBS)
	}
}

// TestSpaceStatfsInterval: the cached statfs is refreshed once the
// interval passed.
func TestSpaceStatfsInterval(t *testing.T) {
	s, h := newTestSpace(t, 1000*testBS, 0, 0, 1<<30, time.Millisecond)
	calls := h.calls
	time.Sleep(3 * time.Millisecond)
	if _, err := s.Reserve(0, 1); err != nil {
		t.Fatal(err)
	}
	if h.calls == calls {
		t.Fatal("Reserve after the interval did not refresh statfs")
	}
}

// TestSpaceWriteConsumesReservation: a write over reserved blocks converts
// them (capacity unchanged), a write into free blocks is charged.
func TestSpaceWriteConsumesReservation(t *testing.T) {
	s, _ := newTestSpace(t, 100*testBS, 10*testBS, 0, 1<<40, time.Hour)
	if _, err := s.Reserve(0, 10*testBS); err != nil {
		t.Fatal(err)
	}
	// Full: even a write must fail for a fresh block.
	if err := s.beginWrite("write", 20*testBS, 1); !errors.Is(err, device.ErrNoSpace) {
		t.Fatalf("write beyond capacity: %v, want ErrNoSpace", err)
	}
	if err := s.beginWrite("write", 0, 10*testBS); err != nil {
		t.Fatalf("write over reserved blocks: %v", err)
	}
	s.endWrite(0, 10*testBS, true)
	if st := s.Stats(); st.Allocated != 10*testBS || st.Reserved != 0 {
		t.Fatalf("after writeback: %+v", st)
	}
	// Punch frees; the cache's reservations elsewhere are untouched.
	s.markFree(0, 5*testBS)
	if _, err := s.Reserve(50*testBS, testBS); err != nil {
		t.Fatal(err)
	}
	s.markFree(50*testBS, testBS)
	if st := s.Stats(); st.Allocated != 5*testBS || st.Reserved != testBS {
		t.Fatalf("after punches: %+v", st)
	}
}

// TestSpaceReserveAllocs pins the hot path at zero allocations.
func TestSpaceReserveAllocs(t *testing.T) {
	s, _ := newTestSpace(t, 1<<30, 0, 0, 1<<40, time.Hour)
	// Fragment the map a little so Reserve walks several records.
	for i := int64(0); i < 64; i += 2 {
		if _, err := s.Reserve(i*testBS, testBS); err != nil {
			t.Fatal(err)
		}
	}
	off := int64(0)
	allocs := testing.AllocsPerRun(1000, func() {
		if _, err := s.Reserve(off, 16*testBS); err != nil {
			t.Fatal(err)
		}
		s.Release(off+testBS, 8*testBS)
		off = (off + 64*testBS) % (1 << 29)
	})
	if allocs != 0 {
		t.Fatalf("Reserve+Release allocate %.1f times per call, want 0", allocs)
	}
}

func BenchmarkSpaceReserve(b *testing.B) {
	s, _ := newTestSpace(b, 1<<40, 0, 0, 1<<50, time.Hour)
	b.ReportAllocs()
	off := int64(0)
	for b.Loop() {
		// A new 64 KiB write, and an overwrite of already reserved bytes.
		if _, err := s.Reserve(off, 64<<10); err != nil {
			b.Fatal(err)
		}
		if _, err := s.Reserve(off+4096, 4096); err != nil {
			b.Fatal(err)
		}
		off += 64 << 10
		if off >= 1<<40 {
			b.StopTimer()
			s.Release(0, 1<<40)
			off = 0
			b.StartTimer()
		}
	}
}

// TestSpaceConcurrentCacheUse drives a File the way the cache does, from
// several goroutines at once: Reserve a range, write it back (which
// consumes the reservation), sometimes Release instead, sometimes Trim.
// At quiescence nothing is reserved or charged and allocated matches the
// blocks written and not trimmed.
func TestSpaceConcurrentCacheUse(t *testing.T) {
	const size, workers, per = 16 << 20, 4, 200
	path := filepath.Join(t.TempDir(), "cache.img")
	f, err := Open(path, Options{Create: true, Size: size, Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	sp := f.Space()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 7))
			region := int64(size / workers)
			base := int64(w) * region
			buf := make([]byte, 64<<10)
			for range per {
				off := base + int64(r.IntN(int(region-int64(len(buf)))/testBS))*testBS
				n := int64(r.IntN(len(buf)/testBS)+1) * testBS
				if _, err := sp.Reserve(off, n); err != nil {
					errs <- err
					return
				}
				switch r.IntN(4) {
				case 0:
					sp.Release(off, n)
				case 1:
					sp.Release(off, n)
					if err := f.Trim(off, n); err != nil {
						errs <- err
						return
					}
				default:
					if _, err := f.WriteAt(buf[:n], off); err != nil {
						errs <- err
						return
					}
				}
				if err := sp.Check(); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	st := sp.Stats()
	if st.Reserved != 0 {
		t.Fatalf("reserved %d at quiescence", st.Reserved)
	}
	sp.mu.Lock()
	charged := sp.t.Bytes(chargedBit)
	sp.mu.Unlock()
	if charged != 0 {
		t.Fatalf("charged %d at quiescence", charged)
	}
	var data int64
	for _, e := range collectExtents(t, f, 0, size) {
		if e.Flags == 0 {
			data += e.Len
		}
	}
	if data != st.Allocated {
		t.Fatalf("extents hold %d data bytes, Stats.Allocated %d", data, st.Allocated)
	}
	// The map agrees with the file: reopen and rescan.
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	g, err := Open(path, Options{Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if got := g.Space().Stats().Allocated; got != st.Allocated {
		t.Fatalf("rescan finds %d allocated bytes, the map had %d", got, st.Allocated)
	}
}
