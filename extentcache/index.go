package extentcache

// pageIndex maps block numbers to pages: a directory with one slot per
// chunk of 2^bits blocks, pointing to chunks that exist only while they hold
// a page. Lookups are two loads, and set/del do not allocate in steady state
// (empty chunks are recycled). bits is chosen per device: 32-block chunks
// (264 bytes) up to a directory of 1 Mi slots (8 MiB; a 4 TiB device at 4
// KiB blocks), larger chunks beyond, so that random dirty blocks cost at
// most about a chunk each. It is guarded by Cache.mu.
type pageIndex struct {
	dir      []*indexChunk
	bits     uint
	spare    []*indexChunk
	maxSpare int
	n        int // pages indexed
}

type indexChunk struct {
	pages []*page // 1<<bits entries
	n     int     // non-nil entries
}

const (
	minIndexChunkBits = 5
	maxIndexDir       = 1 << 20
)

// newPageIndex returns an index for blocks blocks that keeps up to
// maxSpare empty chunks for reuse.
func newPageIndex(blocks int64, maxSpare int) pageIndex {
	bits := uint(minIndexChunkBits)
	for (blocks+(1<<bits)-1)>>bits > maxIndexDir {
		bits++
	}
	return pageIndex{
		dir:      make([]*indexChunk, (blocks+(1<<bits)-1)>>bits),
		bits:     bits,
		maxSpare: maxSpare,
	}
}

// get returns the page of block b, or nil.
func (x *pageIndex) get(b int64) *page {
	if ch := x.dir[b>>x.bits]; ch != nil {
		return ch.pages[b&(1<<x.bits-1)]
	}
	return nil
}

// set makes p (non-nil) the page of block b.
func (x *pageIndex) set(b int64, p *page) {
	ch := x.dir[b>>x.bits]
	if ch == nil {
		if n := len(x.spare); n > 0 {
			ch = x.spare[n-1]
			x.spare = x.spare[:n-1]
		} else {
			ch = &indexChunk{pages: make([]*page, 1<<x.bits)}
		}
		x.dir[b>>x.bits] = ch
	}
	slot := &ch.pages[b&(1<<x.bits-1)]
	if *slot == nil {
		ch.n++
		x.n++
	}
	*slot = p
}

// del removes the page of block b, if any.
func (x *pageIndex) del(b int64) {
	ch := x.dir[b>>x.bits]
	if ch == nil {
		return
	}
	slot := &ch.pages[b&(1<<x.bits-1)]
	if *slot == nil {
		return
	}
	*slot = nil
	ch.n--
	x.n--
	if ch.n == 0 {
		x.dir[b>>x.bits] = nil
		if len(x.spare) < x.maxSpare {
			x.spare = append(x.spare, ch)
		}
	}
}

// len returns the number of pages indexed.
func (x *pageIndex) len() int { return x.n }

// eachIn calls fn for every indexed block in [first, last), in ascending
// order, skipping chunks that hold no page. fn may delete the block it is
// given.
func (x *pageIndex) eachIn(first, last int64, fn func(b int64, p *page)) {
	mask := int64(1)<<x.bits - 1
	for ci := first >> x.bits; ci <= (last-1)>>x.bits && ci < int64(len(x.dir)); ci++ {
		ch := x.dir[ci]
		if ch == nil {
			continue
		}
		lo, hi := int64(0), mask+1
		if ci == first>>x.bits {
			lo = first & mask
		}
		if ci == (last-1)>>x.bits {
			hi = (last-1)&mask + 1
		}
		for i := lo; i < hi; i++ {
			if p := ch.pages[i]; p != nil {
				fn(ci<<x.bits+i, p)
			}
		}
	}
}

// each calls fn for every indexed block in ascending order.
func (x *pageIndex) each(fn func(b int64, p *page)) {
	for ci, ch := range x.dir {
		if ch == nil {
			continue
		}
		for i, p := range ch.pages {
			if p != nil {
				fn(int64(ci)<<x.bits+int64(i), p)
			}
		}
	}
}
