// Package device defines the one block-device interface that every layer of
// extentd speaks: the NBD server calls it, the write-back cache implements it
// over another Device, and the backing file implements it over a sparse file.
// Layers stack like nbdkit filters over a plugin.
//
// # Ranges and units
//
// Offsets and lengths are int64 bytes; ranges are half-open [off, off+n).
// Callers (the NBD server) validate ranges against Size before calling; an
// implementation may still return ErrOutOfRange for a bad range, and must
// never panic on one.
//
// # Concurrency
//
// Every method of every implementation is safe for concurrent use by many
// goroutines. Concurrent overlapping writes land in an unspecified order, as
// on a disk.
//
// # Durability
//
// A device has a volatile write cache. Data written with WriteAt, Trim or
// Zero is durable (survives a crash of the process or the machine) only after
// a later Flush returns nil, or after SyncRange over that range returns nil.
// Flush covers every write that completed before Flush was called, from any
// caller. A failed Flush means nothing about durability; the data is not lost
// from the device and a later Flush may succeed.
//
// # Optional capabilities
//
// Trimmer, Zeroer, Extenter, RangeSyncer and Prefetcher are one-method
// interfaces found by type assertion. Their presence decides what the NBD
// server advertises (SEND_TRIM, SEND_WRITE_ZEROES, base:allocation,
// SEND_CACHE).
//
// This package imports only the standard library.
package device
