package extentcache

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/extentd/extentd/device"
	"github.com/extentd/extentd/device/faultdev"
	"github.com/extentd/extentd/device/memdev"
)

// fakeSpace is a Space with a capacity in blocks. Reservations are never
// converted (the fake cannot see lower writes), which is enough to test
// ENOSPC at write time and the out-of-space switch.
type fakeSpace struct {
	mu         sync.Mutex
	bs, cap    int64
	reserved   map[int64]bool
	outOfSpace bool
	oosCalls   []bool
}

func newFakeSpace(bs, capBlocks int64) *fakeSpace {
	return &fakeSpace{bs: bs, cap: capBlocks, reserved: map[int64]bool{}}
}

func (s *fakeSpace) Reserve(off, n int64) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var add []int64
	for b := off / s.bs; b < (off+n+s.bs-1)/s.bs; b++ {
		if !s.reserved[b] {
			add = append(add, b)
		}
	}
	if len(add) == 0 {
		return 0, nil
	}
	if s.outOfSpace {
		return 0, fmt.Errorf("fakespace: reserve [%d,+%d): host full: %w", off, n, device.ErrNoSpace)
	}
	if int64(len(s.reserved)+len(add)) > s.cap {
		return 0, fmt.Errorf("fakespace: reserve [%d,+%d): %w", off, n, device.ErrNoSpace)
	}
	for _, b := range add {
		s.reserved[b] = true
	}
	return int64(len(add)) * s.bs, nil
}

func (s *fakeSpace) Release(off, n int64) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var k int64
	for b := off / s.bs; b < (off+n)/s.bs; b++ {
		if s.reserved[b] {
			delete(s.reserved, b)
			k++
		}
	}
	return k * s.bs
}

func (s *fakeSpace) SetOutOfSpace(v bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.outOfSpace = v
	s.oosCalls = append(s.oosCalls, v)
}

func (s *fakeSpace) state() (bool, []bool, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.outOfSpace, append([]bool(nil), s.oosCalls...), len(s.reserved)
}

