package extentcache

import (
	"fmt"
	"math/bits"
	"time"

	"go.uber.org/zap"

	"github.com/extentd/extentd/device"
	"github.com/extentd/extentd/statetree"
)

// NumSizeBuckets is the number of writeback I/O size buckets in Stats:
// bucket i counts I/Os of at most 4 KiB << i bytes; the last bucket counts
// everything larger.
const NumSizeBuckets = 13

// minStartWriteback is the smallest background cluster after which the
// host's writeback is started at once (StartWriteback). Smaller clusters are
// left to the kernel's own writeback and to the next checkpoint or flush.
const minStartWriteback = 1 << 20

// serialWriteMin is the size from which Options.OneLargeWrite serializes
// writeback's writes: the clusters of sequential streams, not scattered
// small ones (whose per-call work outside the filesystem's lock overlaps).
const serialWriteMin = 1 << 20

// maxMarksPerCall bounds the age marks one backgroundLocked call looks at
// while holding c.mu.
const maxMarksPerCall = 1024

// maxZeroIO bounds one zeroing/punching I/O of writeback.
const maxZeroIO = 1 << 30

// job is one claimed writeback cluster [start, end).
type job struct {
	start, end int64
	zero       bool    // a Zeroed range: trim or zero lower
	keep       bool    // with zero: keep the range allocated (ZeroKeep)
	background bool    // claimed by background writeback, not a flush
	pass       bool    // claimed by a flush pass: its failure fails the pass
	syncFails  uint64  // Cache.syncFails when claimed
	pages      []*page // with !zero: the page of each block, in order (zero pages for filled holes)
	filled     int64   // bytes of holes filled with zeros (fillGapsLocked)
	bufs       [][]byte
	next       *job // the next job of a batch (claimLocked), done by the same worker
}

// A flush pass chains the small clusters it claims into batches that one
// worker writes one after the other: a FLUSH after scattered 4 KiB writes
// claims dozens of one-block clusters, and a hand-off, a wake-up and a lock
// round trip each, with four workers contending for the file's inode lock,
// cost more than the writes (W5: 32 clusters per FLUSH).
const (
	batchCluster = 64 << 10 // largest cluster a flush pass chains
	maxBatch     = 64       // most clusters in one batch
)

// run is the writeback goroutine: the only code that claims clusters. It
// serves Flush/SyncRange requests first, then expired data, then dirty data
// above DirtyBackground, and sleeps otherwise.
func (c *Cache) run() {
	defer c.wg.Done()
	tick := time.NewTicker(min(max(c.opts.WritebackAge/4, 10*time.Millisecond), time.Second))
	defer tick.Stop()
	for {
		c.mu.Lock()
		if len(c.reqs) > 0 {
			reqs := c.reqs
			c.reqs = nil
			c.mu.Unlock()
			c.serve(reqs)
			continue
		}
		if c.checkpointDueLocked(time.Now()) {
			c.mu.Unlock()
			c.checkpoint()
			continue
		}
		if c.keptOverLimitLocked() {
			c.dropKeptLocked()
		}
		did := c.backgroundLocked()
		if !did && c.waiters > 0 && c.tree.Bytes(Unsynced) > 0 {
			// Writers wait for memory and only kept pages can free it.
			c.dropKeptLocked()
		}
		c.mu.Unlock()
		if did {
			continue
		}
		select {
		case <-c.wake:
		case <-tick.C:
		case <-c.done:
			c.mu.Lock()
			for c.inflight > 0 {
				c.cond.Wait()
			}
			c.stopped = true
			reqs := c.reqs
			c.reqs = nil
			c.mu.Unlock()
			for _, r := range reqs {
				r.done <- errClosed("flush")
			}
			close(c.jobq)
			return
		}
	}
}

