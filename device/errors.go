package device

import (
	"errors"
	"fmt"
)

// Sentinel errors shared by every layer. Implementations wrap them with %w and
// a message naming the package, the operation and the range; callers test
// them with errors.Is. Errors from the operating system (syscall.Errno such as
// EIO or ENOSPC) may also be returned wrapped; the NBD server maps both.
var (
	// ErrOutOfRange means the range does not lie within [0, Size()).
	ErrOutOfRange = errors.New("range out of bounds")
	// ErrNoSpace means storage for the write cannot be reserved or allocated
	// (NBD_ENOSPC). Nothing of the failed request was applied.
	ErrNoSpace = errors.New("no space left on backing store")
	// ErrReadOnly means the device does not accept writes (NBD_EPERM).
	ErrReadOnly = errors.New("device is read-only")
	// ErrClosed means the device was closed.
	ErrClosed = errors.New("device is closed")
	// ErrNotSupported means the operation is not offered by this device
	// (for example a fast zero that would have to write data).
	ErrNotSupported = errors.New("operation not supported")
)

// CheckRange returns an error wrapping ErrOutOfRange unless [off, off+n) lies
// within [0, size) and n >= 0. op names the operation for the message.
func CheckRange(op string, off, n, size int64) error {
	if off < 0 || n < 0 || off > size || n > size-off {
		return fmt.Errorf("%s [%d,+%d) on device of %d bytes: %w", op, off, n, size, ErrOutOfRange)
	}
	return nil
}
