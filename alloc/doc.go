// Package alloc is the backing store of extentd: a Device over a sparse raw
// image file, and the space accounting (delayed allocation) that lets the
// write-back cache promise space at write time and use it at writeback.
//
// It is the only package that knows about holes and host free space.
//
// # File
//
// File implements device.Device, Trimmer, FastZeroer, Extenter,
// RangeSyncer and Prefetcher over one regular file opened with pread/pwrite
// (optionally O_DIRECT). It keeps an allocation map of the file, one entry
// per host filesystem block: built with SEEK_DATA/SEEK_HOLE at Open, kept up
// to date by every write, fallocate and punch. ReadAt serves ranges the map
// knows to be holes as zeros without a system call, and Extents answers
// base:allocation from the map alone.
//
// # Space
//
// Space is the two halves of delayed allocation (btrfs delalloc-space.c):
// Reserve (at NBD_CMD_WRITE, in the cache) charges the blocks of a range that
// are neither allocated nor reserved, all or nothing, against a capacity of
// min(ThinLimit, what the file holds + host free space − ReserveMargin);
// File.WriteAt/WriteVAt/Allocate turn reservations into allocations;
// Release drops reservations of data that will never be written back.
//
// # Concurrency
//
// Every method of File and Space is safe for concurrent use. Space.mu is a
// leaf lock: callers (extentcache.Cache.mu) may hold their own lock while
// calling Space, and Space never calls out while holding it. File never
// holds Space.mu across a system call. With DirectIO, unaligned writes
// serialise against all other writes of the File (read-modify-write of the
// edge blocks), aligned ones run in parallel.
//
// # Durability
//
// Flush and SyncRange call fdatasync(2), which also persists the block
// allocation metadata needed to read the data back (sync_file_range(2) does
// not, and is not used). See docs/alloc.md.
//
// # Platform and imports
//
// Linux only (fallocate, SEEK_DATA, O_DIRECT, posix_fadvise). alloc imports
// device, golang.org/x/sys/unix, zap and the statetree package; it must not
// import extentcache or nbdserver (deps_test.go).
package alloc