// TestWriteNoSpace: a write that does not fit its reservation fails at once
// with ENOSPC and changes nothing; overwrites of reserved bytes need
// nothing new; a trim releases space.
func TestWriteNoSpace(t *testing.T) {
	const bs = 4096
	mem := memdev.New(1<<20, memdev.Options{})
	sp := newFakeSpace(bs, 8)
	o := quietOptions(t)
	o.Space = sp
	c := newTestCache(t, mem, o)
	model := make([]byte, 1<<20)
	mustWrite(t, c, model, fill(1, 0, 6*bs), 0)
	if _, err := c.WriteAt(fill(2, 10*bs, 3*bs), 10*bs); !errors.Is(err, device.ErrNoSpace) {
		t.Fatalf("write past capacity: err %v, want ErrNoSpace", err)
	}
	verify(t, c, model, 0, 1<<20)                   // nothing of the failed write applied
	mustWrite(t, c, model, fill(3, 100, 5*bs), 100) // overwrite: no new space
	if err := c.Zero(10*bs, 4*bs, false); !errors.Is(err, device.ErrNoSpace) {
		t.Fatalf("NO_HOLE zero past capacity: err %v, want ErrNoSpace", err)
	}
	if err := c.Trim(0, 4*bs); err != nil {
		t.Fatal(err)
	}
	clear(model[:4*bs])
	mustWrite(t, c, model, fill(4, 10*bs, 3*bs), 10*bs) // fits now
	verify(t, c, model, 0, 1<<20)
	if st := c.Stats(); st.DelallocBytes != 5*bs {
		t.Fatalf("Delalloc bytes %d, want %d", st.DelallocBytes, 5*bs)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	verify(t, mem, model, 0, 1<<20)
	if st := c.Stats(); st.DelallocBytes != 0 {
		t.Fatalf("Delalloc bytes %d after writeback, want 0", st.DelallocBytes)
	}
}

// TestFaults injects EIO, short writes and ENOSPC into writes, flushes,
// syncs and allocations below the cache: Flush and SyncRange must report
// the failure, nothing acknowledged may be lost (reads stay correct), and
// after the fault clears a Flush succeeds and lower holds everything.
func TestFaults(t *testing.T) {
	const bs, size = 4096, 1 << 20
	cases := []struct {
		name string
		op   faultdev.Op
		kind faultdev.Kind
		err  error
		want error
	}{
		{"write EIO", faultdev.OpWrite, faultdev.Fail, faultdev.EIO, syscall.EIO},
		{"short write", faultdev.OpWrite, faultdev.Short, nil, io.ErrShortWrite},
		{"write ENOSPC", faultdev.OpWrite, faultdev.Fail, faultdev.ENOSPC, syscall.ENOSPC},
		{"flush EIO", faultdev.OpFlush, faultdev.Fail, faultdev.EIO, syscall.EIO},
		{"sync EIO", faultdev.OpSync, faultdev.Fail, faultdev.EIO, syscall.EIO},
		{"zero EIO", faultdev.OpZero, faultdev.Fail, faultdev.EIO, syscall.EIO},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			mem := memdev.New(size, memdev.Options{Crashable: true})
			fd := faultdev.New(mem)
			sp := newFakeSpace(bs, size/bs)
			o := testOptions(t)
			o.Space = sp
			// Room for the kept pages: dropping them under memory
			// pressure would make the injected flush failure permanent
			// (TestDroppedThenSyncFails covers that).
			o.MaxDirty = 4 << 20
			c := newTestCache(t, fd, o)
			model := make([]byte, size)
			mustWrite(t, c, model, fill(1, 0, 64*bs), 0)
			if err := c.Flush(); err != nil {
				t.Fatal(err)
			}
			fd.Inject(tc.op, tc.kind, tc.err, -1)
			mustWrite(t, c, model, fill(2, 3*bs+5, 20*bs), 3*bs+5)
			mustWrite(t, c, model, fill(3, 112*bs, 16*bs), 112*bs) // one whole 64 KiB cluster: preallocated
			if err := c.Zero(40*bs, 8*bs, false); err != nil {
				t.Fatal(err)
			}
			clear(model[40*bs : 48*bs])
			var err error
			if tc.op == faultdev.OpSync {
				err = c.SyncRange(0, 128*bs)
			} else {
				err = c.Flush()
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("flush/sync with %s fault: err %v, want %v", tc.name, err, tc.want)
			}
			verify(t, c, model, 0, size)
			if tc.op == faultdev.OpSync {
				// A full flush does not use SyncRange: it succeeds.
				if err := c.Flush(); err != nil {
					t.Fatalf("Flush during a sync fault: %v", err)
				}
			} else if err := c.Flush(); !errors.Is(err, tc.want) {
				t.Fatalf("second flush while the fault persists: err %v, want %v", err, tc.want)
			}
			if tc.want == syscall.ENOSPC && tc.op != faultdev.OpFlush {
				if oos, _, _ := sp.state(); !oos {
					t.Fatal("writeback ENOSPC did not set Space out of space")
				}
				if _, err := c.WriteAt(fill(4, 200*bs, bs), 200*bs); !errors.Is(err, device.ErrNoSpace) {
					t.Fatalf("write needing space while out of space: err %v, want ErrNoSpace", err)
				}
			}
			fd.ClearAll()
			if err := c.Flush(); err != nil {
				t.Fatalf("flush after the fault cleared: %v", err)
			}
			if oos, _, _ := sp.state(); oos {
				t.Fatal("out-of-space not cleared after writeback succeeded")
			}
			if st := c.Stats(); st.StickyErr != nil || st.DirtyBytes != 0 {
				t.Fatalf("after recovery: sticky %v, dirty %d", st.StickyErr, st.DirtyBytes)
			}
			verify(t, c, model, 0, size)
			verify(t, mem.Crash(), model, 0, size)
		})
	}
}

