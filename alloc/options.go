package alloc

import (
	"fmt"
	"time"

	"go.uber.org/zap"
)

// DirectAlign is the alignment O_DIRECT needs for offsets, lengths and
// buffer addresses (the page size; every Linux filesystem accepts it).
const DirectAlign = 4096

// Defaults for Options.
const (
	// DefaultMaxReserveMargin caps the default ReserveMargin.
	DefaultMaxReserveMargin = 64 << 20
	// DefaultMaxBufferedWrite is the default Options.MaxBufferedWrite.
	DefaultMaxBufferedWrite = 256 << 10
	// DefaultStatfsInterval is how long a statfs(2) result is trusted.
	DefaultStatfsInterval = 100 * time.Millisecond
)

// NoMaxBufferedWrite as Options.MaxBufferedWrite lets a buffered WriteVAt
// write as much per system call as it can.
const NoMaxBufferedWrite = -1

// NoReserveMargin as Options.ReserveMargin keeps no free space back on the
// host filesystem.
const NoReserveMargin = -1

// Options configure Open. The zero value opens an existing image read-write,
// buffered, with no thin limit beyond its size.
type Options struct {
	// Size is the size in bytes of a new image (Create with a missing
	// file). An existing image keeps its size and Size is ignored. Must be
	// > 0 when a file is created; a multiple of DirectAlign with DirectIO.
	Size int64
	// Create creates the image (sparse, Size bytes) if it does not exist.
	Create bool
	// ReadOnly opens the image read-only: writes fail with
	// device.ErrReadOnly.
	ReadOnly bool
	// DirectIO opens the image with O_DIRECT, bypassing the host page
	// cache. Unaligned requests are bounced through aligned buffers.
	// Default false (buffered); see docs/alloc.md for the measurements.
	DirectIO bool
	// MaxBufferedWrite bounds one system call of a buffered WriteVAt:
	// longer writes are split at the multiples of it in the file (see
	// docs/alloc.md, "Large folios"). 0 means DefaultMaxBufferedWrite;
	// NoMaxBufferedWrite (-1) writes each WriteVAt in as few calls as
	// possible. Unused with DirectIO.
	MaxBufferedWrite int64
	// ThinLimit is the most bytes the image may have allocated (reserved
	// included). 0 means the image size.
	ThinLimit int64
	// ReserveMargin is host filesystem free space Space keeps back, in
	// bytes. 0 means the default: min(DefaultMaxReserveMargin, 1% of the
	// host filesystem). NoReserveMargin (-1) keeps nothing back.
	ReserveMargin int64
	// StatfsInterval is the longest a cached statfs(2) result is used.
	// 0 means DefaultStatfsInterval. A reservation that would fail always
	// refreshes it first.
	StatfsInterval time.Duration
	// Logger receives control-path logs; nil means zap.NewNop(). Named
	// "alloc".
	Logger *zap.Logger
}

// EnsureDefaults fills zero fields with their defaults. ReserveMargin 0 is
// resolved at Open, when the host filesystem size is known.
func (o *Options) EnsureDefaults() {
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.MaxBufferedWrite == 0 {
		o.MaxBufferedWrite = DefaultMaxBufferedWrite
	}
	if o.StatfsInterval == 0 {
		o.StatfsInterval = DefaultStatfsInterval
	}
}

// Validate reports the first invalid field, wrapping ErrInvalidOptions.
func (o *Options) Validate() error {
	switch {
	case o.Size < 0:
		return fmt.Errorf("alloc: Options.Size %d is negative: %w", o.Size, ErrInvalidOptions)
	case o.DirectIO && o.Size%DirectAlign != 0:
		return fmt.Errorf("alloc: Options.Size %d is not a multiple of %d (needed by DirectIO): %w", o.Size, DirectAlign, ErrInvalidOptions)
	case o.ReadOnly && o.Create:
		return fmt.Errorf("alloc: Options.Create with Options.ReadOnly: %w", ErrInvalidOptions)
	case o.ThinLimit < 0:
		return fmt.Errorf("alloc: Options.ThinLimit %d is negative: %w", o.ThinLimit, ErrInvalidOptions)
	case o.ReserveMargin < NoReserveMargin:
		return fmt.Errorf("alloc: Options.ReserveMargin %d is negative (use NoReserveMargin): %w", o.ReserveMargin, ErrInvalidOptions)
	case o.MaxBufferedWrite < NoMaxBufferedWrite || o.MaxBufferedWrite > 0 && o.MaxBufferedWrite%DirectAlign != 0:
		return fmt.Errorf("alloc: Options.MaxBufferedWrite %d is not a positive multiple of %d (or NoMaxBufferedWrite): %w", o.MaxBufferedWrite, DirectAlign, ErrInvalidOptions)
	case o.StatfsInterval < 0:
		return fmt.Errorf("alloc: Options.StatfsInterval %v is negative: %w", o.StatfsInterval, ErrInvalidOptions)
	}
	return nil
}
