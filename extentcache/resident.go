package extentcache

// Resident pages: after a lower sync has made a written-back page durable,
// the page stays in the index as a clean copy of its block (page.clean, and
// no state bits in the tree: the tree keeps only the ranges writeback and
// flushes must look at) instead of going back to the pool. Reads are then served from it
// like dirty data, a write reuses it in place, and a trim drops it. It costs
// no memory the cache would not hold anyway: a writer that finds the pool
// short evicts resident pages before it drops kept pages or grows the pool,
// and a resident page is never made for data that did not pass through a
// page. The kernel's page cache keeps written pages the same way.

// residentQueue lists the blocks whose page became resident, oldest first, for
// eviction. Entries go stale when their block is written or trimmed (its
// page is no longer clean, or no longer in the index); eviction skips them,
// and Cache.compactResidentLocked drops them when they outnumber the live
// ones. Guarded by Cache.mu.
type residentQueue struct {
	blocks []int64
	head   int
	n      int // resident pages (live entries)
}

// push appends block b.
func (q *residentQueue) push(b int64) { q.blocks = append(q.blocks, b) }

// pop removes and returns the oldest entry; ok is false when empty.
func (q *residentQueue) pop() (b int64, ok bool) {
	if q.head == len(q.blocks) {
		return 0, false
	}
	b = q.blocks[q.head]
	q.head++
	if q.head == len(q.blocks) {
		q.blocks, q.head = q.blocks[:0], 0
	}
	return b, true
}

// entries returns the number of entries, stale ones included.
func (q *residentQueue) entries() int { return len(q.blocks) - q.head }

// minEvict is the fewest resident pages a short writer evicts at once, so
// that the queue walk and the tree update are amortized over many writes.
const minEvict = 64

// makeResidentLocked turns the kept pages of the Unsynced blocks of [s, e)
// into resident pages: they leave pagesInUse. The caller clears Unsynced.
// c.mu must be held.
func (c *Cache) makeResidentLocked(s, e int64) {
	first, last := c.blockRange(s, e)
	for b := first; b < last; b++ {
		pg := c.index.get(b)
		pg.unsynced, pg.clean, pg.ref = false, true, false
		c.pagesInUse--
		c.resident.n++
		c.resident.push(b)
	}
	if c.resident.entries() > 2*c.resident.n+1024 {
		c.compactResidentLocked()
	}
}

// reuseResidentLocked makes resident page pg hold new data: it counts in
// pagesInUse again. c.mu must be held.
func (c *Cache) reuseResidentLocked(pg *page) {
	pg.clean = false
	c.resident.n--
	c.pagesInUse++
}

// freeResidentLocked returns resident page pg, already removed from the
// index, to the pool. c.mu must be held.
func (c *Cache) freeResidentLocked(pg *page) {
	pg.clean, pg.ref = false, false
	c.resident.n--
	c.pool.put(pg)
}

// evictResidentLocked frees up to n resident pages, oldest first; a page
// read since eviction last passed it gets a second chance (CLOCK). It
// returns the number freed. c.mu must be held.
func (c *Cache) evictResidentLocked(n int) int {
	freed := 0
	for freed < n && c.resident.n > 0 {
		b, ok := c.resident.pop()
		if !ok {
			break
		}
		pg := c.index.get(b)
		if pg == nil || !pg.clean {
			continue // stale: written or trimmed since
		}
		if pg.ref {
			pg.ref = false
			c.resident.push(b)
			continue
		}
		c.index.del(b)
		c.freeResidentLocked(pg)
		freed++
	}
	c.st.evicted.Add(uint64(freed) << c.shift)
	return freed
}

// compactResidentLocked drops the stale entries of the resident queue
// (and repeated ones: a block made resident, written and made resident
// again has two). c.mu must be held.
func (c *Cache) compactResidentLocked() {
	q := &c.resident
	live := q.blocks[:0]
	for _, b := range q.blocks[q.head:] {
		if pg := c.index.get(b); pg != nil && pg.clean && !pg.mark {
			pg.mark = true // listed once already
			live = append(live, b)
		}
	}
	for _, b := range live {
		c.index.get(b).mark = false
	}
	q.blocks, q.head = live, 0
}
