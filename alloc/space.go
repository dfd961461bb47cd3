package alloc

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/extentd/extentd/device"
	"github.com/extentd/extentd/statetree"
)

// The per-block states of a Space, as statetree bits. A block has at most
// one of them; a block with none is free (a hole nobody claimed).
const (
	// allocatedBit: the block is backed by storage in the image file.
	allocatedBit = statetree.Bits(1 << 8)
	// reservedBit: the cache reserved the block for data not yet written
	// back (delalloc).
	reservedBit = statetree.Delalloc
	// chargedBit: a File write in progress charged the block (it was
	// neither allocated nor reserved); it becomes allocated when the
	// write succeeds.
	chargedBit = statetree.Bits(1 << 9)
)

// stateName names one state for messages.
func stateName(b statetree.Bits) string {
	switch b {
	case 0:
		return "free"
	case allocatedBit:
		return "allocated"
	case reservedBit:
		return "reserved"
	case chargedBit:
		return "charged"
	}
	return b.String()
}

// SpaceStats is a snapshot of a Space, in bytes.
type SpaceStats struct {
	// Capacity is min(ThinLimit, what the image may hold on the host):
	// allocated + host free − ReserveMargin, as of the last statfs.
	Capacity int64
	// Allocated is the bytes of the image backed by storage.
	Allocated int64
	// Reserved is the bytes reserved by the cache and not yet allocated.
	Reserved int64
	// HostFree is the host filesystem's free space (statfs f_bavail),
	// estimated from the last statfs minus what was allocated since.
	HostFree int64
	// OutOfSpace is the sticky flag set with SetOutOfSpace.
	OutOfSpace bool
}

// Space accounts for the blocks of one image: which are allocated in the
// file and which are reserved by the cache for data not yet written back
// (delayed allocation). It is the allocation map File uses for holes and
// Extents.
//
// # Units
//
// State is kept per host filesystem block (BlockSize, normally 4096): a
// 1-byte write into a hole reserves and allocates its whole block. Reserve
// and the File writes round ranges outwards to blocks; Release and punching
// round inwards (a partly trimmed block keeps its storage and reservation,
// as fallocate(PUNCH_HOLE) keeps partial blocks).
//
// # Contract with the cache
//
//   - Reserve at write time: charges only blocks neither allocated nor
//     reserved, all or nothing, and fails with device.ErrNoSpace when
//     allocated + reserved + new > Capacity, or when new > 0 and the sticky
//     OutOfSpace flag is set.
//   - File.WriteAt, WriteVAt, Allocate and Zero (without mayTrim) turn the
//     reservations in their range into allocations (reserved → allocated);
//     the cache does nothing more. Writes of blocks that are neither
//     reserved nor allocated are charged like a Reserve (but ignore
//     OutOfSpace) and fail with ErrNoSpace beyond Capacity.
//   - File.Trim and Zero with mayTrim mark the covered blocks free. They do
//     not touch reservations: the cache releases its own with Release when
//     it drops data that will never be written back (TRIM/WRITE_ZEROES of
//     dirty data, or giving up on a write).
//   - SetOutOfSpace(true) when writeback hits host ENOSPC; the cache clears
//     it when a later writeback succeeds.
//
// # Locking
//
// mu is a leaf lock: callers may hold theirs (extentcache.Cache.mu) while
// calling Space; while holding mu, Space calls only its statetree (a pure
// data structure without locks), never the caller, a logger or I/O.
// The only system call a Space makes is statfs(2): at most once per
// StatfsInterval on the Reserve path (skipped if another goroutine is
// already refreshing), and always before a Reserve fails.
type Space struct {
	blockSize int64
	devSize   int64 // image size in bytes
	size      int64 // devSize rounded up to blockSize (the map's size)
	thinLimit int64
	margin    int64
	interval  time.Duration
	statfs    func() (free int64, err error) // host free bytes
	log       *zap.Logger

	refreshMu sync.Mutex // serialises statfs refreshes; taken before mu, never under it
	// refreshErr is the error of the last statfs, or nil.
	refreshErr error // +checklocks:refreshMu
	// lastRefresh is when statfs was last called, in nanoseconds since
	// epoch (monotonic); 0 before the first. Read without a lock by the
	// Reserve path.
	lastRefresh atomic.Int64
	epoch       time.Time

	mu sync.Mutex // guards the following; leaf lock
	// t holds, per block, at most one of allocatedBit, reservedBit and
	// chargedBit. Its size is the image size rounded up to blockSize.
	t *statetree.Tree // +checklocks:mu
	// cs is reused by Release (no allocation in steady state).
	cs statetree.ChangeSet // +checklocks:mu
	// hostFree is the free bytes of the last successful statfs.
	hostFree int64 // +checklocks:mu
	// allocAtRefresh is the allocated bytes sampled just before it.
	allocAtRefresh int64 // +checklocks:mu
	// refreshed: hostFree has been read at least once.
	refreshed  bool // +checklocks:mu
	outOfSpace bool // +checklocks:mu
	// scratch holds the free pieces of a Reserve between scan and set.
	scratch []statetree.Range // +checklocks:mu
}

