package extentcache

import (
	"fmt"
	"time"

	"github.com/extentd/extentd/device"
	"github.com/extentd/extentd/statetree"
)

// Trim discards [off, off+n) (NBD_CMD_TRIM): afterwards the range reads as
// zeros. Whole blocks drop their cached data and reservations and become
// Zeroed; writeback later punches the lower range, after any older write of
// it. Partial blocks at the edges are written with zeros.
func (c *Cache) Trim(off, n int64) error {
	return c.zero("trim", off, n, true)
}

// Zero sets [off, off+n) to zeros (NBD_CMD_WRITE_ZEROES). With mayTrim the
// backing range may be punched, as with Trim; without it (NO_HOLE) space is
// reserved for it (device.ErrNoSpace if it does not fit) and the backing
// range is zeroed in place.
func (c *Cache) Zero(off, n int64, mayTrim bool) error {
	return c.zero("zero", off, n, mayTrim)
}

// FastZero reports true: zeroing only marks the state tree; the backing
// range is zeroed by writeback.
func (c *Cache) FastZero() bool { return true }

func (c *Cache) zero(op string, off, n int64, mayTrim bool) error {
	if err := device.CheckRange("extentcache: "+op, off, n, c.size); err != nil {
		return err
	}
	if n == 0 {
		return nil
	}
	end := off + n
	// Whole blocks [s, e); partial edges go through the write path.
	s := (off + c.bs - 1) &^ (c.bs - 1)
	e := end &^ (c.bs - 1)
	if end == c.size {
		e = end
	}
	if s >= e {
		return c.writeZeros(off, end)
	}
	if off < s {
		if err := c.writeZeros(off, s); err != nil {
			return err
		}
	}
	if e < end {
		if err := c.writeZeros(e, end); err != nil {
			return err
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return errClosed(op)
	}
	set, clr := statetree.Zeroed, statetree.Dirty|statetree.Delalloc|ZeroKeep|retainedBits
	if sp := c.opts.Space; sp != nil {
		if mayTrim {
			sp.Release(s, e-s)
		} else {
			if _, err := sp.Reserve(s, e-s); err != nil {
				return fmt.Errorf("extentcache: %s [%d,+%d): %w", op, off, n, err)
			}
			set |= statetree.Delalloc
		}
	}
	if !mayTrim {
		set |= ZeroKeep
		clr &^= statetree.Delalloc | ZeroKeep
	}
	c.dropPagesLocked(s, e)
	c.tree.Convert(s, e, set, clr)
	first, last := c.blockRange(s, e)
	c.bumpGensLocked(first, last)
	c.pushAgeLocked(s, time.Now().UnixNano())
	c.cond.Broadcast() // pages freed: writers waiting for memory may go on
	c.invariantLocked()
	return nil
}

// writeZeros writes zeros over [off, end), which lies within one block.
func (c *Cache) writeZeros(off, end int64) error {
	var z [maxBlockOnStack]byte
	if end-off <= int64(len(z)) {
		return c.write(z[:end-off], off)
	}
	return c.write(make([]byte, end-off), off)
}

// maxBlockOnStack bounds the zero buffer writeZeros keeps on its stack.
const maxBlockOnStack = 4096

// dropPagesLocked removes the pages of every block in [s, e) from the index:
// dirty pages, pages kept after writeback (Unsynced) and resident ones; the
// caller clears the bits. Pages held by an in-flight writeback are freed
// when it completes. It walks the index, not the tree, because resident
// pages have no state bits. c.mu must be held.
func (c *Cache) dropPagesLocked(s, e int64) {
	first, last := c.blockRange(s, e)
	c.index.eachIn(first, last, func(b int64, pg *page) {
		c.index.del(b)
		switch {
		case pg.clean:
			c.freeResidentLocked(pg)
		case !pg.wb:
			c.freePageLocked(pg)
		}
	})
}
