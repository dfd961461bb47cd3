package alloc

import (
	"io"
	"unsafe"

	"golang.org/x/sys/unix"
)

// iovMax is IOV_MAX on Linux: the most buffers one pwritev(2) takes.
const iovMax = 1024

// preadFull reads len(p) bytes at off, retrying on EINTR and short reads.
// Reading past the end of the file is io.ErrUnexpectedEOF.
func preadFull(fd int, p []byte, off int64) error {
	return full(unix.Pread, fd, p, off, io.ErrUnexpectedEOF)
}

// pwriteFull writes p at off, retrying on EINTR and short writes.
func pwriteFull(fd int, p []byte, off int64) error {
	return full(unix.Pwrite, fd, p, off, io.ErrShortWrite)
}

// full calls sys (pread or pwrite) until all of p is done, retrying on
// EINTR and resuming short transfers. A call that moves no byte returns
// none (end of file, or a write that makes no progress).
func full(sys func(fd int, p []byte, off int64) (int, error), fd int, p []byte, off int64, none error) error {
	for len(p) > 0 {
		n, err := sys(fd, p, off)
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return err
		case n == 0:
			return none
		}
		p, off = p[n:], off+int64(n)
	}
	return nil
}

// iovecs is reusable scratch for pwritev (File.iovPool): the iovec array,
// and the buffers of one piece for pwritevSplit.
type iovecs struct {
	v     [iovMax]unix.Iovec
	piece [iovMax][]byte
}

// pwritev is pwritev(2) of the buffers of bufs (at most iovMax), using iov
// for the vector so that it allocates nothing.
func pwritev(fd int, iov *iovecs, bufs [][]byte, off int64) (int, error) {
	k := 0
	for _, b := range bufs[:min(len(bufs), iovMax)] {
		if len(b) == 0 {
			continue
		}
		iov.v[k].Base = &b[0]
		iov.v[k].SetLen(len(b))
		k++
	}
	if k == 0 {
		return 0, nil
	}
	lo, hi := uintptr(off), uintptr(uint64(off)>>(8*unsafe.Sizeof(uintptr(0))-1)>>1)
	n, _, errno := unix.Syscall6(unix.SYS_PWRITEV, uintptr(fd), uintptr(unsafe.Pointer(&iov.v[0])), uintptr(k), lo, hi, 0)
	clear(iov.v[:k]) // drop the references to the caller's buffers
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// pwritevFull writes bufs back to back at off with as few pwritev(2) calls
// as possible (one when len(bufs) <= iovMax and the kernel writes it all),
// retrying on EINTR and resuming short writes. bufs itself is not modified.
func pwritevFull(fd int, iov *iovecs, bufs [][]byte, off int64) error {
	owned := false
	for len(bufs) > 0 {
		if len(bufs[0]) == 0 {
			bufs = bufs[1:]
			continue
		}
		n, err := pwritev(fd, iov, bufs, off)
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return err
		case n == 0:
			return io.ErrShortWrite
		}
		off += int64(n)
		for n > 0 {
			if n >= len(bufs[0]) {
				n -= len(bufs[0])
				bufs = bufs[1:]
				continue
			}
			if !owned { // never modify the caller's slice
				bufs, owned = append([][]byte(nil), bufs...), true
			}
			bufs[0] = bufs[0][n:]
			n = 0
		}
	}
	return nil
}

// pwritevSplit writes bufs back to back at off like pwritevFull, in system
// calls that never cross a multiple of split in the file (split > 0).
func pwritevSplit(fd int, iov *iovecs, bufs [][]byte, off, split int64) error {
	return splitPieces(iov.piece[:0], bufs, off, split, func(p [][]byte, off int64) error {
		return pwritevFull(fd, iov, p, off)
	})
}

