// Package memdev is an in-memory, sparse device.Device for tests: the
// reference device that conformance, server and cache tests run on.
//
// It stores data in 64 KiB chunks allocated on first write, so a large
// device costs memory only for what was written. It implements every
// optional capability of package device.
//
// A Crashable Dev keeps the durable image (what Flush and SyncRange made
// durable) apart from the current one, and Crash returns a new Dev holding
// only the durable data, as pebble's vfs.NewCrashableMem does. InjectFault
// makes chosen operations fail, for fault-injection tests.
//
// All methods are safe for concurrent use. This package imports only the
// standard library and package device.
package memdev
