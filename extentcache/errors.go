package extentcache

import "errors"

// Sentinel errors. Errors from the lower device are returned wrapped; test
// them with errors.Is (device.ErrNoSpace, device.ErrOutOfRange, syscall
// errors).
var (
	// ErrInvalidOptions means Options.Validate rejected a field.
	ErrInvalidOptions = errors.New("extentcache: invalid options")
	// ErrWriteback wraps a writeback failure reported by Flush, SyncRange or
	// Close: some acknowledged data could not be made durable. The data is
	// still in the cache and will be retried.
	ErrWriteback = errors.New("extentcache: writeback failed")
)
