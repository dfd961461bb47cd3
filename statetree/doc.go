// Package statetree is the extent state tree of extentd, in the style of the
// btrfs extent_io_tree: a set of non-overlapping half-open byte ranges
// [Start, End), each carrying a bit mask of states (Dirty, Delalloc,
// Writeback, Locked, Zeroed, and caller-defined bits) and a small owner tag.
// The cache uses it to know which ranges are dirty, delalloc, under
// writeback or locked; writeback uses it to start from any dirty byte, find
// its cluster and claim one large I/O with a single Convert.
//
// It is a pure data structure: no I/O, no logging, no goroutines.
//
// # Ranges
//
// Ranges are half-open [start, end) in int64 bytes. btrfs uses an inclusive
// end ([start, end]); we do not, so there is no "end == (u64)-1" special
// case anywhere. Mutation offsets must be multiples of Options.BlockSize and
// lie within [0, Options.Size); misuse panics naming the invariant. A
// mutation with start == end is a no-op. Queries accept any offsets and
// clip them to the device.
//
// # Concurrency contract
//
// A Tree has no lock of its own and is not safe for concurrent use; it is
// owned by the caller's mutex (in extentd, extentcache.Cache.mu), and every
// method must be called with that mutex held. Read-only methods (Get,
// FindFirst, FindFirstMatch, FindFirstClear, FindContiguous, Cluster,
// Count, TestAll, TestAny, Union, Ascend, AscendRecords, Ranges, Bytes,
// Len, Gen, Size, BlockSize, Waiters, Clone, Check) never modify the Tree,
// so they may run concurrently with each other (for instance under a
// sync.RWMutex read lock) but not with anything else.
//
// Lock and WaitClear are the only methods that block. They are called with
// Options.Locker held and release it while they sleep, like sync.Cond.Wait;
// they are woken only by a mutation that clears a bit they wait for on a
// byte of their range, and they honour ctx cancellation, after which nothing
// is left locked. Waiting holds nothing: a caller must not hold another
// Locked range or an unsubmitted writeback batch while it waits (the btrfs
// deadlocks in the research note, section 2.3). Lock order: the caller's
// mutex is the only lock; the Tree calls no code that takes another.
//
// Every mutation is atomic and all-or-nothing: the Tree never drops the
// caller's lock in the middle of an operation, validates its arguments
// before changing anything, and cannot fail part-way.
//
// Callbacks passed to Ascend must not mutate the Tree.
//
// # Imports
//
// This package imports only the standard library (deps_test.go enforces
// it): no zap, no ristretto, no other extentd package.
package statetree
