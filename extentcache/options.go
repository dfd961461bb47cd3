package extentcache

import (
	"fmt"
	"time"

	"go.uber.org/zap"
)

// Space is the backing store's space accounting (alloc.Space implements it).
// Its methods are called with Cache.mu held, so it must not call back into
// the cache; its own lock is a leaf in the lock order.
type Space interface {
	// Reserve reserves the blocks of [off, off+n) that are neither
	// allocated nor already reserved, all or nothing. The error wraps
	// device.ErrNoSpace when they do not fit.
	Reserve(off, n int64) (reserved int64, err error)
	// Release drops reservations of [off, off+n) and returns the bytes
	// released.
	Release(off, n int64) int64
	// SetOutOfSpace marks the host filesystem as full (true): new
	// reservations then fail. The cache sets it when writeback gets ENOSPC
	// and clears it when a writeback succeeds again.
	SetOutOfSpace(bool)
}

// Options configures a Cache. The zero value of every field means its
// default.
type Options struct {
	// BlockSize is the cache block size in bytes, a power of two in
	// [512, 64 KiB]. Dirty
	// data is kept in pages of this size; writes smaller than a block that
	// hit an uncached block read that one block from the lower device.
	// Default 4096.
	BlockSize int64

	// CacheSize is the byte budget of the clean-block cache (ristretto).
	// Default 64 MiB; negative disables it.
	CacheSize int64

	// MaxDirty is the hard limit on memory for dirty pages (including pages
	// held by in-flight writeback), in bytes. Writers wait above it.
	// Default 256 MiB. It must be at least 2*MaxWritebackIO.
	MaxDirty int64

	// DirtyBackground is the dirty byte count above which writeback starts
	// without a flush or expiry. Default MaxDirty/2 (the kernel's
	// dirty_background_ratio is half its dirty_ratio).
	DirtyBackground int64

	// MaxWritebackIO is the largest backing write in bytes, and the
	// alignment window of a writeback cluster. Default 8 MiB; a multiple of
	// BlockSize.
	MaxWritebackIO int64

	// FillGap is the largest hole between two dirty runs of one writeback
	// cluster that writeback fills with zeros, so that the runs go out in
	// one write and land in one extent. The zeros written never exceed the
	// cluster's dirty bytes. Default 64 KiB; negative disables; a multiple
	// of BlockSize, at most MaxWritebackIO.
	FillGap int64

	// WritebackAge is how long dirty data may stay in memory before
	// writeback starts for it. Default 30 s, the kernel's dirty_expire.
	WritebackAge time.Duration

	// WritebackInFlight is the number of backing I/Os writeback keeps in
	// flight. Default 4.
	WritebackInFlight int

	// OneLargeWrite makes writeback issue one write of serialWriteMin
	// (1 MiB) or more at a time; smaller writes still go WritebackInFlight
	// at a time. For a buffered backing file, whose writes the host
	// filesystem serializes on the inode lock anyway (docs/writeback.md).
	OneLargeWrite bool

	// WriteThroughMin, if positive, sends block-aligned writes of at least
	// this many bytes over ranges the cache holds nothing for straight to
	// lower, and their replies wait for that write (writethrough.go). For a
	// buffered backing file, where such a write lands in the host page
	// cache; extentd serve sets 1 MiB unless --direct-io. 0 caches every
	// write.
	WriteThroughMin int64

	// RetryBackoff is the first delay before background writeback retries
	// after a failure; it doubles up to 2 s. Default 20 ms. Flush always
	// retries at once.
	RetryBackoff time.Duration

	// StallTimeout is how long a writer waits for dirty memory while
	// writeback keeps failing before it gets the writeback error (ENOSPC or
	// EIO), like dm-thin's no_space_timeout. Default 60 s.
	StallTimeout time.Duration

	// Space, when set, accounts backing space: writes reserve the bytes
	// they will need and fail with device.ErrNoSpace at once if they do not
	// fit. Nil means no accounting (for example over an in-memory device).
	Space Space

	// Logger receives control-path logs; nil means zap.NewNop().
	Logger *zap.Logger
}