// spaceConfig is what newSpace needs; File fills it from Options.
type spaceConfig struct {
	size, blockSize, thinLimit, margin int64
	interval                           time.Duration
	statfs                             func() (int64, error)
	log                                *zap.Logger
}

func newSpace(c spaceConfig) *Space {
	size := alignUp(c.size, c.blockSize)
	thin := c.thinLimit
	if thin <= 0 || thin > size {
		thin = size
	}
	return &Space{
		blockSize: c.blockSize,
		devSize:   c.size,
		size:      size,
		thinLimit: thin,
		margin:    c.margin,
		interval:  c.interval,
		statfs:    c.statfs,
		log:       c.log,
		t:         statetree.New(statetree.Options{Size: size, BlockSize: c.blockSize}),
		epoch:     time.Now(),
	}
}

// BlockSize returns the accounting unit in bytes.
func (s *Space) BlockSize() int64 { return s.blockSize }

// roundOut returns the blocks covering [off, off+n), clipped to the map.
func (s *Space) roundOut(off, n int64) (start, end int64) {
	return alignDown(off, s.blockSize), min(alignUp(off+n, s.blockSize), s.size)
}

// roundIn returns the blocks wholly inside [off, off+n). The last block of
// an image whose size is not a block multiple counts as whole when the
// range reaches the image's end.
func (s *Space) roundIn(off, n int64) (start, end int64) {
	start = alignUp(off, s.blockSize)
	if off+n >= s.devSize {
		end = s.size
	} else {
		end = alignDown(off+n, s.blockSize)
	}
	return start, max(start, end)
}

// Reserve reserves the blocks of [off, off+n) that are neither allocated
// nor already reserved and returns how many bytes it reserved (0 when all
// were). It is all or nothing: if allocated + reserved + new bytes would
// exceed Capacity, or new bytes are needed while OutOfSpace is set, it
// changes nothing and returns an error wrapping device.ErrNoSpace. A range
// outside the image wraps device.ErrOutOfRange.
func (s *Space) Reserve(off, n int64) (reserved int64, err error) {
	if err := device.CheckRange("alloc: reserve", off, n, s.devSize); err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, nil
	}
	start, end := s.roundOut(off, n)
	s.maybeRefresh()
	s.mu.Lock()
	got, ok := s.reserveLocked(start, end, reservedBit)
	s.mu.Unlock()
	if ok {
		return got, nil
	}
	// Never report ENOSPC on a stale statfs: space may have been freed.
	s.refresh()
	s.mu.Lock()
	defer s.mu.Unlock()
	if got, ok = s.reserveLocked(start, end, reservedBit); ok {
		return got, nil
	}
	need := s.newBytesLocked(start, end)
	if s.outOfSpace {
		return 0, fmt.Errorf("alloc: reserve [%d,+%d): %d new bytes while out of space: %w", off, n, need, device.ErrNoSpace)
	}
	return 0, fmt.Errorf("alloc: reserve [%d,+%d): %d new bytes, %d allocated + %d reserved of capacity %d: %w",
		off, n, need, s.t.Bytes(allocatedBit), s.t.Bytes(reservedBit|chargedBit), s.capacityLocked(), device.ErrNoSpace)
}

// reserveLocked sets bit (reservedBit or chargedBit) on the blocks of the
// block range [start, end) that have no bit, if capacity allows (and, for
// reservedBit, OutOfSpace is clear); ok reports success. s.mu must be held.
//
// +checklocks:s.mu
func (s *Space) reserveLocked(start, end int64, bit statetree.Bits) (reserved int64, ok bool) {
	free := s.scratch[:0]
	cur := start
	s.t.Ascend(start, end, func(r statetree.Range) bool {
		if cur < r.Start {
			free = append(free, statetree.Range{Start: cur, End: r.Start})
		}
		cur = r.End
		return true
	})
	if cur < end {
		free = append(free, statetree.Range{Start: cur, End: end})
	}
	s.scratch = free[:0]
	var need int64
	for _, r := range free {
		need += r.Len()
	}
	if need == 0 {
		return 0, true
	}
	if (bit == reservedBit && s.outOfSpace) || s.usedLocked()+need > s.capacityLocked() {
		return 0, false
	}
	for _, r := range free {
		s.t.Set(r.Start, r.End, bit, 0)
	}
	s.invariantsLocked()
	return need, true
}