// backgroundLocked claims and starts at most one cluster of expired or
// excess dirty data and reports whether it did. Only the writeback
// goroutine calls it; c.mu must be held.
func (c *Cache) backgroundLocked() bool {
	now := time.Now()
	if now.Before(c.retryAt) {
		return false
	}
	// Whole dirty windows first: full-size writes that cannot get better.
	for len(c.full) > 0 {
		ws := c.full[0]
		c.full = c.full[1:]
		c.cond.Broadcast() // writers held back by the backlog look again
		if r, ok := c.tree.Get(ws); ok && r.Bits&statetree.Dirty != 0 && r.Bits&(statetree.Writeback|statetree.Locked) == 0 {
			if _, ok := c.claimLocked(r, ws, true); ok {
				return true
			}
		}
	}
	// Then expired data, oldest first.
	limit := now.Add(-c.opts.WritebackAge).UnixNano()
	for scanned := 0; c.ages.len() > 0 && c.ages.front().t <= limit; scanned++ {
		if scanned == maxMarksPerCall {
			return true // let requests and writers in; the caller comes back
		}
		m := c.ages.front()
		c.ages.pop()
		r, ok := c.tree.Get(m.off)
		if !ok || r.Bits&(statetree.Dirty|statetree.Zeroed) == 0 {
			continue // clean by now
		}
		if r.Bits&(statetree.Writeback|statetree.Locked) != 0 {
			c.ages.push(m.off, now.UnixNano()-int64(c.opts.WritebackAge)/2)
			continue // retried later, once the I/O in flight is done
		}
		if _, ok := c.claimLocked(r, m.off, true); ok {
			return true
		}
	}
	// Then too much dirty data, or writers waiting for memory: sweep in
	// offset order from the cursor.
	if c.tree.Bytes(statetree.Dirty) <= c.backgroundLimitLocked() && c.waiters == 0 {
		return false
	}
	for wrapped := false; ; {
		r, ok := c.findClaimableLocked(c.cursor, statetree.Dirty)
		if !ok {
			if wrapped || c.cursor == 0 {
				return false
			}
			c.cursor, wrapped = 0, true
			continue
		}
		at := max(r.Start, c.cursor)
		if e, ok := c.claimLocked(r, at, true); ok {
			c.cursor = e
			return true
		}
		c.cursor = r.End
	}
}

// findClaimableLocked returns the first range ending after from that has a
// bit of want and neither Writeback nor Locked. c.mu must be held.
func (c *Cache) findClaimableLocked(from int64, want statetree.Bits) (statetree.Range, bool) {
	for from < c.size {
		r, ok := c.tree.FindFirst(from, want)
		if !ok {
			break
		}
		if r.Bits&(statetree.Writeback|statetree.Locked) == 0 {
			return r, true
		}
		from = r.End
	}
	return statetree.Range{}, false
}

// claimLocked claims the cluster around offset at of record r (Dirty or
// Zeroed, neither Writeback nor Locked), waits for an in-flight slot and
// starts its I/O. It reports false if nothing could be claimed. Only the
// writeback goroutine calls it; c.mu must be held (it is released while
// waiting for a slot, so the caller must not rely on r afterwards; the claim
// itself is re-validated).
func (c *Cache) claimLocked(r statetree.Range, at int64, background bool) (end int64, ok bool) {
	return c.claimChainLocked(r, at, background, false)
}

// claimChainLocked is claimLocked; with chain, a small data cluster joins
// the open batch (c.batch) instead of going to a worker at once, and does
// not wait for a slot (the batch holds one). The caller dispatches the
// batch (dispatchBatchLocked) before it waits for anything.
func (c *Cache) claimChainLocked(r statetree.Range, at int64, background, chain bool) (end int64, ok bool) {
	if !chain || c.batch == nil {
		c.dispatchBatchLocked()
		for c.inflight >= c.opts.WritebackInFlight {
			c.cond.Wait()
		}
	}
	j := c.claimJobLocked(at, background)
	if j == nil {
		return 0, false
	}
	j.pass = chain // only a flush pass chains
	end = j.end    // j belongs to an I/O worker from here on
	if chain && !j.zero && j.end-j.start <= batchCluster {
		if c.batch == nil {
			c.batch = j
		} else {
			c.batchTail.next = j
		}
		c.batchTail = j
		if c.batchLen++; c.batchLen == maxBatch {
			c.dispatchBatchLocked()
		}
		return end, true
	}
	if c.batch != nil {
		// A large cluster met while a batch was open: the batch goes
		// first, and this one waits for a slot of its own.
		c.dispatchBatchLocked()
		for c.inflight > c.opts.WritebackInFlight {
			c.cond.Wait()
		}
	}
	c.jobq <- j // never blocks: fewer than WritebackInFlight jobs or batches are queued
	return end, true
}

