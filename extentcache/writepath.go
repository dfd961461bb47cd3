package extentcache

import (
	"fmt"
	"time"

	"github.com/extentd/extentd/device"
	"github.com/extentd/extentd/statetree"
)

// WriteAt copies p into the cache at off and returns once the data is
// readable (not yet durable: see Flush). Space for the bytes that are neither
// allocated nor reserved is reserved first; if it does not fit, WriteAt
// returns an error wrapping device.ErrNoSpace and changes nothing.
//
// A block that p covers only partly and that is neither dirty nor zeroed is
// first read from the clean cache or the lower device (one block only), so a
// sub-block write never exposes stale or unwritten bytes.
func (c *Cache) WriteAt(p []byte, off int64) (int, error) {
	n := int64(len(p))
	if err := device.CheckRange("extentcache: write", off, n, c.size); err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, nil
	}
	if n <= writeChunk && (c.opts.WriteThroughMin <= 0 || n < c.opts.WriteThroughMin) {
		if err := c.write(p, off); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	// A large write is applied in block-aligned chunks, each in its own
	// critical section, so that c.mu is never held for a long copy. Its
	// space is reserved first, all or nothing, so ENOSPC still changes
	// nothing (only a trim of the same range racing with this write could
	// release part of it in between; that write then fails part-way, which
	// the device contract allows).
	if sp := c.opts.Space; sp != nil {
		first, last := c.blockRange(off, off+n)
		start, stop := first<<c.shift, c.blockEnd(last-1)
		c.mu.Lock()
		closed := c.closed
		var err error
		if !closed {
			_, err = sp.Reserve(start, stop-start)
		}
		c.mu.Unlock()
		if closed {
			return 0, errClosed("write")
		}
		if err != nil {
			return 0, fmt.Errorf("extentcache: write [%d,+%d): %w", off, n, err)
		}
	}
	if done, err := c.tryWriteThrough(p, off); done {
		if err != nil {
			return 0, err
		}
		return len(p), nil
	}
	for i := int64(0); i < n; {
		j := min(n, (off+i+writeChunk)&^(c.bs-1)-off)
		if err := c.write(p[i:j], off+i); err != nil {
			return 0, err
		}
		i = j
	}
	return len(p), nil
}

// pushAgeLocked adds an age mark. Marks outlive their data when pressure
// or a flush writes it back before it expires; so that they do not pile up
// for WritebackAge (900k marks for 30 s of 4K random writes), the queue is
// compacted to the marks of blocks still dirty or zeroed whenever it holds
// twice as many marks as MaxDirty has pages (amortized: one index lookup
// per push, and a tree lookup only while zeroed ranges exist). c.mu must be
// held.
func (c *Cache) pushAgeLocked(off, t int64) {
	if c.ages.len() >= 2*c.maxPages+1024 {
		zeroed := c.tree.Bytes(statetree.Zeroed) > 0
		c.ages.compact(func(off int64) bool {
			if pg := c.index.get(off >> c.shift); pg != nil && !pg.clean {
				return true // dirty, under writeback or kept: look again later
			}
			if !zeroed {
				return false
			}
			r, ok := c.tree.Get(off)
			return ok && r.Bits&statetree.Zeroed != 0
		})
	}
	c.ages.push(off, t)
}

// noteFullWindowLocked queues for writeback each aligned MaxWritebackIO
// window that the write of [start, stop) touches, if all of it is dirty and
// none of it in flight, and reports whether it queued any. Such a window is
// as large a write as writeback ever issues: waiting cannot improve it, and
// writing it at once keeps a sequential stream's pages recycling (warm
// memory) instead of filling the dirty budget. Every write checks, not only
// the one that ends at the window's end: with several requests in flight
// the last byte of a window is often written before its middle. c.mu must
// be held.
func (c *Cache) noteFullWindowLocked(start, stop int64) bool {
	win := c.opts.MaxWritebackIO
	queued := false
	for ws := start / win * win; ws < stop; ws += win {
		we := min(ws+win, c.size)
		if (len(c.full) > 0 && c.full[len(c.full)-1] == ws) ||
			!c.tree.TestAll(ws, we, statetree.Dirty) || c.tree.TestAny(ws, we, statetree.Writeback|statetree.Locked) {
			continue // not whole yet, queued already, or in flight
		}
		c.full = append(c.full, ws)
		queued = true
	}
	return queued
}

// writeChunk is the most bytes one critical section of WriteAt copies.
const writeChunk = 128 << 10

