package extentcache

import (
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
