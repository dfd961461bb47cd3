package extentcache

// indexChunkBits is log2 of the blocks one index chunk covers (128 blocks,
// 512 KiB of device with 4 KiB blocks; a chunk is 1 KiB of pointers).
const indexChunkBits = 7

// maxSpareChunks bounds the empty chunks pageIndex keeps for reuse.
const maxSpareChunks = 256

// pageIndex maps block numbers to pages: a directory with one slot per 128
// blocks of the device, pointing to chunks that exist only while they hold
// a page. Lookups are two loads, and set/del never allocate once enough
// chunks were made (empty chunks are recycled). It is guarded by Cache.mu.
type pageIndex struct {
	dir   []*indexChunk
	spare []*indexChunk
	n     int // pages indexed
}

type indexChunk struct {
	pages [1 << indexChunkBits]*page
	n     int // non-nil entries
}

func newPageIndex(blocks int64) pageIndex {
	return pageIndex{dir: make([]*indexChunk, (blocks+(1<<indexChunkBits)-1)>>indexChunkBits)}
}

// get returns the page of block b, or nil.
func (x *pageIndex) get(b int64) *page {
	if ch := x.dir[b>>indexChunkBits]; ch != nil {
		return ch.pages[b&(1<<indexChunkBits-1)]
	}
	return nil
}

// set makes p (non-nil) the page of block b.
func (x *pageIndex) set(b int64, p *page) {
	ch := x.dir[b>>indexChunkBits]
	if ch == nil {
		if n := len(x.spare); n > 0 {
			ch = x.spare[n-1]
			x.spare = x.spare[:n-1]
		} else {
			ch = new(indexChunk)
		}
		x.dir[b>>indexChunkBits] = ch
	}
	slot := &ch.pages[b&(1<<indexChunkBits-1)]
	if *slot == nil {
		ch.n++
		x.n++
	}
	*slot = p
}

// del removes the page of block b, if any.
func (x *pageIndex) del(b int64) {
	ch := x.dir[b>>indexChunkBits]
	if ch == nil {
		return
	}
	slot := &ch.pages[b&(1<<indexChunkBits-1)]
	if *slot == nil {
		return
	}
	*slot = nil
	ch.n--
	x.n--
	if ch.n == 0 {
		x.dir[b>>indexChunkBits] = nil
		if len(x.spare) < maxSpareChunks {
			x.spare = append(x.spare, ch)
		}
	}
}

// len returns the number of pages indexed.
func (x *pageIndex) len() int { return x.n }

// each calls fn for every indexed block in ascending order.
func (x *pageIndex) each(fn func(b int64, p *page)) {
	for ci, ch := range x.dir {
		if ch == nil {
			continue
		}
		for i, p := range ch.pages {
			if p != nil {
				fn(int64(ci)<<indexChunkBits+int64(i), p)
			}
		}
	}
}
