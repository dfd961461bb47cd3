package extentcache

import (
	"time"

	"github.com/extentd/extentd/statetree"
)

// Idle writeback. A client that flushes often waits for every flush, and a
// flush costs the writeback of everything dirtied since the last one plus a
// lower sync; the data of such a client will be written back within
// milliseconds anyway, so waiting coalesces little. The server calls Idle
// on a connection's goroutine when it has answered everything and is about
// to wait for the next request (a client at queue depth 1 spends most of
// its time in that round trip): Idle then writes back one dirty cluster
// right there, with no wake-up and no hand-off, so that the flush finds
// little left but the sync. Waking the writeback goroutine for each write
// instead was measured and lost: on 2 vCPUs the wake-ups delayed the
// requests more than the flush gained.
//
// Idle works only while the cache counts as syncing: client flushes (Flush,
// not Close or checkpoints) have come at a mean interval (EWMA) of at most
// syncInterval, and the last one is recent (within syncLinger intervals, and
// never less than syncInterval ago).

const (
	syncInterval = 100 * time.Millisecond // flushes at least this frequent (mean) make Idle write back
	syncLinger   = 4                      // ... until this many mean intervals pass without a flush
)

// noteFlushLocked records a client flush arriving at now. c.mu must be
// held.
func (c *Cache) noteFlushLocked(now time.Time) {
	if !c.lastFlush.IsZero() {
		d := now.Sub(c.lastFlush)
		if c.flushEvery == 0 {
			c.flushEvery = d
		} else {
			c.flushEvery += (d - c.flushEvery) / 4
		}
	}
	c.lastFlush = now
}

// syncingLocked reports whether clients flush often enough for Idle to
// write back. It reads the clock only when they do (Idle runs each time a
// connection waits). c.mu must be held.
func (c *Cache) syncingLocked() bool {
	return c.flushEvery > 0 && c.flushEvery <= syncInterval &&
		time.Since(c.lastFlush) <= max(syncLinger*c.flushEvery, syncInterval)
}

// Idle writes back one dirty cluster on the calling goroutine if clients
// flush often, no lower sync or flush request is in progress and a slot is
// free, and reports whether it did (the caller may call again while it has
// nothing else to do). It implements device.Idler.
func (c *Cache) Idle() bool {
	c.mu.Lock()
	if c.closed || c.syncing || len(c.reqs) > 0 || c.inflight >= c.opts.WritebackInFlight ||
		c.tree.Bytes(statetree.Dirty) == 0 || !c.syncingLocked() {
		c.mu.Unlock()
		return false
	}
	r, ok := c.findClaimableLocked(c.idleCursor, statetree.Dirty)
	if !ok && c.idleCursor > 0 {
		c.idleCursor = 0
		r, ok = c.findClaimableLocked(0, statetree.Dirty)
	}
	var j *job
	if ok {
		j = c.claimJobLocked(max(r.Start, c.idleCursor), false)
	}
	if j == nil {
		c.mu.Unlock()
		return false
	}
	c.idleCursor = j.end
	c.st.idleIOs.Add(1)
	c.mu.Unlock()
	c.do(j)
	return true
}