// write applies p at off: it fills partial blocks, waits for memory,
// reserves space and copies, all or nothing.
func (c *Cache) write(p []byte, off int64) error {
	end := off + int64(len(p))
	first, last := c.blockRange(off, end)
	headPartial, tailPartial := c.partialEnds(off, end)
	partials := 0 // pages a partial block may need besides its own (read from lower first)
	for _, p := range [2]bool{headPartial, tailPartial} {
		if p {
			partials++
		}
	}
	var fills [2]*page // pages filled from lower for the head and tail blocks
	var fillBlk = [2]int64{first, last - 1}
	var fillGen [2]uint64
	var stallStart time.Time // when this writer started waiting while writeback failed
	c.mu.Lock()
	defer func() {
		for _, f := range fills {
			if f != nil {
				c.freePageLocked(f)
			}
		}
		c.mu.Unlock()
	}()
	for {
		if c.closed {
			return errClosed("write")
		}
		// Back-pressure: wait while dirty memory is over the limit.
		need := int(last - first)
		if c.overDirtyLocked(need) {
			if c.stickyErr != nil {
				if stallStart.IsZero() {
					stallStart = time.Now()
				} else if time.Since(stallStart) > c.opts.StallTimeout {
					return fmt.Errorf("extentcache: write [%d,+%d): dirty limit reached while writeback fails: %w",
						off, len(p), c.stickyErr)
				}
			} else {
				stallStart = time.Time{}
			}
			c.st.waits.Add(1)
			c.waiters++
			c.kick()
			c.cond.Wait()
			c.waiters--
			continue
		}
		// Pages: resident pages are evicted and then kept pages dropped
		// before the pool grows (clean copies and a cushion for a failing
		// lower sync are never worth fresh memory), and the pool grows
		// without mu (populating a chunk can take milliseconds).
		if want := need + partials; !c.pagesAtHandLocked(want) {
			c.mu.Unlock()
			c.pool.reserve(want)
			c.mu.Lock()
			continue
		}
		// Partial blocks that are clean must be read first, without mu.
		missing := false
		for i, partial := range [2]bool{headPartial, tailPartial} {
			b := fillBlk[i]
			if !partial || !c.mustFillLocked(b) {
				if fills[i] != nil {
					c.freePageLocked(fills[i])
					fills[i] = nil
				}
				continue
			}
			if fills[i] != nil && fillGen[i] == c.gens[c.genSlot(b)] {
				continue // filled, and nothing touched the block since
			}
			if fills[i] == nil {
				fills[i] = c.newPageLocked()
			}
			fillGen[i] = c.gens[c.genSlot(b)]
			missing = true
		}
		if missing {
			c.mu.Unlock()
			var err error
			for i := range fills {
				if fills[i] != nil && (i == 0 || fillBlk[1] != fillBlk[0]) {
					if err = c.readClean(fills[i].buf[:c.blockEnd(fillBlk[i])-fillBlk[i]<<c.shift], fillBlk[i], fillGen[i]); err != nil {
						break
					}
				}
			}
			c.mu.Lock()
			if err != nil {
				return fmt.Errorf("extentcache: write [%d,+%d): read partial block: %w", off, len(p), err)
			}
			continue // re-check everything: the world moved while unlocked
		}
		break
	}
	if err := c.applyLocked(p, off, &fills); err != nil {
		return err
	}
	// A sequential stream gains nothing from a backlog of whole windows
	// (they are already full-size writes): hold its writer to the speed of
	// writeback, like the kernel's balance_dirty_pages, so its pages are
	// recycled (warm memory) instead of filling the dirty budget with fresh
	// pages. The write itself is done; only its return waits.
	for c.windowBacklogLocked() && !c.closed && c.stickyErr == nil {
		c.st.waits.Add(1)
		c.cond.Wait()
	}
	return nil
}

// TryWriteAt is WriteAt when it can complete at once: no partial block to
// read from lower, no wait for dirty memory or for the window backlog, and
// the pages at hand. Otherwise it changes nothing and reports false
// (device.NoWaiter). It covers writes of up to 128 KiB.
func (c *Cache) TryWriteAt(p []byte, off int64) (bool, error) {
	n := int64(len(p))
	if n == 0 || n > writeChunk || device.CheckRange("extentcache: write", off, n, c.size) != nil {
		return false, nil // WriteAt reports it
	}
	end := off + n
	first, last := c.blockRange(off, end)
	headPartial, tailPartial := c.partialEnds(off, end)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.overDirtyLocked(int(last-first)) || c.windowBacklogLocked() ||
		(headPartial && c.mustFillLocked(first)) || (tailPartial && c.mustFillLocked(last-1)) ||
		!c.pagesAtHandLocked(int(last-first)) {
		return false, nil
	}
	var fills [2]*page
	return true, c.applyLocked(p, off, &fills)
}

