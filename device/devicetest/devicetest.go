package devicetest

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"testing"

	"github.com/extentd/extentd/device"
)

// NewDevice returns a fresh Device of size bytes reading as zeros. It
// registers its own cleanup (Close, Check) with t.Cleanup.
type NewDevice func(t *testing.T, size int64) device.Device

// SeedEnv names the environment variable that fixes the seed of the random
// sub-tests (the seed in use is always logged).
const SeedEnv = "DEVICETEST_SEED"

// Size is the device size most sub-tests use: 1 MiB (a multiple of 4096,
// so O_DIRECT devices can run every sub-test).
const Size = 1 << 20

// Run runs the conformance suite against devices made by newDevice. Optional
// interfaces (Trimmer, Zeroer, Extenter, RangeSyncer, Prefetcher) are tested
// when the device implements them.
func Run(t *testing.T, newDevice NewDevice) {
	t.Run("Size", func(t *testing.T) { testSize(t, newDevice) })
	t.Run("NeverWrittenReadsZeros", func(t *testing.T) { testZeros(t, newDevice) })
	t.Run("RoundTripAligned", func(t *testing.T) { testRoundTripAligned(t, newDevice) })
	t.Run("RoundTripUnaligned", func(t *testing.T) { testRoundTripUnaligned(t, newDevice) })
	t.Run("OutOfRange", func(t *testing.T) { testOutOfRange(t, newDevice) })
	t.Run("EmptyRanges", func(t *testing.T) { testEmptyRanges(t, newDevice) })
	t.Run("Trim", func(t *testing.T) { testTrim(t, newDevice) })
	t.Run("Zero", func(t *testing.T) { testZero(t, newDevice) })
	t.Run("Extents", func(t *testing.T) { testExtents(t, newDevice) })
	t.Run("FlushSyncPrefetch", func(t *testing.T) { testFlush(t, newDevice) })
	t.Run("ConcurrentDisjointWriters", func(t *testing.T) { testConcurrent(t, newDevice) })
	t.Run("RandomModel", func(t *testing.T) { testModel(t, newDevice) })
}

// Seed returns the seed for a random sub-test: SeedEnv if set, else a
// random one. It logs it so that a failure can be replayed.
func Seed(tb testing.TB) uint64 {
	tb.Helper()
	seed := rand.Uint64()
	if s := os.Getenv(SeedEnv); s != "" {
		v, err := strconv.ParseUint(s, 0, 64)
		if err != nil {
			tb.Fatalf("%s=%q: %v", SeedEnv, s, err)
		}
		seed = v
	}
	tb.Logf("seed %d (replay with %s=%d)", seed, SeedEnv, seed)
	return seed
}

// Model is a flat in-memory image that a device under test must equal.
type Model []byte

// Verify reads the whole device and compares it with m, reporting the first
// differing byte.
func (m Model) Verify(tb testing.TB, d device.Device) {
	tb.Helper()
	got := make([]byte, len(m))
	if n, err := d.ReadAt(got, 0); err != nil || n != len(got) {
		tb.Fatalf("ReadAt(whole device) = %d, %v", n, err)
	}
	if i := firstDiff(got, m); i >= 0 {
		tb.Fatalf("device differs from model at byte %d: got %#02x want %#02x (%s)",
			i, got[i], m[i], window(got, m, i))
	}
}

func firstDiff(a, b []byte) int {
	if bytes.Equal(a, b) {
		return -1
	}
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return len(a)
}

func window(got, want []byte, i int) string {
	lo, hi := max(0, i-4), min(len(got), i+12)
	return fmt.Sprintf("got[%d:%d]=% x want % x", lo, hi, got[lo:hi], want[lo:hi])
}

// pattern returns n bytes that differ from zero and depend on seed and
// position, so that misplaced data is detected.
func pattern(seed byte, n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i*7+int(seed)*13) | 1
	}
	return p
}

func mustWrite(tb testing.TB, d device.Device, m Model, p []byte, off int64) {
	tb.Helper()
	n, err := d.WriteAt(p, off)
	if err != nil || n != len(p) {
		tb.Fatalf("WriteAt(len %d, off %d) = %d, %v", len(p), off, n, err)
	}
	if m != nil {
		copy(m[off:], p)
	}
}

func mustRead(tb testing.TB, d device.Device, m Model, off int64, n int) {
	tb.Helper()
	got := make([]byte, n)
	if k, err := d.ReadAt(got, off); err != nil || k != n {
		tb.Fatalf("ReadAt(len %d, off %d) = %d, %v", n, off, k, err)
	}
	if i := firstDiff(got, m[off:off+int64(n)]); i >= 0 {
		tb.Fatalf("ReadAt(len %d, off %d): byte %d (offset %d) got %#02x want %#02x (%s)",
			n, off, i, off+int64(i), got[i], m[off+int64(i)], window(got, m[off:off+int64(n)], i))
	}
}

func testSize(t *testing.T, newDevice NewDevice) {
	for _, size := range []int64{4096, Size} {
		if d := newDevice(t, size); d.Size() != size {
			t.Errorf("Size() = %d, want %d", d.Size(), size)
		}
	}
}

func testZeros(t *testing.T, newDevice NewDevice) {
	d := newDevice(t, Size)
	m := make(Model, Size)
	m.Verify(t, d)
	mustRead(t, d, m, 12345, 6789)
	mustRead(t, d, m, Size-1, 1)
	mustRead(t, d, m, 0, 0)
}

func testRoundTripAligned(t *testing.T, newDevice NewDevice) {
	d := newDevice(t, Size)
	m := make(Model, Size)
	for i, c := range []struct{ off, n int64 }{
		{0, 4096}, {4096, 4096}, {64 << 10, 64 << 10}, {Size - 4096, 4096}, {256 << 10, 256 << 10},
	} {
		mustWrite(t, d, m, pattern(byte(i), int(c.n)), c.off)
		mustRead(t, d, m, c.off, int(c.n))
	}
	// Overwrite part of earlier data.
	mustWrite(t, d, m, pattern(99, 8192), 4096*17)
	m.Verify(t, d)
}

func testRoundTripUnaligned(t *testing.T, newDevice NewDevice) {
	d := newDevice(t, Size)
	m := make(Model, Size)
	cases := []struct{ off, n int64 }{
		{1, 1}, {511, 511}, {4095, 4097}, {4097, 1}, {12345, 511}, {100003, 4097},
		{Size - 1, 1}, {Size - 4097, 4097}, {8191, 2}, {65535, 70000},
	}
	for i, c := range cases {
		t.Run(fmt.Sprintf("off%d_len%d", c.off, c.n), func(t *testing.T) {
			mustWrite(t, d, m, pattern(byte(i+1), int(c.n)), c.off)
			mustRead(t, d, m, c.off, int(c.n))
			// Unaligned reads around the write see both neighbours.
			lo := max(0, c.off-3)
			hi := min(Size, c.off+c.n+5)
			mustRead(t, d, m, lo, int(hi-lo))
		})
	}
	m.Verify(t, d)
}

// noPanic runs f and fails the test if it panics.
func noPanic(t *testing.T, what string, f func()) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Errorf("%s panicked: %v", what, r)
		}
	}()
	f()
}

func testOutOfRange(t *testing.T, newDevice NewDevice) {
	d := newDevice(t, Size)
	buf := make([]byte, 2)
	bad := []struct {
		off int64
		n   int
	}{
		{-1, 1}, {Size, 1}, {Size - 1, 2}, {Size + 4096, 1}, {1 << 62, 1}, {-(1 << 62), 2},
	}
	for _, c := range bad {
		name := fmt.Sprintf("off%d_len%d", c.off, c.n)
		noPanic(t, "ReadAt "+name, func() {
			if _, err := d.ReadAt(buf[:c.n], c.off); !errors.Is(err, device.ErrOutOfRange) {
				t.Errorf("ReadAt %s: err %v, want ErrOutOfRange", name, err)
			}
		})
		noPanic(t, "WriteAt "+name, func() {
			if _, err := d.WriteAt(buf[:c.n], c.off); !errors.Is(err, device.ErrOutOfRange) {
				t.Errorf("WriteAt %s: err %v, want ErrOutOfRange", name, err)
			}
		})
	}
	badRanges := []struct{ off, n int64 }{
		{-1, 1}, {Size, 1}, {Size - 1, 2}, {0, Size + 1}, {0, -1}, {1 << 62, 1 << 62}, {4096, 1<<63 - 1},
	}
	for _, c := range badRanges {
		name := fmt.Sprintf("[%d,+%d)", c.off, c.n)
		check := func(op string, err error) {
			if !errors.Is(err, device.ErrOutOfRange) {
				t.Errorf("%s %s: err %v, want ErrOutOfRange", op, name, err)
			}
		}
		if tr, ok := d.(device.Trimmer); ok {
			noPanic(t, "Trim "+name, func() { check("Trim", tr.Trim(c.off, c.n)) })
		}
		if z, ok := d.(device.Zeroer); ok {
			noPanic(t, "Zero "+name, func() { check("Zero", z.Zero(c.off, c.n, true)) })
			noPanic(t, "Zero "+name, func() { check("Zero", z.Zero(c.off, c.n, false)) })
		}
		if e, ok := d.(device.Extenter); ok {
			noPanic(t, "Extents "+name, func() {
				check("Extents", e.Extents(c.off, c.n, func(device.Extent) bool { return true }))
			})
		}
		if s, ok := d.(device.RangeSyncer); ok {
			noPanic(t, "SyncRange "+name, func() { check("SyncRange", s.SyncRange(c.off, c.n)) })
		}
		if p, ok := d.(device.Prefetcher); ok {
			noPanic(t, "Prefetch "+name, func() { check("Prefetch", p.Prefetch(c.off, c.n)) })
		}
	}
	// Nothing changed.
	make(Model, Size).Verify(t, d)
}

