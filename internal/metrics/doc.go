// Package metrics exposes extentd's Prometheus metrics on a registry of its
// own (never the global one).
//
// Request metrics arrive through Metrics.Request, ConnOpened and ConnClosed,
// which cmd/extentd calls from its nbdserver.Observer adapter; this package
// does not import nbdserver (only cmd/ does). Gauges that describe state
// (dirty, writeback, reserved and allocated bytes, cache hits) are read at
// scrape time from a StatsFunc per export, so nothing is polled in the
// background. Instrument wraps the backing device to time its flushes and
// measure the size of every write that reaches it (the writeback I/O size
// when a cache sits above it).
//
// # Concurrency
//
// Every method is safe for concurrent use. The request path takes no lock:
// per-command children are looked up once and cached in a sync.Map.
//
// It imports device, prometheus/client_golang and the standard library.
package metrics