// newBytesLocked returns the bytes of [start, end) neither allocated,
// reserved nor charged. s.mu must be held.
//
// +checklocks:s.mu
func (s *Space) newBytesLocked(start, end int64) int64 {
	held := int64(0)
	s.t.Ascend(start, end, func(r statetree.Range) bool {
		held += r.Len()
		return true
	})
	return end - start - held
}

// usedLocked is allocated + reserved + charged bytes. s.mu must be held.
//
// +checklocks:s.mu
func (s *Space) usedLocked() int64 { return s.t.Bytes(allocatedBit | reservedBit | chargedBit) }

// capacityLocked returns min(thinLimit, allocAtRefresh + hostFree −
// margin). Before any statfs succeeded it is thinLimit. s.mu must be held.
//
// +checklocks:s.mu
func (s *Space) capacityLocked() int64 {
	if !s.refreshed {
		return s.thinLimit
	}
	return max(0, min(s.thinLimit, s.allocAtRefresh+s.hostFree-s.margin))
}

// Release drops the reservations of the blocks wholly inside [off, off+n)
// and returns the bytes released. Allocated blocks are not affected. Ranges
// outside the image are clipped.
func (s *Space) Release(off, n int64) (released int64) {
	off, end := max(off, 0), min(off+n, s.devSize)
	if off >= end {
		return 0
	}
	start, stop := s.roundIn(off, end-off)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cs.Reset()
	s.t.ClearRecord(start, stop, reservedBit, &s.cs)
	s.invariantsLocked()
	return s.cs.Bytes
}

// Stats returns a snapshot of the accounting.
func (s *Space) Stats() SpaceStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return SpaceStats{
		Capacity:   s.capacityLocked(),
		Allocated:  s.t.Bytes(allocatedBit),
		Reserved:   s.t.Bytes(reservedBit),
		HostFree:   max(0, s.hostFree-(s.t.Bytes(allocatedBit)-s.allocAtRefresh)),
		OutOfSpace: s.outOfSpace,
	}
}

// SetOutOfSpace sets or clears the sticky out-of-space flag. While it is
// set, Reserve fails with device.ErrNoSpace for any range that needs new
// bytes; overwrites of reserved or allocated blocks still succeed.
func (s *Space) SetOutOfSpace(v bool) {
	s.mu.Lock()
	changed := s.outOfSpace != v
	s.outOfSpace = v
	s.mu.Unlock()
	if changed {
		s.log.Warn("out of space flag changed", zap.Bool("out_of_space", v))
	}
}

// Check verifies the invariants: the map is well formed, no block is both
// allocated and reserved, and the counters are not negative.
func (s *Space) Check() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.checkLocked()
}

// checkLocked is Check. s.mu must be held.
//
// +checklocks:s.mu
func (s *Space) checkLocked() error {
	if err := s.t.Check(); err != nil {
		return fmt.Errorf("alloc: space map: %w", err)
	}
	var err error
	s.t.Ascend(0, s.size, func(r statetree.Range) bool {
		switch {
		case r.Bits&(r.Bits-1) != 0:
			err = fmt.Errorf("alloc: space map: [%d,%d) is %v: more than one state", r.Start, r.End, r.Bits)
		case r.Bits&^(allocatedBit|reservedBit|chargedBit) != 0:
			err = fmt.Errorf("alloc: space map: [%d,%d) has foreign bits %v", r.Start, r.End, r.Bits)
		case r.Owner != 0:
			err = fmt.Errorf("alloc: space map: [%d,%d) has owner %d", r.Start, r.End, r.Owner)
		}
		return err == nil
	})
	return err
}

// invariantsLocked panics if an invariant is broken, in builds with the
// invariants tag; otherwise it does nothing. s.mu must be held.
//
// +checklocks:s.mu
func (s *Space) invariantsLocked() {
	if !invariants {
		return
	}
	if err := s.checkLocked(); err != nil {
		panic("alloc: space invariant broken: " + err.Error())
	}
}

