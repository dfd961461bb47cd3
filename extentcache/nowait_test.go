package extentcache

import (
	"bytes"
	"errors"
	"testing"

	"github.com/extentd/extentd/device"
)

// TestTryReadAt: memory answers dirty, zeroed and resident blocks at once;
// a block only lower holds makes TryReadAt refuse without reading lower.
func TestTryReadAt(t *testing.T) {
	const size, bs = 1 << 20, 4096
	lower := newCountingDev(size)
	copy(lower.data, fill(9, 0, size))
	c := newTestCache(t, lower, quietOptions(t))
	model := bytes.Clone(lower.data)
	mustWrite(t, c, model, fill(1, 0, 4*bs), 0)
	mustWrite(t, c, model, fill(2, 16*bs, bs), 16*bs)
	if err := c.Flush(); err != nil { // blocks 0-3 and 16 resident
		t.Fatal(err)
	}
	mustWrite(t, c, model, fill(3, 2*bs, bs), 2*bs) // dirty again
	if err := c.Trim(8*bs, 2*bs); err != nil {      // zeroed, not applied yet
		t.Fatal(err)
	}
	clear(model[8*bs : 10*bs])
	reads := lower.readCount()
	for _, tc := range []struct {
		off, n int64
		done   bool
	}{
		{0, 4 * bs, true},          // dirty and resident
		{bs + 100, 2*bs + 5, true}, // unaligned
		{8 * bs, 2 * bs, true},     // zeroed
		{16 * bs, bs, true},        // resident
		{3 * bs, 2 * bs, false},    // block 4 is only in lower
		{32 * bs, bs, false},       // only in lower
		{0, 33 * bs, false},        // more than TryReadAt takes, or lower
		{size - 1, 2, false},       // out of range: ReadAt reports it
	} {
		p := make([]byte, tc.n)
		done, err := c.TryReadAt(p, tc.off)
		if err != nil || done != tc.done {
			t.Fatalf("TryReadAt([%d,+%d)) = %v, %v; want %v, nil", tc.off, tc.n, done, err, tc.done)
		}
		if done && !bytes.Equal(p, model[tc.off:tc.off+tc.n]) {
			t.Fatalf("TryReadAt([%d,+%d)): wrong data", tc.off, tc.n)
		}
	}
	if n := lower.readCount() - reads; n != 0 {
		t.Fatalf("TryReadAt read lower %d times", n)
	}
}

// TestTryWriteAt: a write that needs nothing but memory at hand is done at
// once; one that would read a partial block from lower, wait for dirty
// memory or grow the page pool is refused and changes nothing; ENOSPC is
// the answer of a done write.
func TestTryWriteAt(t *testing.T) {
	const size, bs = 1 << 20, 4096
	lower := newCountingDev(size)
	copy(lower.data, fill(9, 0, size))
	o := quietOptions(t)
	sp := newFakeSpace(bs, 64)
	o.Space = sp
	c := newTestCache(t, lower, o)
	model := bytes.Clone(lower.data)
	c.pool.reserve(1) // the pool has pages: a first write need not grow it
	for _, tc := range []struct {
		name   string
		off, n int64
		done   bool
	}{
		{"aligned new block", 0, bs, true},
		{"partial over a dirty block", 100, 200, true},
		{"partial over a clean block", 2*bs + 1, 10, false},
		{"aligned, two blocks", 4 * bs, 2 * bs, true},
		{"too large", 0, 2 * writeChunk, false},
	} {
		st := c.Stats()
		p := fill(byte(len(tc.name)), tc.off, int(tc.n))
		done, err := c.TryWriteAt(p, tc.off)
		if err != nil || done != tc.done {
			t.Fatalf("%s: TryWriteAt = %v, %v; want %v, nil", tc.name, done, err, tc.done)
		}
		if done {
			copy(model[tc.off:], p)
		} else if st2 := c.Stats(); st2.DirtyBytes != st.DirtyBytes || st2.PageBytes != st.PageBytes {
			t.Fatalf("%s: a refused TryWriteAt changed the cache", tc.name)
		}
	}
	verify(t, c, model, 0, size)

	// Space: a done write can fail with ENOSPC, changing nothing.
	sp.mu.Lock()
	sp.cap = int64(len(sp.reserved))
	sp.mu.Unlock()
	done, err := c.TryWriteAt(fill(7, 100*bs, bs), 100*bs)
	if !done || !errors.Is(err, device.ErrNoSpace) {
		t.Fatalf("TryWriteAt with no space left = %v, %v; want true, ErrNoSpace", done, err)
	}
	verify(t, c, model, 0, size)

	// Dirty memory at its limit: refused (WriteAt would wait).
	c.mu.Lock()
	saved := c.pagesInUse
	c.pagesInUse = c.maxPages
	c.mu.Unlock()
	if done, _ := c.TryWriteAt(fill(7, 0, bs), 0); done {
		t.Fatal("TryWriteAt done while dirty memory was at its limit")
	}
	c.mu.Lock()
	c.pagesInUse = saved
	c.mu.Unlock()

	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(lower.image(), model) {
		t.Fatal("lower differs from the model after flush")
	}
}