// splitPieces cuts bufs, to be written back to back at off, into pieces
// that each end at or before the next multiple of split in the file (and
// hold at most cap(scratch) buffers), and calls write for each in order,
// stopping at its first error. The pieces are built in scratch, which is
// cleared after each call; bufs is not modified.
func splitPieces(scratch, bufs [][]byte, off, split int64, write func(p [][]byte, off int64) error) error {
	skip := 0 // bytes of bufs[0] already in an earlier piece
	for len(bufs) > 0 {
		room := split - off%split
		p := scratch[:0]
		var n int64
		for len(bufs) > 0 && n < room && len(p) < cap(scratch) {
			b := bufs[0][skip:]
			if k := room - n; int64(len(b)) > k {
				b = b[:k]
				skip += int(k)
			} else {
				bufs, skip = bufs[1:], 0
			}
			p = append(p, b)
			n += int64(len(b))
		}
		err := write(p, off)
		clear(p) // drop the references to the caller's buffers
		if err != nil {
			return err
		}
		off += n
	}
	return nil
}

// ignoringEINTR calls fn until it returns something other than EINTR (as
// the os package's helper of the same name does).
func ignoringEINTR(fn func() error) error {
	for {
		if err := fn(); err != unix.EINTR {
			return err
		}
	}
}

// fallocate calls fallocate(2), retrying on EINTR.
func fallocate(fd int, mode uint32, off, n int64) error {
	return ignoringEINTR(func() error { return unix.Fallocate(fd, mode, off, n) })
}

// fdatasync calls fdatasync(2), retrying on EINTR.
func fdatasync(fd int) error {
	return ignoringEINTR(func() error { return unix.Fdatasync(fd) })
}

const (
	modeKeepSize  = unix.FALLOC_FL_KEEP_SIZE
	modePunch     = unix.FALLOC_FL_PUNCH_HOLE | unix.FALLOC_FL_KEEP_SIZE
	modeZeroRange = unix.FALLOC_FL_ZERO_RANGE | unix.FALLOC_FL_KEEP_SIZE
)

// isNotSupported reports whether err means the filesystem lacks a
// fallocate mode.
func isNotSupported(err error) bool {
	return err == unix.EOPNOTSUPP || err == unix.ENOSYS
}

// fadviseWillNeed starts readahead of [off, off+n).
func fadviseWillNeed(fd int, off, n int64) error {
	return unix.Fadvise(fd, off, n, unix.FADV_WILLNEED)
}

// scanData calls mark for every data stretch of the first size bytes of
// the file, using SEEK_DATA/SEEK_HOLE. On a filesystem without them the
// whole file is data.
func scanData(fd int, size int64, mark func(start, end int64)) error {
	for off := int64(0); off < size; {
		d, err := unix.Seek(fd, off, unix.SEEK_DATA)
		switch {
		case err == unix.ENXIO:
			return nil // only a hole from off to the end
		case err == unix.EINVAL || err == unix.EOPNOTSUPP:
			mark(off, size)
			return nil
		case err != nil:
			return err
		}
		if d >= size {
			return nil
		}
		h, err := unix.Seek(fd, d, unix.SEEK_HOLE)
		if err != nil {
			return err
		}
		h = min(h, size)
		if h <= d { // cannot happen; avoid looping forever
			h = size
		}
		mark(d, h)
		off = h
	}
	return nil
}

// hostStatfs returns the free bytes (f_bavail), the fundamental block size
// and the total size of the filesystem holding fd.
func hostStatfs(fd int) (free, bsize, total int64, err error) {
	var st unix.Statfs_t
	if err := ignoringEINTR(func() error { return unix.Fstatfs(fd, &st) }); err != nil {
		return 0, 0, 0, err
	}
	unit := st.Frsize // the unit of the block counts; older kernels leave it 0
	if unit <= 0 {
		unit = st.Bsize
	}
	return int64(st.Bavail) * unit, unit, int64(st.Blocks) * unit, nil
}

// startWriteback asks the kernel to start writing the dirty pages of
// [off, off+n) without waiting (sync_file_range SYNC_FILE_RANGE_WRITE).
func startWriteback(fd int, off, n int64) error {
	return ignoringEINTR(func() error { return unix.SyncFileRange(fd, off, n, unix.SYNC_FILE_RANGE_WRITE) })
}
