package faultdev

import (
	"errors"
	"syscall"
)

var (
	// ErrInjected wraps every injected error, so tests can tell injected
	// failures from real ones with errors.Is.
	ErrInjected = errors.New("faultdev: injected fault")

	// EIO and ENOSPC are convenient errors to inject; they are the
	// syscall values, so errors.Is(err, syscall.EIO) holds.
	EIO    error = syscall.EIO
	ENOSPC error = syscall.ENOSPC
)