// claimJobLocked claims the cluster around offset at (Dirty or Zeroed,
// neither Writeback nor Locked, re-read here) and returns its job, counted
// in inflight, for the caller to perform (do) or hand to a worker; nil if
// nothing could be claimed. c.mu must be held.
func (c *Cache) claimJobLocked(at int64, background bool) *job {
	r, ok := c.tree.Get(at)
	if !ok || r.Bits&(statetree.Dirty|statetree.Zeroed) == 0 || r.Bits&(statetree.Writeback|statetree.Locked) != 0 {
		return nil
	}
	j := c.newJobLocked()
	j.background = background
	j.syncFails = c.syncFails
	if r.Bits&statetree.Dirty != 0 {
		s, e, ok := c.tree.Cluster(at, statetree.Dirty, statetree.Writeback|statetree.Locked,
			c.opts.MaxWritebackIO, c.opts.MaxWritebackIO)
		if !ok {
			c.freeJobLocked(j)
			return nil
		}
		j.start, j.end = s, e
		c.tree.Convert(s, e, statetree.Writeback, statetree.Dirty)
		c.takePagesLocked(j, s, e)
		c.fillGapsLocked(j)
	} else {
		// A Zeroed run of one kind, without Writeback, from r onwards.
		kind := r.Bits & ZeroKeep
		s, e := r.Start, r.End
		for e-s < maxZeroIO && e < c.size {
			n, ok := c.tree.Get(e)
			if !ok || n.Bits&statetree.Zeroed == 0 || n.Bits&(statetree.Writeback|statetree.Locked) != 0 || n.Bits&ZeroKeep != kind {
				break
			}
			e = n.End
		}
		j.start, j.end, j.zero, j.keep = s, e, true, kind != 0
		c.tree.Convert(s, e, statetree.Writeback, 0)
	}
	c.inflight++
	return j
}

// dispatchBatchLocked sends the open batch of small clusters, if any, to a
// worker. c.mu must be held.
func (c *Cache) dispatchBatchLocked() {
	if c.batch == nil {
		return
	}
	c.jobq <- c.batch
	c.batch, c.batchTail, c.batchLen = nil, nil, 0
}

// takePagesLocked appends the pages of the claimed dirty blocks of [s, e)
// to j and marks them held. c.mu must be held.
func (c *Cache) takePagesLocked(j *job, s, e int64) {
	first, last := c.blockRange(s, e)
	for b := first; b < last; b++ {
		pg := c.index.get(b)
		if pg == nil || pg.wb {
			panic(fmt.Sprintf("extentcache: invariant: dirty block %d has no free page", b))
		}
		pg.wb = true
		j.pages = append(j.pages, pg)
	}
}

// fillGapsLocked grows data job j forwards over small holes: while the
// next claimable dirty run of j's aligned window lies at most FillGap bytes
// past j's end, and the bytes between are a hole in lower with no state in
// the cache (nothing dirty, zeroed, reserved or in flight), j writes zeros
// there and goes on with that run. The zeros cost bytes (never more than
// the dirty bytes of j) and buy one write and one extent where there would
// have been many: random writes that left a block or two between them end
// up contiguous in the image. The holes get Writeback for the time of the
// I/O, so a write to them meanwhile waits for its own writeback, and space
// reserved for them (all or nothing per hole; a hole that does not fit ends
// the growth). c.mu must be held.
func (c *Cache) fillGapsLocked(j *job) {
	if c.opts.FillGap <= 0 || c.ext == nil {
		return
	}
	win := c.opts.MaxWritebackIO
	limit := min(j.start-j.start%win+win, c.size)
	dirty := j.end - j.start
	for j.end < limit {
		r, ok := c.tree.FindFirst(j.end, statetree.Dirty)
		if !ok || r.Start >= limit {
			return
		}
		gs, ge := j.end, r.Start
		next := min(r.End, limit)
		if ge < gs || r.Bits&(statetree.Writeback|statetree.Locked) != 0 {
			return
		}
		if ge > gs {
			if ge-gs > c.opts.FillGap || j.filled+ge-gs > dirty+next-ge ||
				c.tree.TestAny(gs, ge, ^statetree.Bits(0)) || !c.holeLocked(gs, ge) {
				return
			}
			if sp := c.opts.Space; sp != nil {
				if _, err := sp.Reserve(gs, ge-gs); err != nil {
					return
				}
			}
			c.tree.Set(gs, ge, statetree.Writeback, 0)
		}
		c.tree.Convert(ge, next, statetree.Writeback, statetree.Dirty)
		// The holes' pages are windows on one zero buffer: consecutive
		// zero blocks are consecutive in memory, so their iovecs merge.
		for i := int64(0); i < (ge-gs)>>c.shift; i++ {
			j.pages = append(j.pages, c.zeroPages[i])
		}
		c.takePagesLocked(j, ge, next)
		j.filled += ge - gs
		c.st.wbFilled.Add(uint64(ge - gs))
		dirty += next - ge
		j.end = next
	}
}

