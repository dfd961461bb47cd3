package extentcache

import (
	"bytes"
	"testing"
)

// TestWriteThrough: with WriteThroughMin set, an aligned large write over
// bytes the cache holds nothing for reaches lower before the call returns
// and leaves nothing dirty; a write that overlaps cached state, or is not
// block aligned, or is smaller, is cached as usual; a FLUSH after a
// write-through syncs lower even though nothing was dirty.
func TestWriteThrough(t *testing.T) {
	const size, bs = 1 << 20, 4096
	lower := newCountingDev(size)
	o := quietOptions(t)
	o.WriteThroughMin = 64 << 10
	c := newTestCache(t, lower, o)
	model := make([]byte, size)
	if err := c.Flush(); err != nil { // lower is clean now: only a write makes a Flush sync it
		t.Fatal(err)
	}
	flushes := lower.flushCount()

	p := fill(1, 0, 128<<10)
	mustWrite(t, c, model, p, 0)
	if st := c.Stats(); st.WriteThroughs != 1 || st.WriteThroughB != 128<<10 || st.DirtyBytes != 0 {
		t.Fatalf("aligned 128 KiB over an empty cache: %d write-throughs of %d bytes, %d dirty; want 1, 131072, 0",
			st.WriteThroughs, st.WriteThroughB, st.DirtyBytes)
	}
	if img := lower.image(); !bytes.Equal(img[:128<<10], p) {
		t.Fatal("lower does not hold the write-through's data when WriteAt returns")
	}
	verify(t, c, model, 0, size)
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	if lower.flushCount() != flushes+1 {
		t.Fatal("Flush after a write-through did not flush lower")
	}

	// Cached state in the range: one dirty block in the middle.
	mustWrite(t, c, model, fill(2, 300<<10, bs), 300<<10)
	mustWrite(t, c, model, fill(3, 256<<10, 128<<10), 256<<10)
	// Not block aligned, and too small.
	mustWrite(t, c, model, fill(4, 512<<10+1, 128<<10), 512<<10+1)
	mustWrite(t, c, model, fill(5, 768<<10, 32<<10), 768<<10)
	if st := c.Stats(); st.WriteThroughs != 1 {
		t.Fatalf("%d write-throughs; the overlapping, unaligned and small writes must be cached", st.WriteThroughs)
	}
	verify(t, c, model, 0, size)
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	if img := lower.image(); !bytes.Equal(img, model) {
		t.Fatalf("lower differs from the model at byte %d after Flush", firstDiff(img, model))
	}

	// Over resident pages (clean copies left by writeback): they are
	// dropped, so reads see the write-through's data.
	mustWrite(t, c, model, fill(6, 768<<10, 128<<10), 768<<10) // dropped or written through
	mustWrite(t, c, model, fill(7, 896<<10, bs), 896<<10)
	if err := c.Flush(); err != nil { // 896K's page stays resident
		t.Fatal(err)
	}
	before := c.Stats().WriteThroughs
	mustWrite(t, c, model, fill(8, 896<<10, 128<<10), 896<<10)
	if c.Stats().WriteThroughs != before+1 {
		t.Fatal("a write over resident pages only was not written through")
	}
	verify(t, c, model, 0, size)
	if err := c.Check(); err != nil {
		t.Fatal(err)
	}
}

// TestWriteThroughFillRace: a read that copied old data from lower before
// a write-through, and fills the clean cache after it, must never be served
// afterwards (the write-through bumps generations as a write does).
func TestWriteThroughFillRace(t *testing.T) {
	lower := newCountingDev(1 << 20)
	o := quietOptions(t)
	o.WriteThroughMin = 64 << 10
	c := newTestCache(t, lower, o)
	checkStaleFillNeverServed(t, c, lower, func() []byte {
		neu := fill(2, 0, 64<<10)
		mustWrite(t, c, nil, neu, 0)
		if c.Stats().WriteThroughs != 1 {
			t.Fatal("the write was not written through: test does not exercise the race")
		}
		return neu
	})
}

// TestWriteThroughThenSyncFails: a write-through keeps no copy, so a lower
// sync that fails after it may have lost its data: that FLUSH and every
// later one fail (as after dropped kept pages), never a false success.
func TestWriteThroughThenSyncFails(t *testing.T) {
	c, g := newSyncFailCache(t, 64<<10)
	mustWrite(t, c, nil, fill(1, 0, 256<<10), 0)
	if c.Stats().WriteThroughs != 1 {
		t.Fatal("not written through")
	}
	checkSyncFailurePermanent(t, c, g)
}

// TestWriteThroughSynced: the same failing sync after a successful one that
// covered the write-through is repaired as usual: nothing was lost.
func TestWriteThroughSynced(t *testing.T) {
	c, g := newSyncFailCache(t, 64<<10)
	model := make([]byte, g.Size())
	mustWrite(t, c, model, fill(1, 0, 256<<10), 0)
	if c.Stats().WriteThroughs != 1 {
		t.Fatal("not written through")
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, c, model, fill(2, 1<<20, 4096), 1<<20) // cached, kept after writeback
	checkSyncFailureRepaired(t, c, g, model)
}