// partialEnds reports whether the first and the last block that [off, end)
// touches are covered only in part (a one-block write reports its block
// once, as the head).
func (c *Cache) partialEnds(off, end int64) (head, tail bool) {
	first, last := c.blockRange(off, end)
	head = off&(c.bs-1) != 0 || end < c.blockEnd(first)
	tail = last-1 != first && end < c.blockEnd(last-1)
	return head, tail
}

// overDirtyLocked reports whether a write needing need new pages must wait
// for dirty memory. c.mu must be held.
func (c *Cache) overDirtyLocked(need int) bool {
	return c.pagesInUse > 0 && c.pagesInUse+need > c.maxPages
}

// windowBacklogLocked reports whether more whole windows wait for
// writeback than it keeps in flight: a writer then waits. c.mu must be
// held.
func (c *Cache) windowBacklogLocked() bool { return len(c.full) > c.opts.WritebackInFlight }

// mustFillLocked reports whether a partial write to block b must read the
// block first: it has no page and is not zeroed. c.mu must be held.
func (c *Cache) mustFillLocked(b int64) bool {
	return c.index.get(b) == nil && !c.zeroedLocked(b)
}

// pagesAtHandLocked makes want free pages available without growing the
// pool, evicting resident pages and then dropping kept ones if they hold
// keptGrowLimit bytes or more, and reports whether it could. c.mu must be
// held.
func (c *Cache) pagesAtHandLocked(want int) bool {
	if c.pool.available() >= want {
		return true
	}
	if c.resident.n > 0 {
		c.evictResidentLocked(max(want-c.pool.available(), minEvict))
	}
	if c.pool.available() < want && c.tree.Bytes(Unsynced) >= c.keptGrowLimit {
		c.dropKeptLocked()
	}
	return c.pool.available() >= want
}

// applyLocked makes the write of p at off: it reserves space (all or
// nothing), copies into the blocks' pages (fills holds the head and tail
// blocks read from lower, if any; applyLocked takes them) and updates the
// tree, the generations and the age marks. The pages must be at hand and
// every partial block must have a page, be zeroed, or come in fills. c.mu
// must be held.
func (c *Cache) applyLocked(p []byte, off int64, fills *[2]*page) error {
	end := off + int64(len(p))
	first, last := c.blockRange(off, end)
	fillBlk := [2]int64{first, last - 1}
	// Reserve the space the write needs; all or nothing.
	start, stop := first<<c.shift, c.blockEnd(last-1)
	bitsSet := statetree.Dirty
	if sp := c.opts.Space; sp != nil {
		if _, err := sp.Reserve(start, stop-start); err != nil {
			return fmt.Errorf("extentcache: write [%d,+%d): %w", off, len(p), err)
		}
		bitsSet |= statetree.Delalloc
	}
	newlyDirty := false
	for b := first; b < last; b++ {
		bo := b << c.shift
		lo, hi := max(off, bo), min(end, c.blockEnd(b))
		whole := lo == bo && hi == c.blockEnd(b)
		pg := c.index.get(b)
		switch {
		case pg == nil:
			newlyDirty = true
			switch {
			case whole:
				pg = c.newPageLocked()
			case b == fillBlk[0] && fills[0] != nil:
				pg, fills[0] = fills[0], nil
			case b == fillBlk[1] && fills[1] != nil:
				pg, fills[1] = fills[1], nil
			default: // partial block over Zeroed bytes
				pg = c.newPageLocked()
				clear(pg.buf)
			}
			c.index.set(b, pg)
		case pg.unsynced:
			// Written back, kept for durability: the new data
			// supersedes it, so the page becomes Dirty again in place.
			pg.unsynced = false
			newlyDirty = true
		case pg.clean:
			// Resident after a sync: reused in place the same way.
			c.reuseResidentLocked(pg)
			newlyDirty = true
		case pg.wb:
			// Copy-on-write: the old page is being written back.
			np := c.newPageLocked()
			if !whole {
				copy(np.buf, pg.buf)
			}
			c.index.set(b, np)
			pg = np
		}
		copy(pg.buf[lo-bo:hi-bo], p[lo-off:hi-off])
	}
	c.tree.Convert(start, stop, bitsSet, statetree.Zeroed|ZeroKeep|retainedBits)
	c.bumpGensLocked(first, last)
	if newlyDirty {
		c.pushAgeLocked(start, time.Now().UnixNano())
	}
	if c.noteFullWindowLocked(start, stop) || c.tree.Bytes(statetree.Dirty) > c.backgroundLimitLocked() {
		c.kick()
	}
	c.invariantLocked()
	return nil
}