// TestFaultsRandom runs the model workload while random faults come and go
// below the cache; at the end, with faults cleared, Flush must succeed and
// lower must equal the model.
func TestFaultsRandom(t *testing.T) {
	seed := testSeed(t)
	r := rand.New(rand.NewPCG(seed, 3))
	const size = 2 << 20
	mem := memdev.New(size, memdev.Options{Crashable: true})
	fd := faultdev.New(mem)
	o := testOptions(t)
	o.MaxDirty = 16 << 20 // kept pages (≤ size) are never dropped, so every failure is repairable
	c := newTestCache(t, fd, o)
	model := make([]byte, size)
	failed := 0
	for i := 0; i < 800; i++ {
		if r.IntN(40) == 0 {
			ops := []faultdev.Op{faultdev.OpWrite, faultdev.OpFlush, faultdev.OpZero, faultdev.OpTrim}
			fd.Inject(ops[r.IntN(len(ops))], faultdev.Kind(r.IntN(2)), nil, 1+r.IntN(5))
		}
		off, n := randRange(r, size)
		switch k := r.IntN(100); {
		case k < 60:
			mustWrite(t, c, model, fill(byte(i), off, int(n)), off)
		case k < 75:
			if err := c.Zero(off, n, r.IntN(2) == 0); err != nil {
				t.Fatal(err)
			}
			clear(model[off : off+n])
		case k < 85:
			verify(t, c, model, off, n)
		default:
			if err := c.Flush(); err != nil {
				failed++
			}
		}
	}
	fd.ClearAll()
	if err := c.Flush(); err != nil {
		t.Fatalf("final flush with faults cleared: %v", err)
	}
	verify(t, c, model, 0, size)
	verify(t, mem.Crash(), model, 0, size)
	st := fd.Stats()
	t.Logf("%d flushes failed; faults injected per op %v", failed, st.Faults)
}

// TestBackPressure: with a small MaxDirty and writeback stalled, writers
// block once the dirty memory is full, then proceed when writeback
// completes; memory stays within the limit.
func TestBackPressure(t *testing.T) {
	const bs = 4096
	lower := newCountingDev(4 << 20)
	o := testOptions(t)
	o.MaxDirty = 128 << 10 // 32 pages
	o.MaxWritebackIO = 64 << 10
	o.DirtyBackground = 32 << 10
	c := newTestCache(t, lower, o)
	gate := make(chan struct{})
	lower.setGate(gate)
	model := make([]byte, 4<<20)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for b := int64(0); b < 256; b++ {
			p := fill(byte(b), b*bs*3, bs)
			if _, err := c.WriteAt(p, b*bs*3); err != nil {
				t.Errorf("write %d: %v", b, err)
				return
			}
			copy(model[b*bs*3:], p)
		}
	}()
	waitFor(t, "a writer to wait", func() bool { return c.Stats().WriterWaits > 0 })
	select {
	case <-done:
		t.Fatal("writer finished although writeback is stalled and memory is full")
	default:
	}
	if st := c.Stats(); st.PageBytes > o.MaxDirty {
		t.Fatalf("page memory %d over MaxDirty %d", st.PageBytes, o.MaxDirty)
	}
	close(gate)
	<-done
	if st := c.Stats(); st.PageBytes > o.MaxDirty {
		t.Fatalf("page memory %d over MaxDirty %d", st.PageBytes, o.MaxDirty)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	verify(t, c, model, 0, 4<<20)
	if !bytes.Equal(lower.image(), model) {
		t.Fatal("lower differs from model")
	}
}

// TestBackPressureNoBackground: even with DirtyBackground = MaxDirty and no
// expiry, a writer waiting for memory makes writeback run.
func TestBackPressureNoBackground(t *testing.T) {
	const bs = 4096
	lower := newCountingDev(4 << 20)
	o := quietOptions(t)
	o.MaxDirty = 128 << 10
	o.DirtyBackground = o.MaxDirty
	o.MaxWritebackIO = 64 << 10
	c := newTestCache(t, lower, o)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := int64(0); i < 256; i++ {
			// Even blocks first: no window is complete (which would be
			// written back at once) until memory is long full.
			b := i * 2 % 256
			if i >= 128 {
				b++
			}
			if _, err := c.WriteAt(fill(byte(b), b*bs, bs), b*bs); err != nil {
				t.Errorf("write %d: %v", b, err)
				return
			}
		}
	}()
	waitFor(t, "the writer to finish", func() bool {
		select {
		case <-done:
			return true
		default:
			return false
		}
	})
	if c.Stats().WriterWaits == 0 {
		t.Fatal("writer never waited: test does not exercise back-pressure")
	}
}