// testEmptyRanges: zero-length requests at 0, inside and at Size are valid
// (device.CheckRange accepts [Size,+0)) and change nothing.
func testEmptyRanges(t *testing.T, newDevice NewDevice) {
	d := newDevice(t, Size)
	m := make(Model, Size)
	mustWrite(t, d, m, pattern(11, 4096), 4096)
	for _, off := range []int64{0, 4095, Size - 1, Size} {
		if n, err := d.ReadAt(nil, off); n != 0 || err != nil {
			t.Errorf("ReadAt(nil, %d) = %d, %v; want 0, nil", off, n, err)
		}
		if n, err := d.WriteAt(nil, off); n != 0 || err != nil {
			t.Errorf("WriteAt(nil, %d) = %d, %v; want 0, nil", off, n, err)
		}
		if tr, ok := d.(device.Trimmer); ok {
			if err := tr.Trim(off, 0); err != nil {
				t.Errorf("Trim(%d, 0): %v", off, err)
			}
		}
		if z, ok := d.(device.Zeroer); ok {
			if err := z.Zero(off, 0, false); err != nil {
				t.Errorf("Zero(%d, 0, false): %v", off, err)
			}
		}
		if s, ok := d.(device.RangeSyncer); ok {
			if err := s.SyncRange(off, 0); err != nil {
				t.Errorf("SyncRange(%d, 0): %v", off, err)
			}
		}
	}
	m.Verify(t, d)
}

func testTrim(t *testing.T, newDevice NewDevice) {
	d := newDevice(t, Size)
	tr, ok := d.(device.Trimmer)
	if !ok {
		t.Skip("not a device.Trimmer")
	}
	m := make(Model, Size)
	mustWrite(t, d, m, pattern(3, Size), 0)
	for _, c := range []struct{ off, n int64 }{
		{0, 4096}, {8192, 64 << 10}, {100001, 5000}, {300000, 1}, {Size - 4097, 4097}, {4096, 0},
	} {
		if err := tr.Trim(c.off, c.n); err != nil {
			t.Fatalf("Trim(%d, %d): %v", c.off, c.n, err)
		}
		clear(m[c.off : c.off+c.n])
		mustRead(t, d, m, max(0, c.off-10), int(min(Size, c.off+c.n+10)-max(0, c.off-10)))
	}
	m.Verify(t, d)
	// Writing after a trim works.
	mustWrite(t, d, m, pattern(4, 4096), 8192)
	m.Verify(t, d)
}

