package nbdserver

import (
	"errors"
	"fmt"
	"io/fs"
	"syscall"
	"testing"

	"github.com/extentd/extentd/device"
)

func TestErrnoOf(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("layer: op [0,+1): %w", err) }
	for _, tc := range []struct {
		name  string
		err   error
		cmd   Command
		flags uint16
		want  Errno
	}{
		{"nil", nil, CmdRead, 0, 0},
		{"out of range read", wrap(device.ErrOutOfRange), CmdRead, 0, EINVAL},
		{"out of range trim", wrap(device.ErrOutOfRange), CmdTrim, 0, EINVAL},
		{"out of range write", wrap(device.ErrOutOfRange), CmdWrite, 0, ENOSPC},
		{"out of range write zeroes", wrap(device.ErrOutOfRange), CmdWriteZeroes, 0, ENOSPC},
		{"no space", wrap(device.ErrNoSpace), CmdWrite, 0, ENOSPC},
		{"read only", wrap(device.ErrReadOnly), CmdWrite, 0, EPERM},
		{"not supported fast zero", wrap(device.ErrNotSupported), CmdWriteZeroes, cmdFlagFastZero, ENOTSUP},
		{"not supported plain zero", wrap(device.ErrNotSupported), CmdWriteZeroes, 0, EINVAL},
		{"not supported trim", wrap(device.ErrNotSupported), CmdTrim, 0, EINVAL},
		{"closed", wrap(device.ErrClosed), CmdRead, 0, ESHUTDOWN},
		{"EIO", wrap(syscall.EIO), CmdRead, 0, EIO},
		{"path error EIO", &fs.PathError{Op: "pread", Path: "x", Err: syscall.EIO}, CmdRead, 0, EIO},
		{"ENOSPC", wrap(syscall.ENOSPC), CmdWrite, 0, ENOSPC},
		{"EDQUOT", wrap(syscall.EDQUOT), CmdWrite, 0, ENOSPC},
		{"EFBIG", wrap(syscall.EFBIG), CmdWrite, 0, ENOSPC},
		{"EROFS", wrap(syscall.EROFS), CmdWrite, 0, EPERM},
		{"EPERM", wrap(syscall.EPERM), CmdTrim, 0, EPERM},
		{"ENOMEM", wrap(syscall.ENOMEM), CmdRead, 0, ENOMEM},
		{"EINVAL", wrap(syscall.EINVAL), CmdRead, 0, EINVAL},
		{"EOVERFLOW", wrap(syscall.EOVERFLOW), CmdRead, 0, EOVERFLOW},
		{"ENOTSUP fast zero", wrap(syscall.ENOTSUP), CmdWriteZeroes, cmdFlagFastZero, ENOTSUP},
		{"ENOTSUP other", wrap(syscall.ENOTSUP), CmdTrim, 0, EINVAL},
		{"ESHUTDOWN", wrap(syscall.ESHUTDOWN), CmdFlush, 0, ESHUTDOWN},
		{"unknown errno", wrap(syscall.ENOENT), CmdRead, 0, EIO},
		{"plain error", errors.New("boom"), CmdFlush, 0, EIO},
		{"sentinel wins over errno", fmt.Errorf("%w: %w", device.ErrNoSpace, syscall.EIO), CmdWrite, 0, ENOSPC},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := errnoOf(tc.err, tc.cmd, tc.flags); got != tc.want {
				t.Fatalf("errnoOf(%v, %v) = %v, want %v", tc.err, tc.cmd, got, tc.want)
			}
		})
	}
}

func TestErrnoString(t *testing.T) {
	for e, s := range map[Errno]string{0: "OK", EPERM: "EPERM", EIO: "EIO", ENOMEM: "ENOMEM", EINVAL: "EINVAL",
		ENOSPC: "ENOSPC", EOVERFLOW: "EOVERFLOW", ENOTSUP: "ENOTSUP", ESHUTDOWN: "ESHUTDOWN", 7: "Errno(7)"} {
		if e.String() != s {
			t.Errorf("Errno(%d).String() = %q, want %q", uint32(e), e.String(), s)
		}
	}
}
