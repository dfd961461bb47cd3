package extentcache

import (
	"fmt"
	"time"

	"github.com/extentd/extentd/device"
	"github.com/extentd/extentd/statetree"
)

// syncReq is a Flush (full) or SyncRange request for the writeback
// goroutine, completed by sending on done.
type syncReq struct {
	full   bool
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
	err := c.submit(&syncReq{full: true, done: make(chan error, 1)})
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
		c.mu.Unlock()
	} else {
		for _, r := range reqs {
			if perr := c.pass(r.off, r.off+r.n); perr != nil && err == nil {
				err = perr
			}
		}
		if rs, ok := c.lower.(device.RangeSyncer); ok {
			for _, r := range reqs {
				if serr := rs.SyncRange(r.off, r.n); serr != nil && err == nil {
					err = fmt.Errorf("extentcache: sync [%d,+%d): %w", r.off, r.n, serr)
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
		c.mu.Unlock()
	}
	for _, r := range reqs {
		r.done <- err
	}
}

// lowerFlush flushes the lower device, unless nothing was written to it
// since its last successful flush.
func (c *Cache) lowerFlush() error {
	c.mu.Lock()
	dirty := c.lowerDirty
	c.lowerDirty = false
	c.mu.Unlock()
	if !dirty {
		return nil
	}
	c.st.lowerFlushes.Add(1)
	if err := c.lower.Flush(); err != nil {
		c.mu.Lock()
		c.lowerDirty = true
		c.mu.Unlock()
		return fmt.Errorf("extentcache: flush: %w", err)
	}
	return nil
}

// pass writes back every Dirty or Zeroed byte of [from, to) that was so
// when it started, waiting for I/O already in flight, and returns an error
// wrapping ErrWriteback if any writeback I/O failed meanwhile. A sweep with
// a cursor: bytes dirtied behind the cursor are left for later, so a stream
// of writes cannot starve it. Only the writeback goroutine calls it.
func (c *Cache) pass(from, to int64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	failures := c.failures
	cursor := from
	for cursor < to {
		r, ok := c.tree.FindFirst(cursor, statetree.Dirty|statetree.Zeroed)
		if !ok || r.Start >= to {
			break
		}
		at := max(r.Start, cursor)
		if r.Bits&(statetree.Writeback|statetree.Locked) != 0 {
			// Older I/O in flight over these bytes; wait, then look again.
			c.cond.Wait()
			continue
		}
		e, ok := c.claimLocked(r, at, false)
		if !ok {
			continue // state changed while waiting for a slot: look again
		}
		cursor = e
	}
	for c.inflight > 0 {
		c.cond.Wait()
	}
	if c.failures != failures {
		return fmt.Errorf("%w: %w", ErrWriteback, c.stickyErr)
	}
	return nil
}
