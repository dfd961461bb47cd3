package extentcache

import (
	"time"

	"github.com/extentd/extentd/statetree"
)

// Stats is a snapshot of the cache's counters, for metrics.
type Stats struct {
	DirtyBytes     int64 // bytes with Dirty
	WritebackBytes int64 // bytes with a backing I/O in flight
	ZeroedBytes    int64 // bytes zeroed or trimmed but not yet applied to lower
	DelallocBytes  int64 // bytes with a space reservation not yet allocated
	PageBytes      int64 // memory held by dirty, writeback and kept (unsynced) pages
	UnsyncedBytes  int64 // bytes written back, kept in memory until a lower sync
	ResidentBytes  int64 // synced bytes whose page stays resident for reads
	CachedBytes    int64 // bytes in the clean-block cache
	MemoryBytes    int64 // page memory mapped by the cache (pages of every kind, free ones included)
	TreeRanges     int   // records in the state tree

	Hits, Misses uint64 // clean-cache lookups (dirty hits are not counted)
	CleanSkipped uint64 // reads that did not consult the clean cache because it was not hitting
	WriterWaits  uint64 // times a writer waited for memory (back-pressure)

	WritebackIOs    uint64                 // backing data writes
	WritebackBytesW uint64                 // bytes written back (filled holes included)
	WritebackFilled uint64                 // bytes of holes written as zeros to join dirty runs (FillGap)
	WritebackSizes  [NumSizeBuckets]uint64 // WritebackSizes[i]: I/Os of ≤ 4 KiB<<i (last: larger)
	ZeroIOs         uint64                 // backing trims/zeroes
	WritebackErrors uint64                 // failed writeback I/Os

	Flushes       uint64        // Flush calls
	FlushTime     time.Duration // total time in Flush
	FlushMax      time.Duration // longest Flush
	LowerFlushes  uint64        // lower Flush calls
	WriteThroughs uint64        // large writes sent straight to lower (Options.WriteThroughMin)
	WriteThroughB uint64        // their bytes
	Checkpoints   uint64        // lower flushes writeback issued itself to release kept pages
	KeptDropped   uint64        // bytes of kept pages released without a sync, for memory
	IdleIOs       uint64        // clusters written back by Idle (clients that flush often)
	HostStarts    uint64        // lower StartWriteback calls (adjacent clusters merged; starter.go)
	StartsDropped uint64        // cluster starts dropped because the starter goroutine was behind
	Evicted       uint64        // bytes of resident pages evicted for memory

	StickyErr error // the pending writeback error, nil if none
}

// Stats returns a snapshot of the counters.
func (c *Cache) Stats() Stats {
	var s Stats
	c.mu.Lock()
	s.DirtyBytes = c.tree.Bytes(statetree.Dirty)
	s.WritebackBytes = c.tree.Bytes(statetree.Writeback)
	s.ZeroedBytes = c.tree.Bytes(statetree.Zeroed)
	s.DelallocBytes = c.tree.Bytes(statetree.Delalloc)
	s.PageBytes = int64(c.pagesInUse) * c.bs
	s.UnsyncedBytes = c.tree.Bytes(Unsynced)
	s.ResidentBytes = int64(c.resident.n) * c.bs
	s.TreeRanges = c.tree.Len()
	s.StickyErr = c.stickyErr
	c.mu.Unlock()
	if c.clean != nil {
		s.CachedBytes = c.clean.MaxCost() - c.clean.RemainingCost()
	}
	s.MemoryBytes = c.pool.mappedBytes()
	s.Hits, s.Misses = c.st.hits.Load(), c.st.misses.Load()
	s.CleanSkipped = c.gate.skipped.Load()
	s.WriterWaits = c.st.waits.Load()
	s.WritebackIOs, s.WritebackBytesW = c.st.wbIOs.Load(), c.st.wbBytes.Load()
	s.WritebackFilled = c.st.wbFilled.Load()
	for i := range s.WritebackSizes {
		s.WritebackSizes[i] = c.st.wbSizes[i].Load()
	}
	s.ZeroIOs, s.WritebackErrors = c.st.zeroIOs.Load(), c.st.wbErrors.Load()
	s.Flushes = c.st.flushes.Load()
	s.FlushTime = time.Duration(c.st.flushNs.Load())
	s.FlushMax = time.Duration(c.st.flushMaxNs.Load())
	s.LowerFlushes = c.st.lowerFlushes.Load()
	s.WriteThroughs = c.st.writeThroughs.Load()
	s.WriteThroughB = c.st.writeThroughB.Load()
	s.Checkpoints = c.st.checkpoints.Load()
	s.KeptDropped = c.st.keptDropped.Load()
	s.IdleIOs = c.st.idleIOs.Load()
	s.HostStarts, s.StartsDropped = c.st.starts.Load(), c.st.startsDropped.Load()
	s.Evicted = c.st.evicted.Load()
	return s
}
