package extentcache

import (
	"errors"
	"fmt"
	"math/bits"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dgraph-io/ristretto/v2"
	"go.uber.org/zap"

	"github.com/extentd/extentd/device"
	"github.com/extentd/extentd/statetree"
)

// ZeroKeep marks Zeroed bytes whose zeroing must keep the backing range
// allocated (WRITE_ZEROES with NO_HOLE). It is always set together with
// Zeroed.
const ZeroKeep statetree.Bits = 1 << 5

// Durability states of data already written to lower but not yet covered by
// a successful lower Flush or SyncRange (see docs/durability.md). They never
// overlap Dirty, Zeroed or each other.
const (
	// Unsynced marks blocks whose page was written back but is kept (in
	// the index, page.unsynced set) until a lower sync covers it: a failed
	// lower flush may have dropped the data (fsyncgate), and the page is
	// then made Dirty again.
	Unsynced statetree.Bits = 1 << 6
	// UnsyncedZero marks bytes whose zeroing was applied to lower but not
	// yet synced; they read as zeros and go back to Zeroed if a lower flush
	// fails. ZeroKeep stays with them.
	UnsyncedZero statetree.Bits = 1 << 7
	// retainedBits are the bits a write or trim clears besides Zeroed.
	retainedBits = Unsynced | UnsyncedZero
)

// Optional capabilities of the lower device, found by type assertion.
type (
	// vectorWriter writes several buffers at off with one system call.
	vectorWriter interface {
		WriteVAt(bufs [][]byte, off int64) (int, error)
	}
	// writebackStarter starts the host's writeback of a range without
	// waiting (sync_file_range WRITE on a buffered backing file), so that
	// a later Flush has less to do. It makes nothing durable.
	writebackStarter interface {
		StartWriteback(off, n int64) error
	}
)

// maxIOV is the most buffers passed to one WriteVAt (Linux IOV_MAX).
const maxIOV = 1024

