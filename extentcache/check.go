package extentcache

import (
	"fmt"

	"github.com/extentd/extentd/statetree"
)

// Check verifies the cache's invariants and returns the first violation:
// the tree's own invariants; Dirty and Zeroed never overlap; every range is
// block aligned; every Dirty block has a page that no writeback holds; every
// Unsynced block has its kept page; every page in the index belongs to a
// Dirty, Writeback or Unsynced block, or is a resident page of a block with
// no data state; ZeroKeep implies Zeroed or UnsyncedZero. It takes c.mu; it is meant for tests, at quiescent points (no
// call in progress), where it also checks the page accounting.
func (c *Cache) Check() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.checkLocked(true)
}

// invariantLocked panics if the invariants do not hold; a no-op unless
// built with -tags invariants. c.mu must be held.
func (c *Cache) invariantLocked() {
	if !invariants {
		return
	}
	if err := c.checkLocked(false); err != nil {
		panic(fmt.Sprintf("extentcache: invariant violated: %v", err))
	}
}

// checkLocked is Check; quiescent adds the page-accounting check that does
// not hold while a write holds pages outside the index. c.mu must be held.
func (c *Cache) checkLocked(quiescent bool) error {
	if err := c.tree.Check(); err != nil {
		return fmt.Errorf("extentcache: check: %w", err)
	}
	var err error
	fail := func(format string, args ...any) bool {
		err = fmt.Errorf("extentcache: check: "+format, args...)
		return false
	}
	c.tree.Ascend(0, c.size, func(r statetree.Range) bool {
		switch {
		case r.Start&(c.bs-1) != 0 || (r.End&(c.bs-1) != 0 && r.End != c.size):
			return fail("range %v not block aligned", r)
		case r.Bits&statetree.Dirty != 0 && r.Bits&statetree.Zeroed != 0:
			return fail("range %v is both Dirty and Zeroed", r)
		case r.Bits&ZeroKeep != 0 && r.Bits&(statetree.Zeroed|UnsyncedZero) == 0:
			return fail("range %v has ZeroKeep without Zeroed or UnsyncedZero", r)
		case r.Bits&Unsynced != 0 && r.Bits&(statetree.Dirty|statetree.Zeroed|statetree.Writeback|UnsyncedZero) != 0,
			r.Bits&UnsyncedZero != 0 && r.Bits&(statetree.Dirty|statetree.Zeroed|statetree.Writeback) != 0:
			return fail("range %v is Unsynced or UnsyncedZero with another data state", r)
		}
		if r.Bits&Unsynced != 0 {
			first, last := c.blockRange(r.Start, r.End)
			for b := first; b < last; b++ {
				if pg := c.index.get(b); pg == nil || !pg.unsynced || pg.wb || pg.clean {
					return fail("unsynced block %d (range %v) has no kept page", b, r)
				}
			}
		}
		if r.Bits&statetree.Dirty != 0 {
			first, last := c.blockRange(r.Start, r.End)
			for b := first; b < last; b++ {
				pg := c.index.get(b)
				if pg == nil {
					return fail("dirty block %d (range %v) has no page", b, r)
				}
				if pg.wb || pg.unsynced || pg.clean {
					return fail("dirty block %d (range %v) has a writeback, kept or resident page", b, r)
				}
			}
		}
		return true
	})
	if err != nil {
		return err
	}
	resident := 0
	c.index.each(func(b int64, pg *page) {
		r, ok := c.tree.Get(b << c.shift)
		data := ok && r.Bits&(statetree.Dirty|statetree.Writeback|statetree.Zeroed|retainedBits) != 0
		switch {
		case err != nil:
		case pg.clean && (data || pg.wb || pg.unsynced):
			err = fmt.Errorf("extentcache: check: block %d has a resident page but state %v", b, r.Bits)
		case !pg.clean && (!ok || r.Bits&(statetree.Dirty|statetree.Writeback|Unsynced) == 0):
			err = fmt.Errorf("extentcache: check: block %d has a page but state %v", b, r.Bits)
		}
		if pg.clean {
			resident++
		}
	})
	if err != nil {
		return err
	}
	if resident != c.resident.n {
		return fmt.Errorf("extentcache: check: %d resident pages indexed, %d counted", resident, c.resident.n)
	}
	if c.index.len() > c.pagesInUse+c.resident.n {
		return fmt.Errorf("extentcache: check: %d pages indexed but %d in use and %d resident", c.index.len(), c.pagesInUse, c.resident.n)
	}
	if quiescent && c.inflight == 0 && c.pagesInUse+c.resident.n != c.index.len() {
		return fmt.Errorf("extentcache: check: no writeback in flight but %d pages in use and %d resident, %d indexed", c.pagesInUse, c.resident.n, c.index.len())
	}
	return nil
}
