package extentcache

import (
	"encoding/binary"
	"fmt"

	"github.com/extentd/extentd/device"
	"github.com/extentd/extentd/statetree"
)

// maxTrackedClean is how many clean blocks one ReadAt looks up in, and
// fills into, the clean cache. Clean blocks past it are read from the lower
// device directly (large reads are sequential and gain little from it).
const maxTrackedClean = 64

// cleanBlock is a clean block noted under mu with its generation.
type cleanBlock struct {
	b   int64
	gen uint64
}

// cleanList is what memReadLocked leaves for the clean cache and lower.
type cleanList struct {
	blocks       [maxTrackedClean]cleanBlock
	n            int
	overflowFrom int64 // first clean block not listed, or -1
}

// memReadLocked copies into p the blocks of [off, off+len(p)) that memory
// answers (pages: dirty, under writeback, kept or resident; zeroed ranges)
// and lists the others, with their generations, in cl. With cl nil it stops
// at the first block memory cannot answer and reports false. c.mu must be
// held.
func (c *Cache) memReadLocked(p []byte, off int64, cl *cleanList) bool {
	end := off + int64(len(p))
	first, last := c.blockRange(off, end)
	if cl != nil {
		cl.overflowFrom = -1
	}
	zs, ze, zeroed := int64(-1), int64(-1), false // the tree segment last looked up
	anyZeroed := c.tree.Bytes(statetree.Zeroed|UnsyncedZero) > 0
	for b := first; b < last; b++ {
		bo := b << c.shift
		lo, hi := max(off, bo), min(end, c.blockEnd(b))
		if pg := c.index.get(b); pg != nil {
			copy(p[lo-off:hi-off], pg.buf[lo-bo:hi-bo])
			pg.ref = pg.clean
			continue
		}
		if anyZeroed {
			if bo < zs || bo >= ze {
				r, ok := c.tree.Get(bo)
				zs, ze, zeroed = bo, c.blockEnd(b), false
				if ok {
					zs, ze, zeroed = r.Start, r.End, r.Bits&(statetree.Zeroed|UnsyncedZero) != 0
				}
			}
			if zeroed {
				clear(p[lo-off : hi-off])
				continue
			}
		}
		switch {
		case cl == nil:
			return false
		case cl.n < maxTrackedClean:
			cl.blocks[cl.n] = cleanBlock{b, c.gens[c.genSlot(b)]}
			cl.n++
		case cl.overflowFrom < 0:
			cl.overflowFrom = b
		}
	}
	return true
}

// TryReadAt is ReadAt when memory holds every block of the range (dirty,
// kept or resident pages, zeroed ranges): no clean-cache lookup and no
// lower read. Otherwise it reports false; p may have been written
// (device.NoWaiter). It covers reads of up to 128 KiB.
func (c *Cache) TryReadAt(p []byte, off int64) (bool, error) {
	n := int64(len(p))
	if n == 0 || n > writeChunk || device.CheckRange("extentcache: read", off, n, c.size) != nil {
		return false, nil // ReadAt reports it
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.closed && c.memReadLocked(p, off, nil), nil
}

// ReadAt reads [off, off+len(p)) with the newest acknowledged data: dirty
// blocks and blocks under writeback from memory, zeroed blocks as zeros,
// clean blocks from the clean cache or the lower device.
func (c *Cache) ReadAt(p []byte, off int64) (int, error) {
	return c.read(p, off, false)
}

// read is ReadAt; with admit, clean blocks read from lower go to the clean
// cache on their first miss (Prefetch), else on their second.
func (c *Cache) read(p []byte, off int64, admit bool) (int, error) {
	n := int64(len(p))
	if err := device.CheckRange("extentcache: read", off, n, c.size); err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, nil
	}
	if n > writeChunk {
		// Large reads go in block-aligned chunks, each under its own
		// critical section (c.mu is never held for a long copy).
		for i := int64(0); i < n; {
			j := min(n, (off+i+writeChunk)&^(c.bs-1)-off)
			if _, err := c.read(p[i:j], off+i, admit); err != nil {
				return 0, err
			}
			i = j
		}
		return len(p), nil
	}
	end := off + n
	var cl cleanList
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return 0, errClosed("read")
	}
	c.memReadLocked(p, off, &cl)
	c.mu.Unlock()
	tracked, nt, overflowFrom := &cl.blocks, cl.n, cl.overflowFrom
	if nt == 0 {
		return len(p), nil
	}
	// Clean blocks: hits from the clean cache, misses from lower, grouped
	// into contiguous runs.
	useClean := c.clean != nil && (admit || c.gate.use())
	var lookups, hits uint64
	runStart, runEnd := int64(-1), int64(-1)
	flush := func() error {
		if runStart < 0 {
			return nil
		}
		lo, hi := max(off, runStart<<c.shift), min(end, c.blockEnd(runEnd-1))
		if _, err := c.lower.ReadAt(p[lo-off:hi-off], lo); err != nil {
			return fmt.Errorf("extentcache: read [%d,+%d): %w", lo, hi-lo, err)
		}
		runStart = -1
		return nil
	}
	for i := 0; i < nt; i++ {
		cb := tracked[i]
		bo := cb.b << c.shift
		lo, hi := max(off, bo), min(end, c.blockEnd(cb.b))
		if useClean {
			lookups++
			if v, ok := c.clean.Get(uint64(cb.b)); ok && binary.LittleEndian.Uint64(v) == cb.gen {
				hits++
				c.st.hits.Add(1)
				copy(p[lo-off:hi-off], v[8+lo-bo:8+hi-bo])
				tracked[i].b = -1 // no fill needed
				if err := flush(); err != nil {
					return 0, err
				}
				continue
			}
			c.st.misses.Add(1)
		}
		if runStart >= 0 && cb.b == runEnd {
			runEnd++
			continue
		}
		if err := flush(); err != nil {
			return 0, err
		}
		runStart, runEnd = cb.b, cb.b+1
	}
	if err := flush(); err != nil {
		return 0, err
	}
	if useClean {
		c.gate.record(lookups, hits)
		// Fill the clean cache with the whole blocks just read from lower,
		// tagged with the generation seen under mu: a write since then has
		// bumped it, so a stale fill is never served.
		for i := 0; i < nt; i++ {
			cb := tracked[i]
			bo := cb.b << c.shift
			if cb.b < 0 || bo < off || c.blockEnd(cb.b) > end || c.blockEnd(cb.b)-bo != c.bs || (!admit && !c.door.admit(cb.b)) {
				continue
			}
			v := make([]byte, 8+c.bs)
			binary.LittleEndian.PutUint64(v, cb.gen)
			copy(v[8:], p[bo-off:bo-off+c.bs])
			c.clean.Set(uint64(cb.b), v, c.bs)
		}
	}
	if overflowFrom >= 0 {
		// A read with more than maxTrackedClean clean blocks: read the
		// rest the same way, from the first block not tracked.
		lo := overflowFrom << c.shift
		if _, err := c.read(p[lo-off:], lo, admit); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// readClean fills buf with clean block b (buf is the block, possibly short
// at the device end) from the clean cache if it holds generation gen, else
// from lower.
func (c *Cache) readClean(buf []byte, b int64, gen uint64) error {
	if c.clean != nil {
		if v, ok := c.clean.Get(uint64(b)); ok && binary.LittleEndian.Uint64(v) == gen {
			c.st.hits.Add(1)
			copy(buf, v[8:])
			return nil
		}
		c.st.misses.Add(1)
	}
	_, err := c.lower.ReadAt(buf, b<<c.shift)
	return err
}
