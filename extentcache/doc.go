// Package extentcache is the write-back cache of extentd: a device.Device
// layered over another device.Device (normally the sparse backing file from
// package alloc), keeping acknowledged writes in memory and writing them back
// later in large coalesced I/Os.
//
// # What it owns
//
//   - The dirty data: fixed-size pages (Options.BlockSize), one per dirty
//     block, indexed by block number. Memory for pages is bounded by
//     Options.MaxDirty; writers wait above it (back-pressure).
//   - The state of every byte, in a statetree.Tree: Dirty (newer data in a
//     page), Writeback (a backing I/O for it is in flight), Delalloc (space
//     reserved in Options.Space, not yet allocated), Zeroed (reads as zeros;
//     the backing range still has to be trimmed or zeroed), ZeroKeep (the
//     zeroing must keep the range allocated: WRITE_ZEROES with NO_HOLE), and
//     Unsynced / UnsyncedZero (written back or zeroed in lower, kept until a
//     lower Flush or SyncRange covering it succeeds, made Dirty / Zeroed
//     again if one fails; see docs/durability.md).
//     Every range in the tree is block aligned.
//   - The clean-block cache (ristretto), tagged with per-block generations so
//     that a fill that raced with a write is never served.
//   - The writeback order: one goroutine claims clusters and issues up to
//     Options.WritebackInFlight backing I/Os at a time.
//
// See docs/writeback.md for the policy and docs/durability.md for what FLUSH,
// FUA and Close guarantee.
//
// # Concurrency
//
// Every method of Cache is safe for concurrent use. Cache.mu guards the tree,
// the page index and the writeback bookkeeping. Lock order: Cache.mu →
// Options.Space (its own mutex is a leaf), and Cache.mu → the page pool (a
// leaf). Under Cache.mu the cache calls only statetree, Space and the pool;
// it never holds Cache.mu across backing I/O, and never calls ristretto with
// it held.
//
// # Imports
//
// extentcache imports device, statetree, internal/pagemem, ristretto and
// zap. It must not
// import nbdserver or cmd, and it does not import alloc: it finds the backing
// file's optional capabilities (vectored writes, cluster allocation) by type
// assertion and takes space accounting as the Space interface.
package extentcache
