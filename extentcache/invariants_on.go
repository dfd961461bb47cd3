//go:build invariants

package extentcache

// invariants turns on the full Check after every write, zero and writeback
// completion (expensive: it walks the whole tree and index).
const invariants = true
