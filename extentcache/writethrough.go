package extentcache

import (
	"fmt"

	"github.com/extentd/extentd/statetree"
)

// Write-through of large writes (Options.WriteThroughMin), bcache's
// "sequential cutoff": a block-aligned WRITE of at least WriteThroughMin
// bytes over a range the cache holds nothing for goes straight to lower, and
// its reply waits for that write. Caching it would cost a copy into cache
// pages, the pages' bookkeeping and a writeback of the same bytes later, for
// data a large write already brings in the best shape for the backing file;
// over a buffered image the write lands in the host page cache, as the file
// servers' writes do (docs/writeback.md, "Write-through").
//
// Ordering and durability:
//   - The range gets Writeback for the time of the write, so nothing else
//     writes it to lower meanwhile: a cached write or trim of the same bytes
//     waits for its own writeback or punch, after this write (the rule every
//     lower I/O follows; docs/writeback.md, "States").
//   - Generations are bumped when it starts and when it ends, so a clean
//     cache fill that read lower before or during the write is never served.
//   - It holds no copy of the data: once it is done, a later failed lower
//     sync may have lost it, so it counts as released unsynced data
//     (c.dropped) and such a failure fails every later FLUSH (c.lost), as
//     for kept pages dropped under memory pressure (docs/durability.md).
//   - A lower sync waits for write-throughs in flight, and none starts while
//     it waits or runs (c.syncing): the sync then covers every write-through
//     that ended before it, and c.dropped stays exact.

// tryWriteThrough writes p at off straight to lower if it qualifies, and
// reports whether it did (then err is the write's result).
func (c *Cache) tryWriteThrough(p []byte, off int64) (done bool, err error) {
	n := int64(len(p))
	end := off + n
	if c.opts.WriteThroughMin <= 0 || n < c.opts.WriteThroughMin ||
		off&(c.bs-1) != 0 || (n&(c.bs-1) != 0 && end != c.size) {
		return false, nil
	}
	first, last := c.blockRange(off, end)
	c.mu.Lock()
	if c.closed || c.syncing || c.stickyErr != nil {
		c.mu.Unlock()
		return false, nil
	}
	if r, ok := c.tree.FindFirst(off, ^statetree.Bits(0)); ok && r.Start < end {
		c.mu.Unlock()
		return false, nil // the cache holds state here: take the cached path
	}
	c.dropPagesLocked(off, end) // resident clean copies only (no state above)
	c.tree.Set(off, end, statetree.Writeback, 0)
	c.bumpGensLocked(first, last)
	c.writeThroughs++
	c.mu.Unlock()

	err = c.writeVec([][]byte{p}, off, n)
	if err == nil && c.startq != nil {
		c.startWriteback(off, n) // keep the next Flush short (starter.go)
	}

	c.mu.Lock()
	c.tree.Clear(off, end, statetree.Writeback)
	c.bumpGensLocked(first, last)
	c.writeThroughs--
	if err == nil {
		c.lowerDirty = true
		c.dropped = true
	}
	c.cond.Broadcast() // a pass or sync waiting for these bytes or this count
	c.invariantLocked()
	c.mu.Unlock()
	if err != nil {
		if sp := c.opts.Space; sp != nil {
			sp.Release(off, n) // reserved by WriteAt; the write did not happen
		}
		return true, fmt.Errorf("extentcache: write-through [%d,+%d): %w", off, n, err)
	}
	c.st.writeThroughs.Add(1)
	c.st.writeThroughB.Add(uint64(n))
	return true, nil
}

// quiesceLocked sets c.syncing, which keeps Idle and new write-throughs
// out, and waits until no writeback I/O and no write-through is in flight.
// The caller clears c.syncing when its sync is done (or skipped). c.mu must
// be held.
func (c *Cache) quiesceLocked() {
	c.syncing = true
	for c.inflight > 0 || c.writeThroughs > 0 {
		c.cond.Wait()
	}
}
