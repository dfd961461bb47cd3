package statetree

import (
	"fmt"
	"sync"
)

// Options configures a Tree.
type Options struct {
	// Size is the device size in bytes. Every range lies within [0, Size).
	// Required (> 0).
	Size int64

	// BlockSize is the granularity of every offset, in bytes. Zero means 1.
	// Every start and end passed to a mutation must be a multiple of it,
	// except that an end may equal Size. Misuse panics naming the
	// invariant.
	BlockSize int64

	// Locker is the mutex that guards this Tree. Lock and WaitClear are
	// called with it held and release it while they wait, as
	// sync.Cond.Wait does. Required only for Lock and WaitClear.
	Locker sync.Locker
}

// EnsureDefaults fills in zero-valued fields with their defaults.
func (o *Options) EnsureDefaults() {
	if o.BlockSize == 0 {
		o.BlockSize = 1
	}
}

// Validate reports whether o (after EnsureDefaults) is usable. Errors wrap
// ErrInvalidOptions and name the field.
func (o *Options) Validate() error {
	if o.Size <= 0 {
		return fmt.Errorf("%w: Size %d must be > 0", ErrInvalidOptions, o.Size)
	}
	if o.BlockSize <= 0 {
		return fmt.Errorf("%w: BlockSize %d must be > 0", ErrInvalidOptions, o.BlockSize)
	}
	return nil
}
