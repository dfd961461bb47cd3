package extentcache

import "sync/atomic"

// doorkeeper admits a clean block to the clean cache only on its second
// miss within a window: one-touch random reads (a large working set) then
// cost no allocation and no ristretto Set. It is a bitmap of hashed block
// numbers, cleared when half its bits were set. Lock-free and approximate:
// a collision or a concurrent reset only admits a block early or late.
type doorkeeper struct {
	bits  []atomic.Uint64
	mask  uint64 // len(bits) - 1
	sets  atomic.Int64
	limit int64 // reset after this many new bits
}

func newDoorkeeper(blocks int64) *doorkeeper {
	n := uint64(1024) // words: at least 64 Ki bits
	for int64(n*64) < 4*blocks && n < 1<<20 {
		n *= 2
	}
	return &doorkeeper{bits: make([]atomic.Uint64, n), mask: n - 1, limit: int64(n * 32)}
}

// admit records a miss of block b and reports whether b missed before.
func (d *doorkeeper) admit(b int64) bool {
	h := uint64(b) * 0x9E3779B97F4A7C15
	w := &d.bits[(h>>6)&d.mask]
	bit := uint64(1) << (h >> 58)
	if w.Or(bit)&bit != 0 {
		return true
	}
	if d.sets.Add(1) >= d.limit {
		d.sets.Store(0)
		for i := range d.bits {
			d.bits[i].Store(0)
		}
	}
	return false
}
