package extentcache

import (
	"bytes"
	"testing"
)

// TestCleanCacheFillRace: a read misses the clean cache and reads a block
// from lower; before it fills the cache, a write to that block is made and
// written back. The fill carries the generation seen before the write, so
// later reads must not be served the stale block.
func TestCleanCacheFillRace(t *testing.T) {
	const bs = 4096
	lower := newCountingDev(1 << 20)
	c := newTestCache(t, lower, quietOptions(t))
	neu := checkStaleFillNeverServed(t, c, lower, func() []byte {
		neu := fill(2, 0, bs)
		mustWrite(t, c, nil, neu, 0)
		if err := c.Flush(); err != nil { // the block is clean again, lower has neu
			t.Fatal(err)
		}
		evictResident(c) // reads must go through the clean cache, not the page the write left
		return neu
	})
	// The cache still works: after a read fills it with the current
	// generation, reads hit.
	st0 := c.Stats()
	buf := make([]byte, bs)
	if _, err := c.ReadAt(buf, 0); err != nil || !bytes.Equal(buf, neu) {
		t.Fatalf("read: %v", err)
	}
	if st := c.Stats(); st.Hits <= st0.Hits {
		t.Fatalf("no clean-cache hit after a fresh fill (hits %d -> %d)", st0.Hits, st.Hits)
	}
}

// checkStaleFillNeverServed makes a read of block 0 copy the old data from
// lower and wait, runs change (which makes block 0 read as what it
// returns, from lower or the clean cache), lets the read fill the clean
// cache with the old data, and checks that later reads return the new
// data. It returns that data.
func checkStaleFillNeverServed(t *testing.T, c *Cache, lower *countingDev, change func() []byte) []byte {
	t.Helper()
	const bs = 4096
	if c.clean == nil {
		t.Fatal("clean cache disabled in test options")
	}
	old := fill(1, 0, bs)
	copy(lower.data, old)
	got := make([]byte, bs)
	if _, err := c.ReadAt(got, 0); err != nil { // first miss: not admitted yet
		t.Fatal(err)
	}
	g := lower.gateNextRead()
	done := make(chan error, 1)
	go func() {
		_, err := c.ReadAt(got, 0)
		done <- err
	}()
	<-g // the reader has copied the old data from lower and waits
	neu := change()[:bs]
	g <- struct{}{} // let the reader finish and fill the cache with old data
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, old) && !bytes.Equal(got, neu) {
		t.Fatal("concurrent read returned neither the old nor the new block")
	}
	c.clean.Wait()
	if v, ok := c.clean.Get(0); !ok || !bytes.Equal(v[8:], old) {
		t.Fatal("the racing read did not fill the clean cache with the old block: test does not exercise the race")
	}
	for i := 0; i < 3; i++ {
		buf := make([]byte, bs)
		if _, err := c.ReadAt(buf, 0); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf, neu) {
			t.Fatalf("read %d after the race served the stale fill", i)
		}
		c.clean.Wait()
	}
	return neu
}

// TestUnalignedWrites writes 1, 511, 4097... bytes at odd offsets over
// clean data in lower, dirty data and zeroed data, and compares with a
// model; uncached partial blocks are read from lower, one block each.
func TestUnalignedWrites(t *testing.T) {
	const bs, size = 4096, 1 << 20
	lower := newCountingDev(size)
	copy(lower.data, fill(5, 0, size))
	c := newTestCache(t, lower, quietOptions(t))
	model := bytes.Clone(lower.data)
	if err := c.Trim(64*bs, 16*bs); err != nil {
		t.Fatal(err)
	}
	clear(model[64*bs : 80*bs])
	for i, w := range []struct{ off, n int64 }{
		{1, 1}, {bs - 1, 2}, {3*bs + 5, 511}, {10*bs + 17, 4097}, {20*bs - 3, 2*bs + 6},
		{64*bs + 100, 1}, {79*bs + 4000, 200}, {200*bs + 1, bs}, {size - 1, 1}, {size - bs - 3, bs + 3},
	} {
		reads := lower.readCount()
		mustWrite(t, c, model, fill(byte(10+i), w.off, int(w.n)), w.off)
		if n := lower.readCount() - reads; n > 2 {
			t.Fatalf("write [%d,+%d) read lower %d times, want at most 2 (one per partial block)", w.off, w.n, n)
		}
		verify(t, c, model, max(0, w.off-bs), min(size, w.off+w.n+bs)-max(0, w.off-bs))
	}
	verify(t, c, model, 0, size)
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(lower.image(), model) {
		t.Fatal("lower differs from model after flush")
	}
}

// TestCleanGate: a clean cache that does not hit is bypassed, except for a
// sample of reads, and comes back when a working set fits again.
func TestCleanGate(t *testing.T) {
	var g cleanGate
	for range gateWindow / 8 {
		if !g.use() {
			t.Fatal("bypassed before any window ended")
		}
		g.record(8, 0)
	}
	if !g.bypass.Load() {
		t.Fatal("not bypassed after windows without hits")
	}
	used := 0
	for range 32 * gateSample {
		if g.use() {
			used++
		}
	}
	if used != 32 {
		t.Fatalf("%d of %d reads used the cache while bypassed, want %d", used, 32*gateSample, 32)
	}
	g.record(gateWindow, gateWindow/2) // the sampled reads hit
	if g.bypass.Load() {
		t.Fatal("still bypassed after a window of hits")
	}
}

// TestCleanGateCache: random reads over a working set far larger than the
// clean cache stop consulting it; reads of a set that fits make it hit
// again.
func TestCleanGateCache(t *testing.T) {
	const size, bs = 64 << 20, 4096
	lower := newCountingDev(size)
	o := quietOptions(t)
	o.CacheSize = 1 << 20
	c := newTestCache(t, lower, o)
	p := make([]byte, bs)
	r := uint64(1)
	for range 4 * gateWindow {
		r = r*6364136223846793005 + 1442695040888963407
		if _, err := c.ReadAt(p, int64(r>>40)%(size/bs)*bs); err != nil {
			t.Fatal(err)
		}
	}
	if st := c.Stats(); st.CleanSkipped == 0 {
		t.Fatalf("random reads over 64 times the cache never skipped it (hits %d misses %d)", st.Hits, st.Misses)
	}
	for i := range 64 * gateWindow {
		if _, err := c.ReadAt(p, int64(i%64)*bs); err != nil {
			t.Fatal(err)
		}
		if i%1024 == 0 {
			c.clean.Wait()
		}
	}
	st0 := c.Stats()
	for i := range 1024 {
		if _, err := c.ReadAt(p, int64(i%64)*bs); err != nil {
			t.Fatal(err)
		}
	}
	if st := c.Stats(); st.Hits-st0.Hits < 900 {
		t.Fatalf("%d hits in 1024 reads of 64 cached blocks, want nearly all (gate bypassed: %v)", st.Hits-st0.Hits, c.gate.bypass.Load())
	}
}