// TestStallTimeout: with writeback failing for good and dirty memory full, a
// writer gets the writeback error after StallTimeout instead of hanging;
// nothing acknowledged is lost and service resumes when the fault clears.
func TestStallTimeout(t *testing.T) {
	const bs = 4096
	mem := memdev.New(4<<20, memdev.Options{Crashable: true})
	fd := faultdev.New(mem)
	o := testOptions(t)
	o.MaxDirty = 128 << 10
	o.MaxWritebackIO = 64 << 10
	o.StallTimeout = 50 * time.Millisecond
	c := newTestCache(t, fd, o)
	fd.Inject(faultdev.OpWrite, faultdev.Fail, faultdev.EIO, -1)
	model := make([]byte, 4<<20)
	var werr error
	for b := int64(0); b < 256 && werr == nil; b++ {
		p := fill(byte(b), b*bs, bs)
		if _, werr = c.WriteAt(p, b*bs); werr == nil {
			copy(model[b*bs:], p)
		}
	}
	if !errors.Is(werr, syscall.EIO) {
		t.Fatalf("writer with memory full and failing writeback: err %v, want EIO", werr)
	}
	verify(t, c, model, 0, 4<<20)
	fd.ClearAll()
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	verify(t, mem.Crash(), model, 0, 4<<20)
}

// failFirstWrite is a lower device whose first write waits for release
// and then fails with EIO without writing; later writes succeed.
type failFirstWrite struct {
	*countingDev
	once    sync.Once
	started chan struct{}
	release chan struct{}
}

func (d *failFirstWrite) WriteVAt(bufs [][]byte, off int64) (int, error) {
	first := false
	d.once.Do(func() { first = true })
	if first {
		close(d.started)
		<-d.release
		return 0, syscall.EIO
	}
	return d.countingDev.WriteVAt(bufs, off)
}

func (d *failFirstWrite) WriteAt(p []byte, off int64) (int, error) {
	return d.WriteVAt([][]byte{p}, off)
}

// TestFlushAfterOlderFailure: a write-back I/O that was in flight before a
// FLUSH and fails while the flush waits for it does not fail the flush,
// which writes those bytes again and makes them durable. Only the flush's
// own failed writes fail it (a spurious FLUSH error makes a client's
// filesystem give up).
func TestFlushAfterOlderFailure(t *testing.T) {
	const win = 64 << 10
	lower := &failFirstWrite{countingDev: newCountingDev(1 << 20), started: make(chan struct{}), release: make(chan struct{})}
	o := quietOptions(t) // MaxWritebackIO 64 KiB: a whole window is written back at once
	c := newTestCache(t, lower, o)
	model := make([]byte, 1<<20)
	mustWrite(t, c, model, fill(3, 0, win), 0)
	<-lower.started // the window's background write is in flight
	done := make(chan error, 1)
	go func() { done <- c.Flush() }()
	waitFor(t, "the writeback goroutine to take the flush", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.reqs) == 0
	})
	time.Sleep(10 * time.Millisecond) // let the pass reach the in-flight window
	close(lower.release)
	if err := <-done; err != nil {
		t.Fatalf("Flush after an older write failed and was redone: %v", err)
	}
	if !bytes.Equal(lower.image()[:win], model[:win]) {
		t.Fatal("the window is not in lower after the flush")
	}
	if s := c.Stats(); s.DirtyBytes != 0 || s.WritebackErrors == 0 {
		t.Fatalf("after the flush: %d dirty bytes, %d writeback errors; want 0 and > 0", s.DirtyBytes, s.WritebackErrors)
	}
}
