// Package faultdev wraps a device.Device and injects failures on command:
// I/O errors, short writes and ENOSPC on writes (WriteAt and WriteVAt),
// flushes, range syncs, allocations, trims and zeroes, with per-operation
// call and fault counters. With RecordUndo, a Drop fault on a flush or
// range sync also undoes every change since the last successful sync, as
// Linux may when fdatasync of a buffered file fails ("fsyncgate"). It is the errorfs of extentd's tests: the write-
// back cache runs over it to show that no acknowledged data is lost when the
// backing store fails.
//
// # Concurrency
//
// Every method is safe for concurrent use; faults are consumed atomically
// under one mutex, which is never held across a call to the wrapped device.
//
// It imports only device and the standard library.
package faultdev
