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

// cleanGate decides, per read, whether the clean cache is consulted at all.
// The cache pays only when it hits: a miss costs a lookup and, on a second
// miss, a copy and an insertion, on top of the lower read it did not save
// (4 KiB random reads over a working set many times its size spent a fifth
// of the server's CPU in ristretto). When fewer than 1 in gateMinRatio
// lookups of a window hit, reads go to lower directly except 1 in
// gateSample, which still look up and fill, so a working set that starts to
// fit brings the cache back. Lock-free and approximate: windows that end
// together or counts that race only move the switch a little early or late.
type cleanGate struct {
	reads   atomic.Uint64 // reads asking, for sampling while bypassed
	lookups atomic.Uint64 // blocks looked up in this window
	hits    atomic.Uint64 // of which hits
	bypass  atomic.Bool
	skipped atomic.Uint64 // reads that did not consult the cache
}

const (
	gateWindow   = 4096 // lookups per decision
	gateMinRatio = 32   // bypass below 1 hit in 32 lookups
	gateSample   = 32   // while bypassed, 1 read in 32 still uses the cache
)

// use reports whether this read consults the clean cache.
func (g *cleanGate) use() bool {
	if !g.bypass.Load() || g.reads.Add(1)%gateSample == 0 {
		return true
	}
	g.skipped.Add(1)
	return false
}

// record adds the lookups and hits of one read that used the cache and
// decides at the end of each window.
func (g *cleanGate) record(lookups, hits uint64) {
	if lookups == 0 {
		return
	}
	h := g.hits.Add(hits)
	if l := g.lookups.Add(lookups); l >= gateWindow {
		g.lookups.Store(0)
		g.hits.Store(0)
		g.bypass.Store(h*gateMinRatio < l)
	}
}
