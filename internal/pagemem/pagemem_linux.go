package pagemem

import (
	"errors"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ChunkSize is the unit of Map: one x86-64 transparent huge page.
const ChunkSize = 2 << 20

// madvPopulateWrite is MADV_POPULATE_WRITE (Linux 5.14): fault in a range
// writable, in the kernel, in one call.
const madvPopulateWrite = 23

// Map returns n bytes of zeroed anonymous memory, n a multiple of ChunkSize,
// aligned to ChunkSize, advised as huge pages and populated. When the
// kernel cannot populate in one call it touches every page instead, so the
// memory is resident either way. Free it with Unmap.
func Map(n int) ([]byte, error) {
	if n <= 0 || n%ChunkSize != 0 {
		return nil, fmt.Errorf("%w: %d", ErrSize, n)
	}
	// Map one chunk more than asked and trim to the aligned part: mmap
	// aligns to the base page only, and a huge page needs 2 MiB alignment.
	// (The pointer calls, not unix.Mmap: its Munmap accepts only the exact
	// slice it returned.)
	addr, err := unix.MmapPtr(-1, 0, nil, uintptr(n+ChunkSize), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, fmt.Errorf("pagemem: mmap %d bytes: %w", n+ChunkSize, err)
	}
	head := uintptr((ChunkSize - uintptr(addr)%ChunkSize) % ChunkSize)
	if head > 0 {
		_ = unix.MunmapPtr(addr, head)
	}
	if tail := uintptr(ChunkSize) - head; tail > 0 {
		_ = unix.MunmapPtr(unsafe.Add(addr, head+uintptr(n)), tail)
	}
	b := unsafe.Slice((*byte)(unsafe.Add(addr, head)), n)
	// Huge pages are advice: with THP "never" the chunk is plain pages.
	_ = unix.Madvise(b, unix.MADV_HUGEPAGE)
	if err := unix.Madvise(b, madvPopulateWrite); err != nil {
		if !errors.Is(err, unix.EINVAL) {
			_ = Unmap(b)
			return nil, fmt.Errorf("pagemem: populate %d bytes: %w", n, err)
		}
		touch(b)
	}
	return b, nil
}

// touch writes one byte of every base page of b (a zero over a zero), for
// kernels without MADV_POPULATE_WRITE.
func touch(b []byte) {
	ps := os.Getpagesize()
	for i := 0; i < len(b); i += ps {
		b[i] = 0
	}
}

// Unmap releases memory returned by Map. b must be the whole slice Map
// returned.
func Unmap(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	if err := unix.MunmapPtr(unsafe.Pointer(unsafe.SliceData(b)), uintptr(len(b))); err != nil {
		return fmt.Errorf("pagemem: munmap %d bytes: %w", len(b), err)
	}
	return nil
}
