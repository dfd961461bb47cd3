package alloc

import "errors"

// Sentinel errors of package alloc. Errors about the device range, space,
// read-only access and closing wrap the shared sentinels of package device
// (device.ErrOutOfRange, device.ErrNoSpace, device.ErrReadOnly,
// device.ErrClosed); errors from the operating system keep their
// syscall.Errno (for example EIO, ENOSPC) visible to errors.Is.
var (
	// ErrInvalidOptions means Options.Validate rejected a field; the
	// message names the field.
	ErrInvalidOptions = errors.New("invalid options")
	// ErrLocked means another process holds the image open (flock).
	ErrLocked = errors.New("image is locked by another process")
	// ErrNotRegular means the path is not a regular file.
	ErrNotRegular = errors.New("not a regular file")
)