// holeLocked reports whether lower reports [off, end) as one hole.
func (c *Cache) holeLocked(off, end int64) bool {
	hole := false
	err := c.ext.Extents(off, end-off, func(e device.Extent) bool {
		hole = e.Flags&device.Hole != 0 && e.Off <= off && e.Off+e.Len >= end
		return false
	})
	return err == nil && hole
}

// worker performs writeback jobs until jobq is closed. There are
// WritebackInFlight workers; long-lived so that their stacks stay grown.
func (c *Cache) worker() {
	defer c.wg.Done()
	for j := range c.jobq {
		for j != nil {
			next := j.next
			j.next = nil
			c.do(j) // recycles j
			j = next
		}
	}
}

// do performs job j against lower without c.mu, then completes it.
func (c *Cache) do(j *job) {
	var err error
	if j.zero {
		err = c.doZero(j)
	} else {
		err = c.doWrite(j)
	}
	c.mu.Lock()
	c.completeLocked(j, err)
	c.mu.Unlock()
}

// doWrite writes the pages of j with as few vectored writes as possible:
// one when the cluster fits in maxIOV buffers.
//
// Clusters are not preallocated (fallocate) before their write. The host
// filesystem's delayed allocation places a cluster written in one call
// contiguously by itself, while preallocation made unwritten extents that
// the write then had to convert, and placed the holes between earlier data
// one by one: after W1 and W2 (8 s each on a 4 GiB image) the image had
// 18,149 extents with it and 36 without, and W1 ran at 34.9k IOPS against
// 47.3k. Host ENOSPC comes back from the write instead (see "Failures").
func (c *Cache) doWrite(j *job) error {
	n := j.end - j.start
	if j.filled > 0 {
		return c.writeFilled(j)
	}
	// Build the iovecs, merging pages that are contiguous in memory.
	bufs := j.bufs[:0]
	for i, pg := range j.pages {
		b := pg.buf
		if i == len(j.pages)-1 {
			b = b[:j.end-(j.start+int64(i)<<c.shift)] // last block may be short at the device end
		}
		bufs = appendMerged(bufs, b)
	}
	j.bufs = bufs
	off := j.start
	for len(bufs) > 0 {
		k := min(len(bufs), maxIOV)
		var sz int64
		for _, b := range bufs[:k] {
			sz += int64(len(b))
		}
		if err := c.writeVec(bufs[:k], off, sz); err != nil {
			return err
		}
		c.st.wbIOs.Add(1)
		c.st.wbBytes.Add(uint64(sz))
		c.st.wbSizes[sizeBucket(sz)].Add(1)
		off += sz
		bufs = bufs[k:]
	}
	if j.background && c.startq != nil && n >= minStartWriteback {
		// Start the host's writeback soon (starter.go) so that the next
		// Flush is short; a flush pass skips this (its fdatasync follows
		// at once). Only for large clusters: one sync_file_range per
		// scattered 4 KiB cluster cost 45% of the server's CPU under 4K
		// random writes, while the kernel and the next checkpoint write
		// those back anyway.
		c.startWriteback(j.start, n)
	}
	return nil
}

// filledIO is the largest write of a cluster with filled holes.
//
// A buffered write creates page-cache folios as large as the write allows
// (up to 2 MiB), and on ext4 every later small write into a large folio
// walks all of its buffer heads, and its writeback too: after a W1 whose
// filled clusters went out as 8 MiB writes, 4 KiB random writes with a
// FLUSH every 32 (W5) ran at half the speed (perf: ext4_block_write_begin,
// mpage_process_page_bufs). A filled cluster is random data by nature, so it
// is written in pieces of at most filledIO, aligned: small folios, and the
// pieces are adjacent, so the file's extents stay merged. Sequential
// clusters (no fill) keep one write per cluster.
const filledIO = 64 << 10

// writeFilled writes data job j, which has filled holes, in aligned pieces
// of at most filledIO bytes.
func (c *Cache) writeFilled(j *job) error {
	for off := j.start; off < j.end; {
		end := min((off/filledIO+1)*filledIO, j.end)
		bufs := j.bufs[:0]
		for b := off; b < end; b += c.bs {
			pg := j.pages[(b-j.start)>>c.shift]
			bufs = appendMerged(bufs, pg.buf[:min(c.bs, end-b)])
		}
		j.bufs = bufs
		if err := c.writeVec(bufs, off, end-off); err != nil {
			return err
		}
		c.st.wbIOs.Add(1)
		c.st.wbBytes.Add(uint64(end - off))
		c.st.wbSizes[sizeBucket(end-off)].Add(1)
		off = end
	}
	return nil
}

