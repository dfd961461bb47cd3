package extentcache

import (
	"fmt"

	"github.com/extentd/extentd/device"
	"github.com/extentd/extentd/statetree"
)

// Extents describes [off, off+n) for NBD base:allocation: cached dirty data
// and data under writeback is data, Zeroed ranges are zero (and holes when
// they will be punched), and the rest is what the lower device reports (all
// data if it is not an Extenter).
func (c *Cache) Extents(off, n int64, yield func(device.Extent) bool) error {
	if err := device.CheckRange("extentcache: extents", off, n, c.size); err != nil {
		return err
	}
	end := off + n
	// Snapshot the tree's view under mu; merge with lower without it.
	var rs []statetree.Range
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return errClosed("extents")
	}
	c.tree.Ascend(off, end, func(r statetree.Range) bool {
		if r.Bits&(statetree.Dirty|statetree.Writeback|statetree.Zeroed) != 0 {
			r.Start, r.End = max(r.Start, off), min(r.End, end)
			rs = append(rs, r)
		}
		return true
	})
	c.mu.Unlock()

	var pending device.Extent // merged extent not yet yielded
	stopped := false
	emit := func(e device.Extent) bool {
		if stopped {
			return false
		}
		if e.Len <= 0 {
			return true
		}
		if pending.Len > 0 && pending.Flags == e.Flags && pending.Off+pending.Len == e.Off {
			pending.Len += e.Len
			return true
		}
		if pending.Len > 0 && !yield(pending) {
			stopped = true
			return false
		}
		pending = e
		return true
	}
	lowerRange := func(lo, hi int64) error {
		ext, ok := c.lower.(device.Extenter)
		if !ok {
			emit(device.Extent{Off: lo, Len: hi - lo})
			return nil
		}
		pos := lo
		err := ext.Extents(lo, hi-lo, func(e device.Extent) bool {
			s, t := max(e.Off, pos), min(e.Off+e.Len, hi)
			if t <= s {
				return pos < hi
			}
			if !emit(device.Extent{Off: s, Len: t - s, Flags: e.Flags}) {
				return false
			}
			pos = t
			return pos < hi
		})
		if err != nil {
			return fmt.Errorf("extentcache: extents [%d,+%d): %w", lo, hi-lo, err)
		}
		if pos < hi && !stopped {
			emit(device.Extent{Off: pos, Len: hi - pos})
		}
		return nil
	}
	pos := off
	for _, r := range rs {
		if stopped {
			return nil
		}
		if r.Start > pos {
			if err := lowerRange(pos, r.Start); err != nil {
				return err
			}
		}
		var f device.ExtentFlags
		if r.Bits&statetree.Zeroed != 0 {
			f = device.Zero
			if r.Bits&ZeroKeep == 0 {
				f |= device.Hole
			}
		}
		if !emit(device.Extent{Off: r.Start, Len: r.End - r.Start, Flags: f}) {
			return nil
		}
		pos = r.End
	}
	if !stopped && pos < end {
		if err := lowerRange(pos, end); err != nil {
			return err
		}
	}
	if !stopped && pending.Len > 0 {
		yield(pending)
	}
	return nil
}

// Prefetch reads [off, off+n) into the clean cache (NBD_CMD_CACHE) and
// passes the hint to the lower device. It is advisory.
func (c *Cache) Prefetch(off, n int64) error {
	if err := device.CheckRange("extentcache: prefetch", off, n, c.size); err != nil {
		return err
	}
	if p, ok := c.lower.(device.Prefetcher); ok {
		if err := p.Prefetch(off, n); err != nil {
			return fmt.Errorf("extentcache: prefetch [%d,+%d): %w", off, n, err)
		}
	}
	if c.clean == nil {
		return nil
	}
	chunk := maxTrackedClean * c.bs
	n = min(n, c.opts.CacheSize/2) // never evict the whole cache for a hint
	buf := make([]byte, min(n, chunk))
	for n > 0 {
		k := min(n, int64(len(buf)))
		if _, err := c.read(buf[:k], off, true); err != nil {
			return err
		}
		off, n = off+k, n-k
	}
	return nil
}