// Cache is a write-back cache over a lower device.Device.
//
// # Data
//
// Every dirty block has a page (BlockSize bytes) in index, and so has every
// block written back but not yet synced in lower (Unsynced, page.unsynced):
// a failed lower flush may drop it, and it is then made Dirty again. A page that an
// in-flight writeback reads from is marked wb and is never written: a write
// to its block installs a fresh page (copy-on-write), and the writeback frees
// the old one when it completes. Clean blocks live in the lower device and,
// optionally, in the ristretto clean cache.
//
// # States (statetree bits; all ranges block aligned)
//
//	Dirty            a page holds data newer than lower
//	Writeback        a lower I/O covering the bytes is in flight
//	Zeroed[|ZeroKeep] the bytes read as zeros; lower still has to be zeroed
//	Delalloc         Space holds a reservation for the bytes
//	Unsynced         written back, page kept until a lower sync covers it
//
// A block with a page but none of these bits holds a resident page: synced
// data kept for reads until the memory is needed (resident.go). Resident
// pages are not in the tree, so that the ranges it holds stay those that
// writeback and flushes must look at.
//
//	UnsyncedZero[|ZeroKeep] zeroing applied to lower, not yet synced
//
// Dirty and Zeroed never overlap. A block with Writeback is never claimed by
// a second writeback, so lower I/Os to a byte happen one at a time, in the
// order in which they were claimed; that is what orders trims against writes.
//
// # Locking
//
// mu guards everything below it. Lock order: mu → Space, mu → pool (both
// leaves). mu is never held across lower I/O or ristretto calls.
type Cache struct {
	lower       device.Device
	opts        Options
	log         *zap.Logger
	size        int64
	bs          int64
	shift       uint
	vw          vectorWriter     // nil if lower has no WriteVAt
	wbStarter   writebackStarter // nil if lower has no StartWriteback
	largeMu     sync.Mutex       // held by the one large write in flight (Options.OneLargeWrite)
	startq      chan span        // cluster starts for the starter goroutine (starter.go); nil without wbStarter
	starterDone chan struct{}    // closed when the starter goroutine exits
	ext         device.Extenter  // nil if lower cannot tell holes
	// zeroPages are the pages of filled holes: windows on one zero buffer
	// of FillGap bytes, read-only.
	zeroPages []*page
	pool      *pagePool // memory of every page
	clean     *ristretto.Cache[uint64, []byte]
	door      *doorkeeper    // with clean: admits a block on its second miss
	gate      cleanGate      // with clean: bypasses it while it does not hit
	done      chan struct{}  // closed to stop the writeback goroutine
	wake      chan struct{}  // cap 1: wakes the writeback goroutine
	jobq      chan *job      // claimed jobs for the I/O workers; closed when run exits
	wg        sync.WaitGroup // the writeback goroutine and its I/O workers
	genMask   uint64
	st        counters

	mu sync.Mutex // guards the following
	// +checklocks:mu
	tree *statetree.Tree
	// +checklocks:mu
	index pageIndex // block number → page, for Dirty blocks and data under writeback
	// +checklocks:mu
	pagesInUse int // pages in index or held by writeback, resident pages excepted; ≤ maxPages except for one oversized write
	// +checklocks:mu
	resident residentQueue // blocks with a resident page, oldest first, for eviction
	maxPages int           // MaxDirty / BlockSize (constant)
	// keptGrowLimit: kept pages below this many bytes are never dropped to
	// spare the pool a chunk (keptGrowLimitDefault; tests lower it).
	keptGrowLimit int64
	// autoBackground: DirtyBackground was left to its default, so it may
	// be lowered while fresh memory is expensive (backgroundLimitLocked).
	autoBackground bool
	// +checklocks:mu
	gens []uint64 // per block-hash generation: seq of the last write/trim touching a block hashing there
	// +checklocks:mu
	seq uint64
	// +checklocks:mu
	ages ageQueue
	// +checklocks:mu
	inflight int // writeback I/Os in flight
	// +checklocks:mu
	waiters int // writers waiting for page memory: writeback runs while > 0
	// +checklocks:mu
	closed bool // Close was called: new I/O fails
	// +checklocks:mu
	stopped bool // the writeback goroutine has exited: requests fail
	// +checklocks:mu
	stickyErr error // first writeback error since the last fully successful flush
	// +checklocks:mu
	failures     uint64 // count of failed writeback I/Os
	passFailures uint64 // count of failed writeback I/Os claimed by a flush pass (a pass compares it before and after)
	// +checklocks:mu
	retryAt time.Time // background writeback waits until then after a failure
	// +checklocks:mu
	backoff time.Duration
	// +checklocks:mu
	lowerDirty bool // lower was written since its last successful Flush
	// +checklocks:mu
	syncFails uint64 // count of failed lower syncs; a job completing after one keeps its data dirty
	// +checklocks:mu
	dropped bool // kept pages were released without a lower sync since the last full one
	// +checklocks:mu
	lost error // a lower sync failed after dropped: never cleared, every flush fails
	// +checklocks:mu
	checkpointAt time.Time // checkpoints wait until then after a failed one
	// +checklocks:mu
	syncBackoff time.Duration
	// +checklocks:mu
	unsyncedSince time.Time // when the oldest Unsynced/UnsyncedZero byte still kept got so; zero if none
	// +checklocks:mu
	outOfSpace bool // Space.SetOutOfSpace(true) was called
	// +checklocks:mu
	reqs []*syncReq // pending Flush/SyncRange requests
	// +checklocks:mu
	syncing bool // a lower Flush or SyncRange waits for I/O in flight or runs: nothing may be claimed or written through outside the writeback goroutine
	// +checklocks:mu
	writeThroughs int // write-throughs in flight (writethrough.go)
	// +checklocks:mu
	lastFlush time.Time // when the last client Flush arrived
	// +checklocks:mu
	flushEvery time.Duration // mean interval between client flushes (EWMA); 0 before two
	// +checklocks:mu
	idleCursor int64 // where Idle looks for dirty data next

	// +checklocks:mu
	cursor int64 // background sweep position
	// +checklocks:mu
	full []int64 // starts of windows found wholly dirty by a write, to write back first
	// +checklocks:mu
	jobs []*job // recycled writeback jobs
	// +checklocks:mu
	batch, batchTail *job // a flush pass's open batch of small clusters, not yet sent to a worker
	// +checklocks:mu
	batchLen int
	// +checklocks:mu
	scratch []statetree.Range
	cond    *sync.Cond // on mu: broadcast when an I/O completes or a request arrives
}

// page is one block of dirty data.
type page struct {
	buf      []byte // BlockSize bytes; cap may reach further into the same chunk
	fill     bool   // one of Cache.zeroPages: zeros for a filled hole, never in the index
	wb       bool   // held by an in-flight writeback: never written while set
	unsynced bool   // written back, kept until a lower sync (block is Unsynced)
	clean    bool   // resident after a sync (no state bits); not counted in pagesInUse
	ref      bool   // with clean: read since it was last passed by eviction
	mark     bool   // scratch for compactResidentLocked, false outside it
}

var (
	_ device.Device      = (*Cache)(nil)
	_ device.Trimmer     = (*Cache)(nil)
	_ device.FastZeroer  = (*Cache)(nil)
	_ device.Extenter    = (*Cache)(nil)
	_ device.RangeSyncer = (*Cache)(nil)
	_ device.Prefetcher  = (*Cache)(nil)
	_ device.NoWaiter    = (*Cache)(nil)
	_ device.Idler       = (*Cache)(nil)
)

