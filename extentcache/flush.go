package extentcache

import (
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/extentd/extentd/device"
	"github.com/extentd/extentd/statetree"
)

// syncReq is a Flush (full) or SyncRange request for the writeback
// goroutine, completed by sending on done.
type syncReq struct {
	full   bool
	client bool // a client's Flush (not Close or a checkpoint): counts for idle writeback
	off, n int64
	done   chan error
}

// Flush writes back every write acknowledged before the call, from any
// caller, and flushes the lower device. It returns nil only if all of that
// succeeded; after a writeback failure the data stays in the cache and a
// later Flush retries it. Concurrent Flush calls share one pass and one
// lower flush; writes arriving during a Flush do not delay it beyond one
// sweep of the device.
func (c *Cache) Flush() error {
	t0 := time.Now()
	err := c.submit(&syncReq{full: true, done: make(chan error, 1), client: true})
	ns := uint64(time.Since(t0))
	c.st.flushes.Add(1)
	c.st.flushNs.Add(ns)
	for {
		m := c.st.flushMaxNs.Load()
		if ns <= m || c.st.flushMaxNs.CompareAndSwap(m, ns) {
			break
		}
	}
	return err
}

// SyncRange writes back the dirty data of [off, off+n) (NBD FUA) and syncs
// that range of the lower device (or flushes it all if it cannot sync a
// range).
func (c *Cache) SyncRange(off, n int64) error {
	if err := device.CheckRange("extentcache: sync", off, n, c.size); err != nil {
		return err
	}
	return c.submit(&syncReq{off: off, n: n, done: make(chan error, 1)})
}

// submit queues r for the writeback goroutine and waits for its answer.
func (c *Cache) submit(r *syncReq) error {
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return errClosed("flush")
	}
	c.reqs = append(c.reqs, r)
	if r.client {
		c.noteFlushLocked(time.Now())
	}
	c.mu.Unlock()
	c.kick()
	return <-r.done
}

// serve handles a batch of requests: one pass and one lower flush for all
// full flushes (which also covers every range sync), else one pass per
// range. Only the writeback goroutine calls it.
func (c *Cache) serve(reqs []*syncReq) {
	full := false
	for _, r := range reqs {
		full = full || r.full
	}
	var err error
	if full {
		err = c.pass(0, c.size)
		if ferr := c.lowerFlush(); err == nil {
			err = ferr
		}
		c.mu.Lock()
		if err == nil {
			c.stickyErr = nil // every acknowledged write is durable now
		}
		err = c.lostErrLocked(err)
		c.mu.Unlock()
	} else {
		for _, r := range reqs {
			if perr := c.pass(r.off, r.off+r.n); perr != nil && err == nil {
				err = perr
			}
		}
		if rs, ok := c.lower.(device.RangeSyncer); ok {
			for _, r := range reqs {
				if serr := c.lowerSyncRange(rs, r.off, r.n); serr != nil && err == nil {
					err = serr
				}
			}
		} else if ferr := c.lowerFlush(); err == nil {
			err = ferr
		}
		c.mu.Lock()
		if err == nil && c.stickyErr != nil {
			// An earlier writeback failed and no full flush has
			// succeeded since: report it here too.
			err = fmt.Errorf("%w: %w", ErrWriteback, c.stickyErr)
		}
		err = c.lostErrLocked(err)
		c.mu.Unlock()
	}
	for _, r := range reqs {
		r.done <- err
	}
}

// lostErrLocked returns err, or the permanent error when data may have
// been lost (c.lost): no flush may succeed after that. c.mu must be held.
func (c *Cache) lostErrLocked(err error) error {
	if c.lost == nil || err != nil {
		return err
	}
	return fmt.Errorf("%w: a lower sync failed after written-back data was released from memory; it may be lost: %w", ErrWriteback, c.lost)
}

// lowerFlush flushes the lower device, unless nothing was written to it
// since its last successful flush. On success it releases the pages kept for
// durability; on failure every kept page goes back to Dirty (see
// syncFailedLocked). Only the writeback goroutine calls it, so once the I/O
// in flight is done no writeback completes until it returns: everything
// Unsynced when it starts is covered by the lower flush.
func (c *Cache) lowerFlush() error {
	c.mu.Lock()
	c.quiesceLocked()
	dirty := c.lowerDirty
	c.lowerDirty = false
	c.syncing = dirty
	c.mu.Unlock()
	if !dirty {
		return nil
	}
	c.st.lowerFlushes.Add(1)
	err := c.lower.Flush()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.syncing = false
	if err != nil {
		err = fmt.Errorf("extentcache: flush: %w", err)
		c.syncFailedLocked(err)
		return err
	}
	c.releaseSyncedLocked(0, c.size)
	return nil
}