// appendMerged appends b to the iovecs bufs, extending the last one instead
// when b follows it in memory (pages cut from one chunk).
func appendMerged(bufs [][]byte, b []byte) [][]byte {
	if k := len(bufs) - 1; k >= 0 {
		last := bufs[k]
		if cap(last) > len(last) && &last[:len(last)+1][len(last)] == &b[0] {
			bufs[k] = last[:len(last)+len(b)]
			return bufs
		}
	}
	return append(bufs, b)
}

// writeVec writes bufs (sz bytes in all) at off: with WriteVAt if lower
// has it, else one WriteAt per buffer. Every writeback write goes through
// it, so it is where Options.OneLargeWrite takes effect.
func (c *Cache) writeVec(bufs [][]byte, off, sz int64) error {
	if c.opts.OneLargeWrite && sz >= serialWriteMin {
		c.largeMu.Lock()
		defer c.largeMu.Unlock()
	}
	if c.vw != nil {
		w, err := c.vw.WriteVAt(bufs, off)
		if err == nil && int64(w) != sz {
			err = fmt.Errorf("short write of %d bytes", w)
		}
		if err != nil {
			return fmt.Errorf("extentcache: writeback [%d,+%d): %w", off, sz, err)
		}
		return nil
	}
	for _, b := range bufs {
		if _, err := c.lower.WriteAt(b, off); err != nil {
			return fmt.Errorf("extentcache: writeback [%d,+%d): %w", off, len(b), err)
		}
		off += int64(len(b))
	}
	return nil
}

// doZero zeroes or punches the lower range of j.
func (c *Cache) doZero(j *job) error {
	off, n := j.start, j.end-j.start
	c.st.zeroIOs.Add(1)
	var err error
	if z, ok := c.lower.(device.Zeroer); ok {
		err = z.Zero(off, n, !j.keep)
	} else if t, ok := c.lower.(device.Trimmer); ok && !j.keep {
		err = t.Trim(off, n)
	} else {
		err = device.ErrNotSupported
	}
	if err == nil {
		return nil
	}
	if !isNotSupported(err) {
		return fmt.Errorf("extentcache: writeback zero [%d,+%d): %w", off, n, err)
	}
	// Fall back to writing zeros.
	zb := make([]byte, min(n, 1<<20))
	for n > 0 {
		k := min(n, int64(len(zb)))
		if _, err := c.lower.WriteAt(zb[:k], off); err != nil {
			return fmt.Errorf("extentcache: writeback zero [%d,+%d): %w", off, k, err)
		}
		off, n = off+k, n-k
	}
	return nil
}

// completeLocked ends job j. On success the bytes that were not re-dirtied
// become Unsynced (pages kept) or UnsyncedZero until a lower sync covers
// them; on failure, or when a lower sync failed while the I/O was in flight
// (its data may have been dropped with the failed sync's), they become Dirty
// or Zeroed again. Either way Writeback is cleared. c.mu must be held.
func (c *Cache) completeLocked(j *job, err error) {
	c.lowerDirty = true // even a failed write may have changed lower
	// keep: the bytes stay to be written again.
	keep := err != nil || j.syncFails != c.syncFails
	if err != nil {
		c.recordFailureLocked(err)
		if j.pass {
			c.passFailures++
		}
	} else {
		c.recordSuccessLocked()
	}
	if keep {
		c.ages.push(j.start, time.Now().Add(-c.opts.WritebackAge).UnixNano())
	} else if c.unsyncedSince.IsZero() {
		c.unsyncedSince = time.Now()
	}
	if j.zero {
		c.tree.Clear(j.start, j.end, statetree.Writeback)
		if !keep {
			// Bytes still Zeroed of the kind just applied are zero in
			// lower now, until synced. Bytes written meanwhile have lost
			// Zeroed already; bytes zeroed again with the same kind are
			// zero in lower too (the write between never reached lower:
			// it could not be claimed while this I/O was in flight).
			rs := c.scratch[:0]
			c.tree.Ascend(j.start, j.end, func(r statetree.Range) bool {
				if r.Bits&statetree.Zeroed != 0 && (r.Bits&ZeroKeep != 0) == j.keep {
					rs = append(rs, r)
				}
				return true
			})
			for _, r := range rs {
				c.tree.Convert(max(r.Start, j.start), min(r.End, j.end), UnsyncedZero, statetree.Zeroed|statetree.Delalloc)
			}
			c.scratch = rs[:0]
		}
	} else {
		// Each block still holding its page becomes Dirty (keep) or
		// Unsynced; pages rewritten or dropped meanwhile are freed. The
		// tree is updated per run of equal outcome.
		set := Unsynced
		if keep {
			set = statetree.Dirty
		}
		clr := statetree.Writeback
		if err == nil {
			clr |= statetree.Delalloc // lower allocated it
		}
		if keep && j.filled > 0 {
			c.releaseFillsLocked(j)
		}
		if j.filled == 0 && c.allCurrentLocked(j) {
			// The common case: one tree update for the whole cluster.
			for _, pg := range j.pages {
				pg.wb, pg.unsynced = false, !keep
			}
			c.tree.Convert(j.start, j.end, set, clr)
		} else {
			c.completeRunsLocked(j, set, clr, keep)
		}
	}
	c.inflight--
	start, end := j.start, j.end
	c.freeJobLocked(j)
	c.cond.Broadcast()
	if !keep && c.keptOverLimitLocked() {
		c.kick() // kept pages to release (age is left to the ticker)
	}
	c.invariantLocked()
	if c.log.Core().Enabled(zap.DebugLevel) {
		c.log.Debug("writeback done", zap.Int64("off", start), zap.Int64("len", end-start), zap.Error(err))
	}
}

