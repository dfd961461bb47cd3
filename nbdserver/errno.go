package nbdserver

import (
	"errors"
	"strconv"
	"syscall"

	"github.com/extentd/extentd/device"
)

// Errno is an NBD error code as sent in a reply. Zero means success.
type Errno uint32

// NBD error values. This file is the only place they appear.
const (
	EPERM     Errno = 1   // NBD_EPERM
	EIO       Errno = 5   // NBD_EIO
	ENOMEM    Errno = 12  // NBD_ENOMEM
	EINVAL    Errno = 22  // NBD_EINVAL
	ENOSPC    Errno = 28  // NBD_ENOSPC
	EOVERFLOW Errno = 75  // NBD_EOVERFLOW
	ENOTSUP   Errno = 95  // NBD_ENOTSUP
	ESHUTDOWN Errno = 108 // NBD_ESHUTDOWN
)

// String returns the code's C name, e.g. "EINVAL", or "OK" for zero.
func (e Errno) String() string {
	switch e {
	case 0:
		return "OK"
	case EPERM:
		return "EPERM"
	case EIO:
		return "EIO"
	case ENOMEM:
		return "ENOMEM"
	case EINVAL:
		return "EINVAL"
	case ENOSPC:
		return "ENOSPC"
	case EOVERFLOW:
		return "EOVERFLOW"
	case ENOTSUP:
		return "ENOTSUP"
	case ESHUTDOWN:
		return "ESHUTDOWN"
	}
	return "Errno(" + strconv.FormatUint(uint64(e), 10) + ")"
}

// message returns a short text for an error chunk. Device error details
// (file names, offsets inside the backing store) stay in the server log.
func (e Errno) message() string {
	switch e {
	case EPERM:
		return "operation not permitted"
	case EIO:
		return "input/output error"
	case ENOMEM:
		return "out of memory"
	case EINVAL:
		return "invalid argument"
	case ENOSPC:
		return "no space left on device"
	case EOVERFLOW:
		return "value too large"
	case ENOTSUP:
		return "operation not supported"
	case ESHUTDOWN:
		return "server is shutting down"
	}
	return "error"
}

// errnoOf maps an error returned by a device for command cmd (with request
// flags) to the NBD error code sent to the client, modelled on nbdkit's
// nbd_errno(). It is the only place device and OS errors become NBD codes.
//
// Device sentinels come first because layers wrap OS errors in them and
// vice versa; the first match in the chain decides.
func errnoOf(err error, cmd Command, flags uint16) Errno {
	if err == nil {
		return 0
	}
	writes := cmd == CmdWrite || cmd == CmdWriteZeroes
	switch {
	case errors.Is(err, device.ErrOutOfRange):
		// The spec asks for ENOSPC for writes beyond the end and EINVAL
		// for everything else.
		if writes {
			return ENOSPC
		}
		return EINVAL
	case errors.Is(err, device.ErrNoSpace):
		return ENOSPC
	case errors.Is(err, device.ErrReadOnly):
		return EPERM
	case errors.Is(err, device.ErrNotSupported):
		// ENOTSUP is only meaningful for a fast zero request.
		if cmd == CmdWriteZeroes && flags&cmdFlagFastZero != 0 {
			return ENOTSUP
		}
		return EINVAL
	case errors.Is(err, device.ErrClosed):
		return ESHUTDOWN
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		switch errno {
		case syscall.EPERM, syscall.EROFS, syscall.EACCES:
			return EPERM
		case syscall.ENOSPC, syscall.EDQUOT, syscall.EFBIG:
			return ENOSPC
		case syscall.ENOMEM:
			return ENOMEM
		case syscall.EINVAL:
			return EINVAL
		case syscall.EOVERFLOW:
			return EOVERFLOW
		case syscall.ENOTSUP:
			if cmd == CmdWriteZeroes && flags&cmdFlagFastZero != 0 {
				return ENOTSUP
			}
			return EINVAL
		case syscall.ESHUTDOWN:
			return ESHUTDOWN
		}
	}
	return EIO
}