// lowerSyncRange syncs [off, off+n) of lower (a RangeSyncer), with the same
// bookkeeping as lowerFlush for the whole blocks of the range. Only the
// writeback goroutine calls it.
func (c *Cache) lowerSyncRange(rs device.RangeSyncer, off, n int64) error {
	c.mu.Lock()
	c.quiesceLocked()
	c.mu.Unlock()
	err := rs.SyncRange(off, n)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.syncing = false
	if err != nil {
		err = fmt.Errorf("extentcache: sync [%d,+%d): %w", off, n, err)
		c.syncFailedLocked(err)
		return err
	}
	// Only whole blocks inside the range are known to be synced.
	from := (off + c.bs - 1) &^ (c.bs - 1)
	to := (off + n) &^ (c.bs - 1)
	if off+n == c.size {
		to = c.size
	}
	if from < to {
		c.releaseSyncedLocked(from, to)
	}
	return nil
}

// checkpoint flushes lower on the writeback goroutine's own account, to
// release kept pages when clients do not flush. A failure goes through the
// same path as a failed client flush and arms its own retry backoff (a
// successful writeback must not reset it, or a lower device whose flushes
// keep failing would be rewritten in a loop).
func (c *Cache) checkpoint() {
	c.st.checkpoints.Add(1)
	if err := c.lowerFlush(); err != nil {
		c.mu.Lock()
		c.checkpointAt = time.Now().Add(c.syncBackoff)
		c.syncBackoff = min(2*c.syncBackoff, maxRetryBackoff)
		c.mu.Unlock()
	}
}

// checkpointDueLocked reports whether kept pages or zeroings have been kept
// for longer than WritebackAge, which calls for a checkpoint. c.mu must be
// held.
func (c *Cache) checkpointDueLocked(now time.Time) bool {
	if c.unsyncedSince.IsZero() || now.Before(c.checkpointAt) {
		return false
	}
	return now.Sub(c.unsyncedSince) >= c.opts.WritebackAge
}

// dropKeptLocked frees every kept page without a lower sync, when memory is
// needed: kept pages are a cushion against a failing lower sync, not a
// second dirty budget, and syncing to free them would make a client that
// writes more than MaxDirty without flushing wait for the disk (scattered
// 4 KiB writes at disk speed) where the page cache it writes into would
// not. From then until a full lower sync succeeds, a failed sync can no
// longer be repaired by rewriting: it becomes permanent (c.lost). c.mu must
// be held.
func (c *Cache) dropKeptLocked() {
	n := int64(0)
	for lo := int64(0); ; {
		r, ok := c.tree.FindFirst(lo, Unsynced)
		if !ok {
			break
		}
		c.freeKeptPagesLocked(r.Start, r.End)
		n += r.End - r.Start
		lo = r.End
	}
	if n == 0 {
		return
	}
	c.tree.Clear(0, c.size, Unsynced)
	c.dropped = true
	c.st.keptDropped.Add(uint64(n))
	if c.tree.Bytes(retainedBits) == 0 {
		c.unsyncedSince = time.Time{}
	}
	c.cond.Broadcast() // pages freed: writers waiting for memory may go on
	c.invariantLocked()
}

// freeKeptPagesLocked removes the kept pages of the Unsynced blocks of
// [s, e) from the index and frees them; the caller clears the bits. c.mu
// must be held.
func (c *Cache) freeKeptPagesLocked(s, e int64) {
	first, last := c.blockRange(s, e)
	// Last block first: the pool hands pages out last in, first out, so
	// the next writer gets them in address order again, and a window
	// written into them goes out as one iovec per chunk run (at most
	// IOV_MAX iovecs per pwritev: scattered 4 KiB pages would split an 8
	// MiB window in two).
	for b := last - 1; b >= first; b-- {
		pg := c.index.get(b)
		c.index.del(b)
		c.freePageLocked(pg)
	}
}

// keptOverLimitLocked reports whether kept pages reach a quarter of
// MaxDirty, above which they are dropped. c.mu must be held.
func (c *Cache) keptOverLimitLocked() bool {
	return c.tree.Bytes(Unsynced)>>c.shift >= int64(max(1, c.maxPages/4))
}