// maybeRefresh refreshes statfs if the cached value is older than the
// interval and nobody else is refreshing. It never waits.
func (s *Space) maybeRefresh() {
	last := s.lastRefresh.Load()
	if (last == 0 || time.Since(s.epoch) >= time.Duration(last)+s.interval) && s.refreshMu.TryLock() {
		s.refreshLocked()
		s.refreshMu.Unlock()
	}
}

// refresh reads statfs now, waiting for a refresh in progress.
func (s *Space) refresh() {
	s.refreshMu.Lock()
	s.refreshLocked()
	s.refreshMu.Unlock()
}

// refreshLocked reads statfs. s.refreshMu must be held, s.mu must not.
// The allocated bytes are sampled before statfs and the map is updated
// after each write completes, so a racing write makes the estimate low
// (conservative), never high.
func (s *Space) refreshLocked() {
	s.mu.Lock()
	a0 := s.t.Bytes(allocatedBit)
	s.mu.Unlock()
	free, err := s.statfs()
	// Retry a failed statfs only after the interval too (a failing Reserve
	// still forces one).
	s.lastRefresh.Store(int64(max(1, time.Since(s.epoch))))
	if err != nil {
		if s.refreshErr == nil {
			s.log.Warn("statfs failed; keeping the last free space figure", zap.Error(err))
		}
		s.refreshErr = err
		return
	}
	s.refreshErr = nil
	s.mu.Lock()
	s.hostFree, s.allocAtRefresh, s.refreshed = free, a0, true
	s.mu.Unlock()
}

// beginWrite charges the blocks of [off, off+n) that are neither
// allocated, reserved nor charged (chargedBit), failing with ErrNoSpace
// beyond capacity. Every successful beginWrite must be followed by
// endWrite of the same range.
func (s *Space) beginWrite(op string, off, n int64) error {
	start, end := s.roundOut(off, n)
	s.maybeRefresh()
	for try := 0; ; try++ {
		s.mu.Lock()
		if _, ok := s.reserveLocked(start, end, chargedBit); ok {
			s.mu.Unlock()
			return nil
		}
		need, used, capacity := s.newBytesLocked(start, end), s.usedLocked(), s.capacityLocked()
		s.mu.Unlock()
		if try > 0 {
			return fmt.Errorf("alloc: %s [%d,+%d): %d new bytes, %d used of capacity %d: %w",
				op, off, n, need, used, capacity, device.ErrNoSpace)
		}
		s.refresh()
	}
}

// endWrite ends a write begun with beginWrite. If ok, the blocks of
// [off, off+n) are now allocated, their reservations and charges consumed;
// otherwise the charges are dropped and nothing else changes. (With
// overlapping concurrent writes one may drop the other's charge; the
// count is right again when both end.)
func (s *Space) endWrite(off, n int64, ok bool) {
	start, end := s.roundOut(off, n)
	s.mu.Lock()
	defer s.mu.Unlock()
	if ok {
		s.t.Convert(start, end, allocatedBit, reservedBit|chargedBit)
	} else {
		s.t.Clear(start, end, chargedBit)
	}
	s.invariantsLocked()
}

// allAllocated reports whether every block covering [off, off+n) is
// allocated.
func (s *Space) allAllocated(off, n int64) bool {
	start, end := s.roundOut(off, n)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.t.TestAll(start, end, allocatedBit)
}

// markFree records that the blocks wholly inside [off, off+n) no longer
// have storage (punched).
func (s *Space) markFree(off, n int64) {
	start, end := s.roundIn(off, n)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.t.Clear(start, end, allocatedBit)
	s.invariantsLocked()
}

// markAllocatedLocked records blocks that hold data: found at Open, or left
// by a failed punch. Reservations and charges there are consumed. s.mu
// must be held.
//
// +checklocks:s.mu
func (s *Space) markAllocatedLocked(start, end int64) {
	s.t.Convert(alignDown(start, s.blockSize), min(alignUp(end, s.blockSize), s.size), allocatedBit, reservedBit|chargedBit)
	s.invariantsLocked()
}

// nextData returns the first allocated stretch intersecting [from, to),
// clipped to it, merging adjacent allocated runs.
func (s *Space) nextData(from, to int64) (start, end int64, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.t.Ascend(from, to, func(r statetree.Range) bool {
		if r.Bits&allocatedBit == 0 {
			return !ok
		}
		if !ok {
			start, end, ok = r.Start, r.End, true
			return true
		}
		if r.Start != end {
			return false
		}
		end = r.End
		return true
	})
	return start, end, ok
}

func alignDown(x, a int64) int64 { return x - x%a }
func alignUp(x, a int64) int64 {
	if r := x % a; r != 0 {
		return x + a - r
	}
	return x
}