// New returns a Cache over lower and starts its writeback goroutine. Close
// must be called to write everything back and stop it.
func New(lower device.Device, opts Options) (*Cache, error) {
	autoBackground := opts.DirtyBackground == 0
	opts.EnsureDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	size := lower.Size()
	if size <= 0 {
		return nil, fmt.Errorf("%w: lower device size %d", ErrInvalidOptions, size)
	}
	c := &Cache{
		lower:    lower,
		opts:     opts,
		log:      opts.Logger.Named("extentcache"),
		size:     size,
		bs:       opts.BlockSize,
		shift:    uint(bits.TrailingZeros64(uint64(opts.BlockSize))),
		done:     make(chan struct{}),
		wake:     make(chan struct{}, 1),
		maxPages: int(opts.MaxDirty / opts.BlockSize),
		pool:     newPagePool(opts.BlockSize),
		// The background threshold adapts to the cost of memory only
		// when the caller left it to its default.
		autoBackground: autoBackground,
		// A stream of whole windows recycles its pages once this much is
		// kept; below it, kept pages keep their fsyncgate protection.
		keptGrowLimit: keptGrowLimitDefault,
		backoff:       opts.RetryBackoff,
		// syncBackoff is the delay between failing checkpoints.
		syncBackoff: opts.RetryBackoff,
		// The lower device may hold unflushed writes from before.
		lowerDirty: true,
	}
	c.tree = statetree.New(statetree.Options{Size: size, BlockSize: opts.BlockSize, Locker: &c.mu})
	c.cond = sync.NewCond(&c.mu)
	blocks := (size + c.bs - 1) >> c.shift
	// Spare chunks absorb the churn of random dirty blocks being written
	// back and dirtied again: up to one per 4 pages of MaxDirty.
	c.index = newPageIndex(blocks, max(64, c.maxPages/4))
	ng := uint64(1) << 16
	for ng > 1 && int64(ng/2) >= blocks {
		ng /= 2
	}
	c.gens = make([]uint64, ng)
	c.genMask = ng - 1
	if v, ok := lower.(vectorWriter); ok {
		c.vw = v
	}
	if s, ok := lower.(writebackStarter); ok {
		c.wbStarter = s
		c.startq = make(chan span, startQueue)
		c.starterDone = make(chan struct{})
	}
	if e, ok := lower.(device.Extenter); ok && opts.FillGap > 0 {
		c.ext = e
		zeros := make([]byte, opts.FillGap)
		for off := int64(0); off < opts.FillGap; off += c.bs {
			c.zeroPages = append(c.zeroPages, &page{buf: zeros[off : off+c.bs], fill: true})
		}
	}
	if opts.CacheSize > 0 {
		n := opts.CacheSize / opts.BlockSize
		cc, err := ristretto.NewCache(&ristretto.Config[uint64, []byte]{
			NumCounters:        max(10*n, 1000),
			MaxCost:            opts.CacheSize,
			BufferItems:        64,
			IgnoreInternalCost: true,
			KeyToHash:          func(k uint64) (uint64, uint64) { return k * 0x9E3779B97F4A7C15, k },
		})
		if err != nil {
			return nil, fmt.Errorf("extentcache: clean cache: %w", err)
		}
		c.clean = cc
		c.door = newDoorkeeper(n)
	}
	c.jobq = make(chan *job, opts.WritebackInFlight)
	c.wg.Add(1 + opts.WritebackInFlight)
	go c.run()
	if c.startq != nil {
		go c.starter()
	}
	for range opts.WritebackInFlight {
		go c.worker()
	}
	return c, nil
}

// Size returns the size of the lower device.
func (c *Cache) Size() int64 { return c.size }

// Close writes back everything, flushes the lower device and stops the
// writeback goroutine. It returns the error of that final flush; the lower
// device is not closed. Calls after Close fail with device.ErrClosed.
func (c *Cache) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return fmt.Errorf("extentcache: close: %w", device.ErrClosed)
	}
	c.closed = true
	c.mu.Unlock()
	err := c.submit(&syncReq{full: true, done: make(chan error, 1)})
	close(c.done)
	c.wg.Wait()
	if c.startq != nil {
		// The workers are gone: no start is queued after this, and the
		// lower device stays open until the last one returns.
		close(c.startq)
		<-c.starterDone
	}
	if c.clean != nil {
		c.clean.Close()
	}
	c.pool.close()
	if err != nil {
		c.log.Error("close: final writeback failed", zap.Error(err))
	}
	return err
}