func testZero(t *testing.T, newDevice NewDevice) {
	d := newDevice(t, Size)
	z, ok := d.(device.Zeroer)
	if !ok {
		t.Skip("not a device.Zeroer")
	}
	m := make(Model, Size)
	mustWrite(t, d, m, pattern(5, Size), 0)
	for i, c := range []struct{ off, n int64 }{
		{0, 4096}, {8192, 64 << 10}, {100001, 5000}, {300000, 1}, {Size - 4097, 4097}, {500000, 0},
	} {
		mayTrim := i%2 == 0
		if err := z.Zero(c.off, c.n, mayTrim); err != nil {
			t.Fatalf("Zero(%d, %d, %v): %v", c.off, c.n, mayTrim, err)
		}
		clear(m[c.off : c.off+c.n])
		mustRead(t, d, m, max(0, c.off-10), int(min(Size, c.off+c.n+10)-max(0, c.off-10)))
		if err := z.Zero(c.off, c.n, !mayTrim); err != nil {
			t.Fatalf("Zero(%d, %d, %v) again: %v", c.off, c.n, !mayTrim, err)
		}
		mustRead(t, d, m, max(0, c.off-10), int(min(Size, c.off+c.n+10)-max(0, c.off-10)))
	}
	m.Verify(t, d)
	if fz, ok := d.(device.FastZeroer); ok {
		t.Logf("FastZero() = %v", fz.FastZero())
	}
}

// CheckExtents asks d for the extents of [off, off+n) and checks the
// Extenter contract: they start at off, are non-empty, consecutive and in
// order, cover the range (the last may end past it but not past Size), and
// every extent flagged Zero reads as zeros in m. It returns the extents.
func CheckExtents(tb testing.TB, d device.Device, m Model, off, n int64) []device.Extent {
	tb.Helper()
	e := d.(device.Extenter)
	var got []device.Extent
	err := e.Extents(off, n, func(x device.Extent) bool {
		got = append(got, x)
		return true
	})
	if err != nil {
		tb.Fatalf("Extents(%d, %d): %v", off, n, err)
	}
	pos := off
	for i, x := range got {
		switch {
		case x.Off != pos:
			tb.Fatalf("Extents(%d, %d): extent %d %+v starts at %d, want %d (all: %v)", off, n, i, x, x.Off, pos, got)
		case x.Len <= 0:
			tb.Fatalf("Extents(%d, %d): extent %d %+v is empty", off, n, i, x)
		case x.Off+x.Len > d.Size():
			tb.Fatalf("Extents(%d, %d): extent %d %+v ends past Size %d", off, n, i, x, d.Size())
		case x.Flags&^(device.Hole|device.Zero) != 0:
			tb.Fatalf("Extents(%d, %d): extent %d has unknown flags %v", off, n, i, x.Flags)
		case i > 0 && pos >= off+n:
			tb.Fatalf("Extents(%d, %d): extent %d %+v after the range was covered", off, n, i, x)
		}
		if x.Flags&device.Zero != 0 && m != nil {
			if j := bytes.IndexFunc(m[x.Off:x.Off+x.Len], func(r rune) bool { return r != 0 }); j >= 0 {
				tb.Fatalf("Extents(%d, %d): extent %+v flagged %v but byte %d is not zero", off, n, x, x.Flags, x.Off+int64(j))
			}
		}
		pos = x.Off + x.Len
	}
	if n > 0 && pos < off+n {
		tb.Fatalf("Extents(%d, %d) covered only up to %d: %v", off, n, pos, got)
	}
	return got
}

func testExtents(t *testing.T, newDevice NewDevice) {
	d := newDevice(t, Size)
	e, ok := d.(device.Extenter)
	if !ok {
		t.Skip("not a device.Extenter")
	}
	m := make(Model, Size)
	CheckExtents(t, d, m, 0, Size)
	for _, c := range []struct{ off, n int64 }{{0, 4096}, {65536, 8192}, {200000, 3}, {Size - 4096, 4096}} {
		mustWrite(t, d, m, pattern(7, int(c.n)), c.off)
	}
	for _, c := range []struct{ off, n int64 }{
		{0, Size}, {0, 1}, {1, 4095}, {4095, 2}, {65536, 8192}, {60000, 20000}, {199999, 10}, {Size - 1, 1}, {12345, 0},
	} {
		CheckExtents(t, d, m, c.off, c.n)
	}
	if tr, ok := d.(device.Trimmer); ok {
		if err := tr.Trim(65536, 4096); err != nil {
			t.Fatal(err)
		}
		clear(m[65536 : 65536+4096])
		CheckExtents(t, d, m, 0, Size)
	}
	// yield returning false stops the walk.
	calls := 0
	if err := e.Extents(0, Size, func(device.Extent) bool { calls++; return false }); err != nil {
		t.Fatal(err)
	}
	if calls != 1 {
		t.Fatalf("Extents called yield %d times after it returned false, want 1", calls)
	}
}