// completeRunsLocked completes data job j when some of its pages were
// rewritten or dropped meanwhile: those are freed; the others stay the pages
// of their blocks, which get set, per run. c.mu must be held.
func (c *Cache) completeRunsLocked(j *job, set, clr statetree.Bits, keep bool) {
	first := j.start >> c.shift
	runStart := int64(-1)
	for i, pg := range j.pages {
		b := first + int64(i)
		if pg.fill {
			// A filled hole: zeros in lower whether or not the write
			// happened, so nothing to keep; a write there meanwhile is
			// Dirty with its own page and stays so.
			if runStart >= 0 {
				c.tree.Set(runStart<<c.shift, b<<c.shift, set, 0)
				runStart = -1
			}
			continue
		}
		if c.index.get(b) == pg {
			pg.wb, pg.unsynced = false, !keep
			if runStart < 0 {
				runStart = b
			}
			continue
		}
		c.freePageLocked(pg) // rewritten or dropped meanwhile
		if runStart >= 0 {
			c.tree.Set(runStart<<c.shift, b<<c.shift, set, 0)
			runStart = -1
		}
	}
	if runStart >= 0 {
		c.tree.Set(runStart<<c.shift, j.end, set, 0)
	}
	c.tree.Clear(j.start, j.end, clr)
}

// releaseFillsLocked drops the space reserved for the filled holes of
// failed job j, except where a write since then relies on it (Delalloc).
// c.mu must be held.
func (c *Cache) releaseFillsLocked(j *job) {
	sp := c.opts.Space
	if sp == nil {
		return
	}
	for i, pg := range j.pages {
		off := j.start + int64(i)<<c.shift
		if r, ok := c.tree.Get(off); pg.fill && (!ok || r.Bits&statetree.Delalloc == 0) {
			sp.Release(off, c.bs)
		}
	}
}

// allCurrentLocked reports whether every page of data job j is still the
// page of its block. c.mu must be held.
func (c *Cache) allCurrentLocked(j *job) bool {
	first := j.start >> c.shift
	for i, pg := range j.pages {
		if c.index.get(first+int64(i)) != pg {
			return false
		}
	}
	return true
}

// newJobLocked returns a recycled job. c.mu must be held.
func (c *Cache) newJobLocked() *job {
	if n := len(c.jobs); n > 0 {
		j := c.jobs[n-1]
		c.jobs = c.jobs[:n-1]
		return j
	}
	return &job{}
}

// freeJobLocked recycles j. c.mu must be held.
func (c *Cache) freeJobLocked(j *job) {
	clear(j.pages)
	clear(j.bufs)
	*j = job{pages: j.pages[:0], bufs: j.bufs[:0]}
	c.jobs = append(c.jobs, j)
}

// sizeBucket returns the Stats.WritebackSizes bucket of an I/O of n bytes.
func sizeBucket(n int64) int {
	if n <= 4096 {
		return 0
	}
	return min(bits.Len64(uint64(n-1))-12, NumSizeBuckets-1)
}