const (
	defaultBlockSize        = 4096
	defaultCacheSize        = 64 << 20
	defaultMaxDirty         = 256 << 20
	defaultMaxWritebackIO   = 8 << 20
	defaultFillGap          = 64 << 10
	defaultWritebackAge     = 30 * time.Second
	defaultInFlight         = 4
	defaultRetryBackoff     = 20 * time.Millisecond
	defaultStallTimeout     = 60 * time.Second
	maxRetryBackoff         = 2 * time.Second
	minMaxDirtyPerWriteback = 2
	maxBlockSize            = 64 << 10 // at most writeChunk/2
)

// EnsureDefaults replaces zero-valued fields with their defaults.
func (o *Options) EnsureDefaults() {
	if o.BlockSize == 0 {
		o.BlockSize = defaultBlockSize
	}
	if o.CacheSize == 0 {
		o.CacheSize = defaultCacheSize
	}
	if o.MaxWritebackIO == 0 {
		o.MaxWritebackIO = defaultMaxWritebackIO
	}
	if o.FillGap == 0 {
		o.FillGap = max(min(defaultFillGap, o.MaxWritebackIO)/o.BlockSize*o.BlockSize, o.BlockSize)
	}
	if o.MaxDirty == 0 {
		o.MaxDirty = max(defaultMaxDirty, minMaxDirtyPerWriteback*o.MaxWritebackIO)
	}
	if o.DirtyBackground == 0 {
		o.DirtyBackground = o.MaxDirty / 2
	}
	if o.WritebackAge == 0 {
		o.WritebackAge = defaultWritebackAge
	}
	if o.WritebackInFlight == 0 {
		o.WritebackInFlight = defaultInFlight
	}
	if o.RetryBackoff == 0 {
		o.RetryBackoff = defaultRetryBackoff
	}
	if o.StallTimeout == 0 {
		o.StallTimeout = defaultStallTimeout
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
}

// Validate reports whether o, after EnsureDefaults, is usable. Errors wrap
// ErrInvalidOptions and name the field.
func (o *Options) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalidOptions}, args...)...)
	}
	switch {
	case o.BlockSize < 512 || o.BlockSize > maxBlockSize || o.BlockSize&(o.BlockSize-1) != 0:
		return bad("BlockSize %d must be a power of two in [512, %d]", o.BlockSize, maxBlockSize)
	case o.MaxWritebackIO < o.BlockSize || o.MaxWritebackIO%o.BlockSize != 0:
		return bad("MaxWritebackIO %d must be a positive multiple of BlockSize %d", o.MaxWritebackIO, o.BlockSize)
	case o.MaxDirty < minMaxDirtyPerWriteback*o.MaxWritebackIO:
		return bad("MaxDirty %d must be at least %d*MaxWritebackIO (%d)", o.MaxDirty, minMaxDirtyPerWriteback, o.MaxWritebackIO)
	case o.DirtyBackground < 0 || o.DirtyBackground > o.MaxDirty:
		return bad("DirtyBackground %d must lie in [0, MaxDirty %d]", o.DirtyBackground, o.MaxDirty)
	case o.FillGap > 0 && (o.FillGap%o.BlockSize != 0 || o.FillGap > o.MaxWritebackIO):
		return bad("FillGap %d must be a multiple of BlockSize %d and at most MaxWritebackIO %d", o.FillGap, o.BlockSize, o.MaxWritebackIO)
	case o.WritebackAge < 0:
		return bad("WritebackAge %v must be >= 0", o.WritebackAge)
	case o.WritebackInFlight < 1 || o.WritebackInFlight > 1024:
		return bad("WritebackInFlight %d must lie in [1, 1024]", o.WritebackInFlight)
	case o.RetryBackoff < 0:
		return bad("RetryBackoff %v must be >= 0", o.RetryBackoff)
	case o.StallTimeout < 0:
		return bad("StallTimeout %v must be >= 0", o.StallTimeout)
	case o.WriteThroughMin < 0:
		return bad("WriteThroughMin %d must be >= 0", o.WriteThroughMin)
	}
	return nil
}