func testFlush(t *testing.T, newDevice NewDevice) {
	d := newDevice(t, Size)
	if err := d.Flush(); err != nil {
		t.Fatalf("Flush on a fresh device: %v", err)
	}
	m := make(Model, Size)
	mustWrite(t, d, m, pattern(9, 10000), 5000)
	if err := d.Flush(); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	if s, ok := d.(device.RangeSyncer); ok {
		if err := s.SyncRange(5000, 10000); err != nil {
			t.Fatalf("SyncRange: %v", err)
		}
		if err := s.SyncRange(0, 0); err != nil {
			t.Fatalf("SyncRange(0, 0): %v", err)
		}
	}
	if p, ok := d.(device.Prefetcher); ok {
		if err := p.Prefetch(0, Size); err != nil {
			t.Fatalf("Prefetch: %v", err)
		}
	}
	m.Verify(t, d)
}

// testConcurrent runs writers on interleaved, disjoint byte ranges that
// share blocks (a 1000-byte stripe per writer), so a device doing
// read-modify-write of whole blocks must not lose a neighbour's bytes.
func testConcurrent(t *testing.T, newDevice NewDevice) {
	d := newDevice(t, Size)
	const writers, stripe = 4, 1000
	m := make(Model, Size)
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for off := int64(w * stripe); off < Size; off += writers * stripe {
				n := min(stripe, Size-off)
				p := pattern(byte(w+1), int(n))
				if k, err := d.WriteAt(p, off); err != nil || k != int(n) {
					errs <- fmt.Errorf("writer %d: WriteAt(len %d, off %d) = %d, %v", w, n, off, k, err)
					return
				}
			}
		}()
		for off := int64(w * stripe); off < Size; off += writers * stripe {
			n := min(stripe, Size-off)
			copy(m[off:], pattern(byte(w+1), int(n)))
		}
	}
	// A reader runs alongside; it only checks that reads succeed.
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 4096+17)
		for off := int64(0); off+int64(len(buf)) <= Size; off += 20011 {
			if _, err := d.ReadAt(buf, off); err != nil {
				errs <- fmt.Errorf("reader: ReadAt(off %d): %v", off, err)
				return
			}
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	m.Verify(t, d)
}

// testModel applies random reads, writes, trims, zeros and flushes, with
// offsets biased to block edges, checking each read and the whole device
// at the end against a flat model.
func testModel(t *testing.T, newDevice NewDevice) {
	const size = 256 << 10
	seed := Seed(t)
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	d := newDevice(t, size)
	m := make(Model, size)
	tr, _ := d.(device.Trimmer)
	z, _ := d.(device.Zeroer)
	_, ext := d.(device.Extenter)
	randRange := func() (int64, int64) {
		var off int64
		switch r.IntN(3) {
		case 0:
			off = int64(r.IntN(size/4096)) * 4096
		case 1:
			off = int64(r.IntN(size/4096))*4096 + int64(r.IntN(3)) - 1
		default:
			off = int64(r.IntN(size))
		}
		off = min(max(off, 0), size-1)
		var n int64
		switch r.IntN(4) {
		case 0:
			n = int64(r.IntN(16) + 1)
		case 1:
			n = int64(r.IntN(4)+1) * 4096
		case 2:
			n = int64(r.IntN(64<<10) + 1)
		default:
			n = int64(r.IntN(9000) + 1)
		}
		return off, min(n, size-off)
	}
	const ops = 600
	for i := range ops {
		off, n := randRange()
		switch op := r.IntN(10); {
		case op < 4:
			mustWrite(t, d, m, pattern(byte(i), int(n)), off)
		case op < 7:
			mustRead(t, d, m, off, int(n))
		case op == 7 && tr != nil:
			if err := tr.Trim(off, n); err != nil {
				t.Fatalf("op %d: Trim(%d, %d): %v", i, off, n, err)
			}
			clear(m[off : off+n])
		case op == 8 && z != nil:
			if err := z.Zero(off, n, r.IntN(2) == 0); err != nil {
				t.Fatalf("op %d: Zero(%d, %d): %v", i, off, n, err)
			}
			clear(m[off : off+n])
		case op == 9:
			if err := d.Flush(); err != nil {
				t.Fatalf("op %d: Flush: %v", i, err)
			}
			if ext {
				CheckExtents(t, d, m, off, n)
			}
		}
	}
	m.Verify(t, d)
	if ext {
		CheckExtents(t, d, m, 0, size)
	}
}
