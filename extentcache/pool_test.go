package extentcache

import (
	"bytes"
	"math/rand/v2"
	"testing"
	"time"
	"unsafe"

	"github.com/extentd/extentd/device/memdev"
	"github.com/extentd/extentd/internal/pagemem"
)

// TestPoolOrder: a new chunk hands its pages out in address order (so a
// sequential writer's pages are contiguous and writeback merges their
// iovecs), and a freed page is the next one handed out (warm memory first).
func TestPoolOrder(t *testing.T) {
	const bs = 4096
	p := newPagePool(bs)
	defer p.close()
	a, b := p.get(), p.get()
	if &a.buf[:bs+1][bs] != &b.buf[0] {
		t.Fatalf("second page at %p, want right after the first at %p", &b.buf[0], &a.buf[0])
	}
	if got := appendMerged(appendMerged(nil, a.buf), b.buf); len(got) != 1 || len(got[0]) != 2*bs {
		t.Fatalf("two adjacent pages made %d iovecs", len(got))
	}
	if addr := uintptr(unsafe.Pointer(&a.buf[0])); addr%pagemem.ChunkSize != 0 {
		t.Fatalf("first page at %#x, not at the start of a chunk", addr)
	}
	p.put(a)
	if c := p.get(); c != a {
		t.Fatalf("after put, get returned %p, want the page just freed %p", c, a)
	}
	if got, want := p.mappedBytes(), int64(pagemem.ChunkSize); got != want {
		t.Fatalf("mapped %d bytes, want one chunk (%d)", got, want)
	}
}

// TestPoolReserve: reserve grows by whole chunks until enough pages are
// free, and not beyond.
func TestPoolReserve(t *testing.T) {
	const bs = 4096
	p := newPagePool(bs)
	defer p.close()
	per := pagemem.ChunkSize / bs
	p.reserve(per + 1)
	if got := p.available(); got != 2*per {
		t.Fatalf("%d pages free after reserve(%d), want %d", got, per+1, 2*per)
	}
	p.reserve(per)
	if got := p.mappedBytes(); got != 2*pagemem.ChunkSize {
		t.Fatalf("reserve with enough free pages grew the pool to %d bytes", got)
	}
}

