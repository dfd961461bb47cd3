package extentcache

import (
	"bytes"
	"flag"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/extentd/extentd/device"
)

var seedFlag = flag.Uint64("seed", 0, "seed for randomized tests (0: time-based)")

// testSeed returns the seed to use, logging it so a failure can be replayed
// with -seed.
func testSeed(tb testing.TB) uint64 {
	tb.Helper()
	s := *seedFlag
	if s == 0 {
		s = uint64(time.Now().UnixNano())
	}
	tb.Logf("seed %d (replay with -seed %d)", s, s)
	return s
}

// testOptions are small limits that make writeback, back-pressure and
// clustering happen within a short test.
func testOptions(tb testing.TB) Options {
	return Options{
		BlockSize:         4096,
		CacheSize:         1 << 20,
		MaxDirty:          512 << 10,
		DirtyBackground:   128 << 10,
		MaxWritebackIO:    64 << 10,
		WritebackAge:      20 * time.Millisecond,
		WritebackInFlight: 3,
		RetryBackoff:      time.Millisecond,
		Logger:            zaptest.NewLogger(tb),
	}
}

// newTestCache returns a cache over lower and registers a cleanup that
// closes it and checks its invariants.
func newTestCache(tb testing.TB, lower device.Device, opts Options) *Cache {
	tb.Helper()
	c, err := New(lower, opts)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	tb.Cleanup(func() {
		if err := c.Check(); err != nil {
			tb.Errorf("Check before close: %v", err)
		}
		c.mu.Lock()
		closed := c.closed
		c.mu.Unlock()
		if !closed {
			if err := c.Close(); err != nil {
				tb.Errorf("Close: %v", err)
			}
		}
	})
	return c
}

// mustWrite writes p at off to d and to model.
func mustWrite(tb testing.TB, d device.Device, model []byte, p []byte, off int64) {
	tb.Helper()
	if n, err := d.WriteAt(p, off); err != nil || n != len(p) {
		tb.Fatalf("WriteAt(%d bytes at %d): n %d err %v", len(p), off, n, err)
	}
	if model != nil {
		copy(model[off:], p)
	}
}

// evictResident evicts every resident page, so that reads of clean blocks go
// to the clean cache or lower.
func evictResident(c *Cache) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.resident.n > 0 {
		c.evictResidentLocked(c.resident.n)
	}
}

// verify reads [off, off+n) from d and compares it with model.
func verify(tb testing.TB, d device.Device, model []byte, off, n int64) {
	tb.Helper()
	got := make([]byte, n)
	if _, err := d.ReadAt(got, off); err != nil {
		tb.Fatalf("ReadAt(%d bytes at %d): %v", n, off, err)
	}
	if i := firstDiff(got, model[off:off+n]); i >= 0 {
		tb.Fatalf("ReadAt(%d bytes at %d): byte %d (offset %d) is %d, want %d", n, off, i, off+int64(i), got[i], model[off+int64(i)])
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
	return min(len(a), len(b))
}

// fill returns n bytes of a pattern that differs per (tag, offset).
func fill(tag byte, off int64, n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = tag ^ byte((off+int64(i))*7+(off+int64(i))>>9)
		if p[i] == 0 {
			p[i] = tag | 1
		}
	}
	return p
}

// countingDev is a lower device recording every write call (WriteAt and
// WriteVAt) with its range; it delegates to an in-memory image.
type countingDev struct {
	mu       sync.Mutex
	data     []byte
	writes   []ioRange
	bufs     []int         // buffers per WriteVAt call
	gate     chan struct{} // writes wait until it is closed
	readGate chan struct{}
	reads    int
	flushes  int
	active   int // writes in progress
	maxConc  int // most writes ever in progress at once
	// flushGate: Flush sends on it when it starts and then waits for a
	// receive... the test sends back to release it (nil: no gate).
	flushGate chan struct{}
}

type ioRange struct{ off, n int64 }

func newCountingDev(size int64) *countingDev { return &countingDev{data: make([]byte, size)} }

func (d *countingDev) Size() int64 { return int64(len(d.data)) }
func (d *countingDev) ReadAt(p []byte, off int64) (int, error) {
	d.mu.Lock()
	n := copy(p, d.data[off:])
	d.reads++
	rg := d.readGate
	d.readGate = nil
	d.mu.Unlock()
	if rg != nil {
		// The data was copied before waiting: this read returns what lower
		// held when it started.
		rg <- struct{}{}
		<-rg
	}
	return n, nil
}

// gateNextRead makes the next ReadAt copy its data, send on the returned
// channel, then wait for a receive... (the test sends back to release it).
func (d *countingDev) gateNextRead() chan struct{} {
	g := make(chan struct{})
	d.mu.Lock()
	d.readGate = g
	d.mu.Unlock()
	return g
}

func (d *countingDev) readCount() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.reads
}

func (d *countingDev) image() []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return bytes.Clone(d.data)
}
func (d *countingDev) WriteAt(p []byte, off int64) (int, error) {
	return d.WriteVAt([][]byte{p}, off)
}
func (d *countingDev) WriteVAt(bufs [][]byte, off int64) (int, error) {
	d.mu.Lock()
	d.active++
	d.maxConc = max(d.maxConc, d.active)
	g := d.gate
	d.mu.Unlock()
	if g != nil {
		<-g
	} else {
		runtime.Gosched() // let concurrent writers overlap, if there are any
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.active--
	n := 0
	for _, b := range bufs {
		n += copy(d.data[off+int64(n):], b)
	}
	d.writes = append(d.writes, ioRange{off, int64(n)})
	d.bufs = append(d.bufs, len(bufs))
	return n, nil
}
func (d *countingDev) Flush() error {
	d.mu.Lock()
	d.flushes++
	g := d.flushGate
	d.mu.Unlock()
	if g != nil {
		g <- struct{}{}
		<-g
	}
	return nil
}

func (d *countingDev) flushCount() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.flushes
}

// setGate makes writes wait until g is closed (nil: no gate).
func (d *countingDev) setGate(g chan struct{}) {
	d.mu.Lock()
	d.gate = g
	d.mu.Unlock()
}

func (d *countingDev) takeWrites() []ioRange {
	d.mu.Lock()
	defer d.mu.Unlock()
	w := d.writes
	d.writes = nil
	d.bufs = nil
	return w
}

func (r ioRange) String() string { return fmt.Sprintf("[%d,+%d)", r.off, r.n) }

// randRange returns a random range in [0, size) with a mix of aligned,
// sub-block and odd-sized requests.
func randRange(r *rand.Rand, size int64) (int64, int64) {
	var off, n int64
	switch r.IntN(9) {
	case 8: // large: chunked write path, many clean blocks in reads
		n = 1 + r.Int64N(600<<10)
		off = r.Int64N(size)
	case 0, 4: // aligned, 1..16 blocks
		n = int64(1+r.IntN(16)) * 4096
		off = r.Int64N(size/4096) * 4096
	case 1, 5: // tiny
		n = int64([]int{1, 511, 512, 4095, 4097}[r.IntN(5)])
		off = r.Int64N(size)
	default: // anything up to 40 KiB
		n = 1 + r.Int64N(40<<10)
		off = r.Int64N(size)
	}
	if off+n > size {
		n = size - off
	}
	return off, n
}

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }
