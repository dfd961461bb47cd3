package main

import (
	"time"

	"go.uber.org/zap"

	"github.com/extentd/extentd/alloc"
	"github.com/extentd/extentd/device"
	"github.com/extentd/extentd/extentcache"
	"github.com/extentd/extentd/internal/metrics"
)

// cacheLayer is the write-back cache as the command uses it.
type cacheLayer = *extentcache.Cache

// newCache stacks the write-back cache over lower. space is nil for a
// read-only export.
func newCache(lower device.Device, r resolved, space *alloc.Space, log *zap.Logger) (cacheLayer, error) {
	opts := extentcache.Options{
		BlockSize:         int64(r.BlockSize),
		CacheSize:         int64(r.CacheSize),
		MaxDirty:          int64(r.MaxDirty),
		DirtyBackground:   int64(r.DirtyBackground),
		MaxWritebackIO:    int64(r.MaxWritebackIO),
		FillGap:           fillGapOption(r.FillGap),
		WritebackAge:      time.Duration(r.WritebackAge),
		WritebackInFlight: r.WritebackInFlight,
		OneLargeWrite:     !r.directIO,
		WriteThroughMin:   writeThroughMin(r.directIO),
		Logger:            log,
	}
	if space != nil {
		opts.Space = space // a nil *alloc.Space in the interface would not be nil
	}
	return extentcache.New(lower, opts)
}

// fillGapOption maps the fill-gap setting to extentcache.Options.FillGap:
// unset keeps the default, 0 disables.
func fillGapOption(v *Size) int64 {
	switch {
	case v == nil:
		return 0
	case *v == 0:
		return -1
	}
	return int64(*v)
}

// fillCacheStats copies the cache's counters into s.
func fillCacheStats(s *metrics.ExportStats, c cacheLayer) {
	cs := c.Stats()
	s.Dirty = cs.DirtyBytes
	s.Writeback = cs.WritebackBytes
	s.Cached = cs.PageBytes + cs.CachedBytes
	s.Memory = cs.MemoryBytes
	s.CacheHits, s.CacheMisses = cs.Hits, cs.Misses
	s.WriterWaits = cs.WriterWaits
	s.FilledBytes = cs.WritebackFilled
	s.WritebackErrors = cs.WritebackErrors
	s.HostStarts, s.StartsDropped = cs.HostStarts, cs.StartsDropped
	s.WriteThrough = cs.WriteThroughB
	s.WritebackError = cs.StickyErr != nil
}

// writeThroughMin is extentcache.Options.WriteThroughMin: writes of 1 MiB
// or more go straight to a buffered image (its page cache takes them as it
// takes the file servers' writes), and are cached over --direct-io, where
// writing through would make the client wait for the disk.
func writeThroughMin(directIO bool) int64 {
	if directIO {
		return 0
	}
	return 1 << 20
}
