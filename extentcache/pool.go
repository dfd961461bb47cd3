package extentcache

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/extentd/extentd/internal/pagemem"
)

// pagePool is the memory of every page of the cache: BlockSize pages cut
// from 2 MiB chunks that internal/pagemem maps outside the Go heap (huge
// pages, populated before use). Freed pages go on a LIFO free list, so the
// page handed out next is the one most recently used, and chunks are only
// unmapped by close. The pool grows by one chunk when asked for a page it
// does not have; callers that hold Cache.mu first ask for the pages they
// will need with reserve, without the lock, so that the populate call (up to
// a few milliseconds for memory the host has not backed yet) is not made
// under it.
//
// The pool does no accounting of its own: Cache.pagesInUse bounds the pages
// that hold data. Its mutex is a leaf in the lock order.
type pagePool struct {
	bs       int64
	perChunk int           // pages per chunk
	nfree    atomic.Int64  // len(free), readable without mu
	chunks   atomic.Int64  // chunks mapped, for Stats
	mu       sync.Mutex    // guards the following
	free     []*page       // +checklocks:mu
	mapped   [][]byte      // +checklocks:mu
	closed   bool          // +checklocks:mu
	growMu   sync.Mutex    // serializes growth, so that n waiters map one chunk, not n
	growErrs atomic.Uint64 // failed maps (the pool falls back to the Go heap)
	growNs   atomic.Int64  // what growing cost per page lately (EWMA, ns), 0 before the first chunk
}

// costlyGrowNs is the growth cost per page above which fresh memory counts
// as expensive (Cache.backgroundLimitLocked): 1 ms per 2 MiB chunk. Memory
// the host backs already populates at 0.05-0.3 µs per 4 KiB; memory it must
// back first cost 6-8 µs on the bench VM, more than writing a page back.
const costlyGrowNs = 2000

// keptGrowLimitDefault is how many bytes of kept (written back, unsynced)
// pages the pool may grow for before a writer drops them instead
// (Cache.pagesAtHandLocked). Dropping makes a later failed sync permanent
// (docs/durability.md), so a little memory is worth spending on them; a
// stream of whole windows reaches this within milliseconds and then recycles
// its pages.
const keptGrowLimitDefault = 32 << 20

func newPagePool(bs int64) *pagePool {
	return &pagePool{bs: bs, perChunk: int(pagemem.ChunkSize / bs)}
}

// get returns a free page, growing the pool by a chunk when none is free.
// Its contents are unspecified.
func (p *pagePool) get() *page {
	for {
		p.mu.Lock()
		if n := len(p.free); n > 0 {
			pg := p.free[n-1]
			p.free[n-1] = nil
			p.free = p.free[:n-1]
			p.nfree.Add(-1)
			p.mu.Unlock()
			return pg
		}
		p.mu.Unlock()
		p.grow(1)
	}
}

// put returns pg to the pool.
func (p *pagePool) put(pg *page) {
	p.mu.Lock()
	p.free = append(p.free, pg)
	p.nfree.Add(1)
	p.mu.Unlock()
}

// available returns the number of free pages (a snapshot).
func (p *pagePool) available() int { return int(p.nfree.Load()) }

// reserve grows the pool until at least n pages are free. It is called
// without Cache.mu, ahead of taking pages under it; other callers may take
// the pages meanwhile, in which case get grows again.
func (p *pagePool) reserve(n int) {
	for p.available() < n {
		p.grow(n)
	}
}

// grow maps one more chunk and frees its pages, unless want pages are free
// by the time it runs (another caller grew the pool meanwhile). When the map fails (the
// address space or memory is exhausted), the chunk comes from the Go heap
// instead, so that a write never fails for want of a huge page.
func (p *pagePool) grow(want int) {
	p.growMu.Lock()
	defer p.growMu.Unlock()
	if p.available() >= want {
		return
	}
	t0 := time.Now()
	mem, err := pagemem.Map(pagemem.ChunkSize)
	if perPage := int64(time.Since(t0)) / int64(p.perChunk); err == nil {
		old := p.growNs.Load()
		if old == 0 {
			old = perPage
		}
		p.growNs.Store(old + (perPage-old)/4)
	}
	if err != nil {
		p.growErrs.Add(1)
		mem = make([]byte, pagemem.ChunkSize)
	}
	hdrs := make([]page, p.perChunk)
	p.mu.Lock()
	defer p.mu.Unlock()
	if err == nil {
		p.mapped = append(p.mapped, mem)
	}
	p.chunks.Add(1)
	// Push in reverse so that the pages go out in address order: a
	// sequential writer then gets contiguous pages, and writeback merges
	// their iovecs.
	for i := p.perChunk - 1; i >= 0; i-- {
		pg := &hdrs[i]
		off := int64(i) * p.bs
		pg.buf = mem[off : off+p.bs] // cap to the chunk's end: appendMerged joins neighbours
		p.free = append(p.free, pg)
	}
	p.nfree.Add(int64(p.perChunk))
}

// costly reports whether growing the pool has lately cost more per page
// than costlyGrowNs.
func (p *pagePool) costly() bool { return p.growNs.Load() > costlyGrowNs }

// mappedBytes returns the memory the pool holds (a snapshot).
func (p *pagePool) mappedBytes() int64 { return p.chunks.Load() * pagemem.ChunkSize }

// close unmaps every chunk. No page may be used afterwards.
func (p *pagePool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.closed = true
	for _, m := range p.mapped {
		_ = pagemem.Unmap(m)
	}
	p.mapped, p.free = nil, nil
	p.nfree.Store(0)
}

// costlyBackground is the background writeback threshold while fresh
// memory is expensive and DirtyBackground was left to its default.
const costlyBackground = 256 << 20

// backgroundLimitLocked returns the dirty bytes above which background
// writeback runs: DirtyBackground, or at most costlyBackground while growing
// the page pool costs more than writing pages back (pagePool.costly), unless
// DirtyBackground was set explicitly. On the bench VM, where fresh memory
// cost 6-8 µs per 4 KiB page, 4 KiB random writes (W1) ran at 35-38k IOPS
// with the memory-sized default (the pool grew by every page written) and at
// 48-52k with background writeback from 256 MiB (pages recycled). Where
// memory is cheap the default stands: absorbing writes in memory is then
// cheaper than writing scattered blocks back. c.mu must be held.
func (c *Cache) backgroundLimitLocked() int64 {
	if c.autoBackground && c.pool.costly() {
		return min(c.opts.DirtyBackground, costlyBackground)
	}
	return c.opts.DirtyBackground
}