// TestKeptPagesNotWorthMemory: once every page of the pool holds written
// back, unsynced data, a write of new blocks drops those kept pages and
// reuses them instead of growing the pool; nothing acknowledged is lost.
func TestKeptPagesNotWorthMemory(t *testing.T) {
	const size, bs = 16 << 20, 4096
	lower := memdev.New(size, memdev.Options{Crashable: true})
	o := testOptions(t)
	o.MaxDirty, o.DirtyBackground = 64<<20, 64<<20 // no pressure, no background writeback
	o.WritebackAge = time.Hour
	c := newTestCache(t, lower, o)
	c.keptGrowLimit = 1 << 20
	model := make([]byte, size)
	// One chunk's worth of whole windows: each is written back at once and
	// kept until a lower sync.
	chunk := int64(pagemem.ChunkSize)
	for off := int64(0); off < chunk; off += o.MaxWritebackIO {
		mustWrite(t, c, model, fill(1, off, int(o.MaxWritebackIO)), off)
	}
	waitFor(t, "every window written back", func() bool {
		st := c.Stats()
		return st.DirtyBytes == 0 && st.WritebackBytes == 0 && st.UnsyncedBytes == chunk
	})
	if st := c.Stats(); st.MemoryBytes != chunk {
		t.Fatalf("%d bytes of page memory for %d bytes of pages", st.MemoryBytes, chunk)
	}
	r := rand.New(rand.NewPCG(testSeed(t), 3))
	for range 8 {
		off := chunk + r.Int64N((size-chunk)/bs)*bs
		mustWrite(t, c, model, fill(2, off, bs), off)
	}
	st := c.Stats()
	if st.MemoryBytes != chunk || st.KeptDropped != uint64(chunk) {
		t.Fatalf("after new writes: %d bytes of page memory, %d kept bytes dropped; want %d and %d",
			st.MemoryBytes, st.KeptDropped, chunk, chunk)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	verify(t, lower.Crash(), model, 0, size)
}

// TestResidentPages: after a flush the written pages stay resident: reads
// are served without reading lower, a write reuses its block's page, a trim
// drops it, and everything reads back as the model says.
func TestResidentPages(t *testing.T) {
	const size, bs = 1 << 20, 4096
	lower, c, model := newQuietCache(t, size)
	mustWrite(t, c, model, fill(1, 0, 64*bs), 0)
	mustWrite(t, c, model, fill(2, 100*bs, bs), 100*bs)
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	if st := c.Stats(); st.ResidentBytes != 65*bs || st.PageBytes != 0 || st.DirtyBytes != 0 {
		t.Fatalf("after flush: resident %d, page %d, dirty %d bytes; want %d, 0, 0", st.ResidentBytes, st.PageBytes, st.DirtyBytes, 65*bs)
	}
	reads := lower.readCount()
	verify(t, c, model, 0, 64*bs)
	verify(t, c, model, 100*bs, bs)
	mustWrite(t, c, model, fill(3, 10*bs+7, 100), 10*bs+7) // partial: reuses the resident page, no read
	if n := lower.readCount() - reads; n != 0 {
		t.Fatalf("reading and partly rewriting resident blocks read lower %d times", n)
	}
	if err := c.Trim(20*bs, 4*bs); err != nil {
		t.Fatal(err)
	}
	clear(model[20*bs : 24*bs])
	if st := c.Stats(); st.ResidentBytes != 60*bs || st.PageBytes != bs {
		t.Fatalf("after a write and a trim: resident %d, page %d bytes; want %d, %d", st.ResidentBytes, st.PageBytes, 60*bs, bs)
	}
	verify(t, c, model, 0, size)
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	verify(t, c, model, 0, size)
	if !bytes.Equal(lower.image(), model) {
		t.Fatal("lower differs from the model after flush")
	}
}

// TestResidentEvicted: resident pages give their memory to new writes
// before the pool grows, oldest first, and a page read since it became
// resident is passed over once.
func TestResidentEvicted(t *testing.T) {
	const size, bs = 16 << 20, 4096
	lower := memdev.New(size, memdev.Options{Crashable: true})
	o := testOptions(t)
	o.MaxDirty, o.DirtyBackground = 64<<20, 64<<20
	o.WritebackAge = time.Hour
	c := newTestCache(t, lower, o)
	model := make([]byte, size)
	chunk := int64(pagemem.ChunkSize)
	mustWrite(t, c, model, fill(1, 0, int(chunk)), 0)
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	if st := c.Stats(); st.ResidentBytes != chunk || st.MemoryBytes != chunk {
		t.Fatalf("resident %d bytes in %d bytes of memory, want one chunk of each", st.ResidentBytes, st.MemoryBytes)
	}
	verify(t, c, model, 0, bs) // block 0 is referenced: it survives the first pass
	mustWrite(t, c, model, fill(2, chunk, bs), chunk)
	st := c.Stats()
	if st.MemoryBytes != chunk || st.Evicted != minEvict*bs {
		t.Fatalf("after a new write: %d bytes of memory, %d evicted; want %d and %d", st.MemoryBytes, st.Evicted, chunk, minEvict*bs)
	}
	c.mu.Lock()
	first, second := c.index.get(0), c.index.get(1)
	c.mu.Unlock()
	if first == nil || second != nil {
		t.Fatalf("block 0 resident %v, block 1 resident %v; want the read block kept and the next evicted", first != nil, second != nil)
	}
	verify(t, c, model, 0, size)
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	verify(t, lower.Crash(), model, 0, size)
}

// TestRecycledPagesStayContiguous: pages freed from dropped kept windows go
// back out in address order, so a window written into recycled pages is
// still one or two iovecs (not one per page: that would split an 8 MiB
// window at IOV_MAX).
func TestRecycledPagesStayContiguous(t *testing.T) {
	const size = 16 << 20
	lower := newCountingDev(size)
	o := quietOptions(t) // 64 KiB windows, written back whole at once
	o.MaxDirty, o.DirtyBackground = 64<<20, 64<<20
	c := newTestCache(t, lower, o)
	c.keptGrowLimit = 256 << 10
	win := o.MaxWritebackIO
	for off := int64(0); off < size; off += win {
		mustWrite(t, c, nil, fill(byte(off/win), off, int(win)), off)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	st := c.Stats()
	if st.KeptDropped == 0 || st.MemoryBytes > 4*int64(pagemem.ChunkSize) {
		t.Fatalf("kept bytes dropped %d, page memory %d: the test wants pages recycled", st.KeptDropped, st.MemoryBytes)
	}
	lower.mu.Lock()
	defer lower.mu.Unlock()
	for i, n := range lower.bufs {
		if w := lower.writes[i]; w.n == win && n > 2 {
			t.Fatalf("window %v written with %d iovecs, want 1 or 2", w, n)
		}
	}
}

// TestCostlyMemoryLowersBackground: while growing the pool costs more than
// writing back, background writeback starts at 256 MiB of dirty data
// instead of the memory-sized default, unless DirtyBackground was set.
func TestCostlyMemoryLowersBackground(t *testing.T) {
	for _, explicit := range []bool{false, true} {
		o := testOptions(t)
		o.MaxDirty, o.DirtyBackground = 4<<30, 0
		if explicit {
			o.DirtyBackground = 2 << 30
		}
		c := newTestCache(t, memdev.New(1<<20, memdev.Options{}), o)
		c.mu.Lock()
		cheap := c.backgroundLimitLocked()
		c.pool.growNs.Store(costlyGrowNs + 1)
		costly := c.backgroundLimitLocked()
		c.mu.Unlock()
		if cheap != 2<<30 {
			t.Fatalf("explicit=%v: background limit %d with cheap memory, want %d", explicit, cheap, 2<<30)
		}
		want := int64(costlyBackground)
		if explicit {
			want = 2 << 30
		}
		if costly != want {
			t.Fatalf("explicit=%v: background limit %d with costly memory, want %d", explicit, costly, want)
		}
	}
}