// errClosed returns the error for op on a closed cache.
func errClosed(op string) error {
	return fmt.Errorf("extentcache: %s: %w", op, device.ErrClosed)
}

// blockRange returns the first block and one past the last block that
// [off, end) touches.
func (c *Cache) blockRange(off, end int64) (first, last int64) {
	return off >> c.shift, (end + c.bs - 1) >> c.shift
}

// blockEnd returns the end offset of block b, clipped to the device size.
func (c *Cache) blockEnd(b int64) int64 { return min((b+1)<<c.shift, c.size) }

// genSlot returns the generation slot of block b.
func (c *Cache) genSlot(b int64) int { return int(uint64(b) & c.genMask) }

// bumpGensLocked records a change to blocks [first, last). c.mu must be held.
func (c *Cache) bumpGensLocked(first, last int64) {
	c.seq++
	if uint64(last-first) > c.genMask {
		for i := range c.gens {
			c.gens[i] = c.seq
		}
		return
	}
	for b := first; b < last; b++ {
		c.gens[c.genSlot(b)] = c.seq
	}
}

// newPageLocked returns a page from the pool, counted in pagesInUse. Its
// contents are unspecified. c.mu must be held; the pool grows under it only
// when the caller did not reserve the pages first (see write).
func (c *Cache) newPageLocked() *page {
	c.pagesInUse++
	return c.pool.get()
}

// freePageLocked returns p to the pool. c.mu must be held.
func (c *Cache) freePageLocked(p *page) {
	p.wb, p.unsynced = false, false
	c.pagesInUse--
	c.pool.put(p)
}

// zeroedLocked reports whether block b reads as zeros without a page
// (Zeroed or UnsyncedZero). c.mu must be held.
func (c *Cache) zeroedLocked(b int64) bool {
	if c.tree.Bytes(statetree.Zeroed|UnsyncedZero) == 0 {
		return false
	}
	r, ok := c.tree.Get(b << c.shift)
	return ok && r.Bits&(statetree.Zeroed|UnsyncedZero) != 0
}

// kickLocked wakes the writeback goroutine without blocking. c.mu need not
// be held.
func (c *Cache) kick() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// recordFailureLocked makes err sticky and arms the retry backoff. c.mu must
// be held.
func (c *Cache) recordFailureLocked(err error) {
	c.failures++
	c.st.wbErrors.Add(1)
	if c.stickyErr == nil {
		c.stickyErr = err
		c.log.Error("writeback failed; data kept dirty, will retry", zap.Error(err))
	}
	c.retryAt = time.Now().Add(c.backoff)
	c.backoff = min(2*c.backoff, maxRetryBackoff)
	if c.opts.Space != nil && isNoSpace(err) && !c.outOfSpace {
		c.outOfSpace = true
		c.opts.Space.SetOutOfSpace(true)
	}
}

// recordSuccessLocked resets the backoff and the out-of-space state after a
// successful writeback. c.mu must be held.
func (c *Cache) recordSuccessLocked() {
	c.backoff = c.opts.RetryBackoff
	c.retryAt = time.Time{}
	if c.outOfSpace {
		c.outOfSpace = false
		c.opts.Space.SetOutOfSpace(false)
	}
}

// isNoSpace reports whether err means the backing store is full.
func isNoSpace(err error) bool {
	return errors.Is(err, device.ErrNoSpace) || errors.Is(err, syscall.ENOSPC)
}

// counters are the statistics kept without c.mu.
type counters struct {
	hits, misses     atomic.Uint64
	wbIOs, wbBytes   atomic.Uint64
	wbFilled         atomic.Uint64
	wbErrors         atomic.Uint64
	zeroIOs          atomic.Uint64
	flushes, flushNs atomic.Uint64
	flushMaxNs       atomic.Uint64
	lowerFlushes     atomic.Uint64
	writeThroughs    atomic.Uint64 // writes done by write-through
	writeThroughB    atomic.Uint64 // their bytes
	checkpoints      atomic.Uint64
	keptDropped      atomic.Uint64
	idleIOs          atomic.Uint64 // clusters written back by Idle
	starts           atomic.Uint64 // StartWriteback calls (starter.go)
	startsDropped    atomic.Uint64 // cluster starts dropped on a full queue
	evicted          atomic.Uint64 // bytes of resident pages evicted
	waits            atomic.Uint64
	wbSizes          [NumSizeBuckets]atomic.Uint64
}

// isNotSupported reports whether err means the lower device cannot do the
// operation (so writeback falls back to writing zeros).
func isNotSupported(err error) bool {
	return errors.Is(err, device.ErrNotSupported) || errors.Is(err, syscall.EOPNOTSUPP)
}