// releaseSyncedLocked ends a successful sync of [from, to) (block
// aligned): its Unsynced and UnsyncedZero bytes are durable, so their kept
// pages become resident and their state is cleared. c.mu must be held.
func (c *Cache) releaseSyncedLocked(from, to int64) {
	// A full sync without kept zeroings clears Unsynced in one bulk
	// update at the end instead of one per range.
	bulk := from == 0 && to == c.size && c.tree.Bytes(UnsyncedZero) == 0
	for lo := from; !c.unsyncedSince.IsZero() && lo < to; {
		r, ok := c.tree.FindFirst(lo, retainedBits)
		if !ok || r.Start >= to {
			break
		}
		s, e := max(r.Start, lo), min(r.End, to)
		if r.Bits&Unsynced != 0 {
			c.makeResidentLocked(s, e)
		}
		if !bulk {
			c.tree.Clear(s, e, retainedBits|ZeroKeep) // ZeroKeep: only on UnsyncedZero bytes here
		}
		lo = e
	}
	if bulk && c.tree.Bytes(Unsynced) > 0 {
		c.tree.Clear(from, to, Unsynced)
	}
	if from == 0 && to == c.size {
		c.dropped = false // everything written so far is durable
	}
	if c.tree.Bytes(retainedBits) == 0 {
		c.unsyncedSince = time.Time{}
	}
	c.syncBackoff = c.opts.RetryBackoff
	c.checkpointAt = time.Time{}
	c.cond.Broadcast() // pages freed: writers waiting for memory may go on
	c.invariantLocked()
}

// syncFailedLocked handles a failed lower Flush or SyncRange: lower may
// have dropped any data written since its last successful sync (Linux marks
// the failed pages clean), so every kept page becomes Dirty again and every
// kept zeroing Zeroed again, to be written back and synced anew; I/O in
// flight now does the same when it completes. The error becomes sticky.
// c.mu must be held.
func (c *Cache) syncFailedLocked(err error) {
	c.syncFails++
	c.lowerDirty = true
	if c.stickyErr == nil {
		c.stickyErr = err
	}
	if c.dropped && c.lost == nil {
		// Pages written back since the last good sync were released
		// unsynced; the host may have dropped them with this failure.
		c.lost = err
		c.log.Error("lower sync failed after written-back pages were released; their data may be lost, every flush fails from now on", zap.Error(err))
	}
	c.log.Error("lower sync failed; data written since the last sync is kept dirty and will be rewritten", zap.Error(err))
	if c.unsyncedSince.IsZero() {
		return
	}
	expired := time.Now().Add(-c.opts.WritebackAge).UnixNano()
	for from := int64(0); ; {
		r, ok := c.tree.FindFirst(from, retainedBits)
		if !ok {
			break
		}
		if r.Bits&Unsynced != 0 {
			first, last := c.blockRange(r.Start, r.End)
			for b := first; b < last; b++ {
				c.index.get(b).unsynced = false
			}
			c.tree.Convert(r.Start, r.End, statetree.Dirty, retainedBits)
		} else {
			c.tree.Convert(r.Start, r.End, statetree.Zeroed, retainedBits)
		}
		c.ages.push(r.Start, expired)
		from = r.End
	}
	c.unsyncedSince = time.Time{}
	c.invariantLocked()
}

// pass writes back every Dirty or Zeroed byte of [from, to) that was so
// when it started, waiting for I/O already in flight, and returns an error
// wrapping ErrWriteback if one of its own writeback I/Os failed. A sweep with
// a cursor: bytes dirtied behind the cursor are left for later, so a stream
// of writes cannot starve it. Only the writeback goroutine calls it.
func (c *Cache) pass(from, to int64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	// Only the pass's own writes decide its result. A write that was in
	// flight when the pass started (background, idle) and fails leaves
	// its bytes dirty again, possibly behind the cursor: the pass then
	// scans again and writes them itself, so that failure alone does not
	// fail a flush that made everything durable.
	own := c.passFailures
	for {
		failures := c.failures
		c.passOnceLocked(from, to)
		if c.passFailures != own {
			return fmt.Errorf("%w: %w", ErrWriteback, c.stickyErr)
		}
		if c.failures == failures {
			return nil
		}
	}
}

// passOnceLocked claims every dirty or zeroed cluster of [from, to), waits
// for older I/O over these bytes, and returns when no writeback I/O is in
// flight. c.mu must be held.
func (c *Cache) passOnceLocked(from, to int64) {
	cursor := from
	for cursor < to {
		r, ok := c.tree.FindFirst(cursor, statetree.Dirty|statetree.Zeroed)
		if !ok || r.Start >= to {
			break
		}
		at := max(r.Start, cursor)
		if r.Bits&(statetree.Writeback|statetree.Locked) != 0 {
			// Older I/O in flight over these bytes; wait, then look again.
			c.dispatchBatchLocked()
			c.cond.Wait()
			continue
		}
		e, ok := c.claimChainLocked(r, at, false, true)
		if !ok {
			continue // state changed while waiting for a slot: look again
		}
		cursor = e
	}
	c.dispatchBatchLocked()
	for c.inflight > 0 {
		c.cond.Wait()
	}
}
