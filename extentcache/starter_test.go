package extentcache

import (
	"slices"
	"sync"
	"testing"
	"time"
)

// startDev is a countingDev that records StartWriteback calls; while block
// is set, StartWriteback waits until it is closed.
type startDev struct {
	*countingDev
	smu    sync.Mutex
	starts []ioRange
	block  chan struct{}
}

func (d *startDev) StartWriteback(off, n int64) error {
	d.smu.Lock()
	d.starts = append(d.starts, ioRange{off, n})
	b := d.block
	d.smu.Unlock()
	if b != nil {
		<-b
	}
	return nil
}

func (d *startDev) startCalls() []ioRange {
	d.smu.Lock()
	defer d.smu.Unlock()
	return slices.Clone(d.starts)
}

// TestStartWritebackOffWorker: host writeback starts after background
// clusters run on the starter goroutine, so a slow StartWriteback holds no
// writeback worker (with one worker, a synchronous call would stop all
// writeback), and queued starts of adjacent clusters merge into one call.
// Close waits for the starter, so no call reaches the lower device after
// Close returns.
func TestStartWritebackOffWorker(t *testing.T) {
	const mib = 1 << 20
	lower := &startDev{countingDev: newCountingDev(8 * mib), block: make(chan struct{})}
	o := testOptions(t)
	o.WritebackInFlight = 1
	o.MaxWritebackIO = mib // clusters of minStartWriteback
	o.MaxDirty = 8 * mib
	o.DirtyBackground = 0 // every dirty byte is background work
	o.FillGap = -1
	c := newTestCache(t, lower, o)
	var release sync.Once
	unblock := func() { release.Do(func() { close(lower.block) }) }
	t.Cleanup(unblock) // registered after the cache's: runs first
	model := make([]byte, 8*mib)
	wrote := make(chan error, 1)
	go func() {
		for i := int64(0); i < 4; i++ {
			p := fill(byte(i+1), i*mib, mib)
			if _, err := c.WriteAt(p, i*mib); err != nil {
				wrote <- err
				return
			}
		}
		wrote <- nil
	}()
	for i := int64(0); i < 4; i++ {
		copy(model[i*mib:], fill(byte(i+1), i*mib, mib))
	}
	// All 4 MiB reaches lower while the first start is still blocked, and
	// the other three starts wait in the queue.
	waitFor(t, "4 MiB written back while a start blocks", func() bool {
		var n int64
		lower.mu.Lock()
		for _, w := range lower.writes {
			n += w.n
		}
		lower.mu.Unlock()
		return n == 4*mib && len(c.startq) == 3
	})
	if got := lower.startCalls(); len(got) != 1 || got[0] != (ioRange{0, mib}) {
		t.Fatalf("starts while blocked = %v, want [[0,+%d)]", got, mib)
	}
	if err := <-wrote; err != nil {
		t.Fatalf("WriteAt: %v", err)
	}
	unblock()
	want := []ioRange{{0, mib}, {mib, 3 * mib}}
	waitFor(t, "the queued starts merged into one call", func() bool {
		return slices.Equal(lower.startCalls(), want)
	})
	if st := c.Stats(); st.HostStarts != 2 || st.StartsDropped != 0 {
		t.Fatalf("HostStarts %d StartsDropped %d, want 2 and 0", st.HostStarts, st.StartsDropped)
	}
	verify(t, c, model, 0, 8*mib)

	// Close: writes queued at the end are written back, and every start
	// they queue is issued before Close returns.
	mustWrite(t, c, model, fill(9, 4*mib, 2*mib), 4*mib)
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	n := len(lower.startCalls())
	time.Sleep(20 * time.Millisecond)
	if m := len(lower.startCalls()); m != n {
		t.Fatalf("%d StartWriteback calls after Close returned", m-n)
	}
	if img := lower.image(); firstDiff(img, model) >= 0 {
		t.Fatalf("image differs from the model at byte %d after Close", firstDiff(img, model))
	}
}
