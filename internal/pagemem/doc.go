// Package pagemem maps the memory that caches keep their pages in: chunks of
// anonymous memory outside the Go heap, aligned to 2 MiB and advised as
// transparent huge pages, populated in one call before any byte is used, and
// kept until the owner unmaps them.
//
// Why not make([]byte): on a virtual machine the first touch of an anonymous
// 4 KiB page can cost far more than the work done with it. On the 2-core
// bench VM (shadow-paged, lazily backed guest memory) it measured 6-15 µs per
// 4 KiB page, against 0.2-0.3 µs per 4 KiB for a populated 2 MiB huge page
// whose memory the host had backed already, and no cost at all for memory
// touched before. A cache that takes fresh pages from the Go heap pays that
// on every page it grows by, and again whenever the runtime's scavenger has
// returned freed spans to the kernel. Chunks from Map are populated once and
// then recycled by their owner for the life of the process.
//
// # Concurrency
//
// Map and Unmap are safe for concurrent use and hold no state. Touching a
// chunk after Unmap faults; the owner must know that no reader is left.
//
// It imports golang.org/x/sys/unix and the standard library only.
package pagemem
