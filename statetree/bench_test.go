package statetree

import (
	"math/rand/v2"
	"runtime"
	"testing"
)

const benchBS = 4096

// tenKTree returns a 1 GiB tree of 4 KiB blocks holding 10,000 Dirty|Delalloc
// records, 4 blocks long and 26 blocks apart, and a list of random ops over
// it: each op is (start block, blocks) for a Set of Writeback followed by a
// Clear of it, so the tree returns to the same shape after each pair while
// splitting, merging, inserting into gaps and removing records.
func tenKTree() (*Tree, [][2]int64) {
	const blocks = 1 << 18
	tr := New(Options{Size: blocks * benchBS, BlockSize: benchBS})
	for i := int64(0); i < 10000; i++ {
		b := i * 26
		tr.Set(b*benchBS, (b+4)*benchBS, Dirty|Delalloc, 0)
	}
	r := rand.New(rand.NewPCG(1, 2))
	ops := make([][2]int64, 1<<14)
	for i := range ops {
		a := r.Int64N(10000 * 26)
		ops[i] = [2]int64{a * benchBS, (a + 1 + r.Int64N(2)) * benchBS}
	}
	return tr, ops
}

// BenchmarkSetClear measures single-goroutine Set and Clear; one op is one
// Set or one Clear. Each Clear undoes the Set made 8 ops earlier, so
// consecutive ops touch unrelated places (no help from the last-leaf hint)
// while the tree keeps its size: 10,000 ranges (the target), and 1,000,000
// to show how it scales.
func BenchmarkSetClear(b *testing.B) {
	b.Run("ranges=10k", func(b *testing.B) {
		tr, ops := tenKTree()
		benchSetClear(b, tr, ops)
	})
	b.Run("ranges=1M", func(b *testing.B) {
		tr := millionTree()
		r := rand.New(rand.NewPCG(9, 10))
		ops := make([][2]int64, 1<<14)
		for i := range ops {
			a := r.Int64N(tr.Size()/benchBS - 2)
			ops[i] = [2]int64{a * benchBS, (a + 1 + r.Int64N(2)) * benchBS}
		}
		benchSetClear(b, tr, ops)
	})
}

func benchSetClear(b *testing.B, tr *Tree, ops [][2]int64) {
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		j := i >> 1
		if i&1 == 0 {
			o := ops[j&(len(ops)-1)]
			tr.Set(o[0], o[1], Writeback, 0)
		} else {
			o := ops[(j-4)&(len(ops)-1)]
			tr.Clear(o[0], o[1], Writeback)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
	b.ReportMetric(float64(tr.Len()), "ranges")
}

// BenchmarkWriteCycle measures the cache's cycle on 1-4 blocks at random over
// the 10,000-range tree: SetRecord(Dirty|Delalloc) with a reused ChangeSet,
// Convert(Writeback, Dirty), Clear(Writeback|Delalloc). One op is one call.
func BenchmarkWriteCycle(b *testing.B) {
	tr, ops := tenKTree()
	tr.Clear(0, tr.Size(), Dirty|Delalloc)
	for i := int64(0); i < 10000; i++ {
		tr.Set(i*26*benchBS, (i*26+4)*benchBS, Zeroed, 0)
	}
	var cs ChangeSet
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		o := ops[(i/3)&(len(ops)-1)]
		switch i % 3 {
		case 0:
			cs.Reset()
			tr.SetRecord(o[0], o[1], Dirty|Delalloc, 1, &cs)
		case 1:
			tr.Convert(o[0], o[1], Writeback, Dirty)
		case 2:
			tr.Clear(o[0], o[1], Writeback|Delalloc)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

// BenchmarkGet measures a lookup at a random offset in the 10,000-range tree.
func BenchmarkGet(b *testing.B) {
	tr, ops := tenKTree()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tr.Get(ops[i&(len(ops)-1)][0])
	}
}

// heapInUse returns the live heap after a full collection.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// BenchmarkMemoryPerRange builds a tree of 1,000,000 one-block ranges (every
// other block, so none merge) and reports the heap it holds per range.
// "sequential" inserts in offset order, "random" in a random order.
func BenchmarkMemoryPerRange(b *testing.B) {
	const n = 1_000_000
	for _, order := range []string{"sequential", "random"} {
		b.Run(order, func(b *testing.B) {
			idx := make([]int64, n)
			for i := range idx {
				idx[i] = int64(i) * 2
			}
			if order == "random" {
				r := rand.New(rand.NewPCG(3, 4))
				r.Shuffle(n, func(i, j int) { idx[i], idx[j] = idx[j], idx[i] })
			}
			var perRange float64
			for i := 0; i < b.N; i++ {
				before := heapInUse()
				tr := New(Options{Size: 2 * n * benchBS, BlockSize: benchBS})
				for _, x := range idx {
					tr.Set(x*benchBS, (x+1)*benchBS, Dirty, 0)
				}
				after := heapInUse()
				if tr.Len() != n {
					b.Fatalf("Len %d", tr.Len())
				}
				perRange = float64(after-before) / n
				runtime.KeepAlive(tr)
			}
			b.ReportMetric(perRange, "B/range")
		})
	}
}

// BenchmarkCluster measures Cluster(Dirty, avoid Writeback|Locked, 32 MiB,
// aligned 32 MiB) from random dirty offsets of a 64 GiB device.
//
// "typical" has about 10,000 records: dirty runs of 4 KiB to 8 MiB, some
// with owners or Writeback pieces that split them. "fragmented-64KiB" is a
// fully dirty device whose owner alternates every 64 KiB, so every 32 MiB
// window holds 512 records: Cluster costs O(records in the window).
func BenchmarkCluster(b *testing.B) {
	const (
		size = 64 << 30
		mib  = 1 << 20
	)
	b.Run("typical", func(b *testing.B) {
		tr := New(Options{Size: size, BlockSize: benchBS})
		r := rand.New(rand.NewPCG(5, 6))
		for off := int64(0); off < size-16*mib && tr.Len() < 10000; {
			l := (1 + r.Int64N(2048)) * benchBS
			tr.Set(off, off+l, Dirty|Delalloc, uint32(r.IntN(2)))
			if r.IntN(4) == 0 {
				w := off + r.Int64N(l/benchBS)*benchBS
				tr.Convert(w, w+benchBS, Writeback, Dirty)
			}
			off += l
			if r.IntN(3) == 0 {
				off += (1 + r.Int64N(512)) * benchBS
			}
		}
		benchCluster(b, tr, r)
	})
	b.Run("fragmented-64KiB", func(b *testing.B) {
		const piece = 64 << 10
		tr := New(Options{Size: 1 << 30, BlockSize: benchBS})
		for off := int64(0); off < tr.Size(); off += piece {
			tr.Set(off, off+piece, Dirty, uint32(off/piece%2))
		}
		benchCluster(b, tr, rand.New(rand.NewPCG(7, 8)))
	})
}

func benchCluster(b *testing.B, tr *Tree, r *rand.Rand) {
	const mib = 1 << 20
	offs := make([]int64, 1<<12)
	for i := range offs {
		for {
			x := r.Int64N(tr.Size())
			if rg, ok := tr.FindFirst(x, Dirty); ok {
				offs[i] = max(x, rg.Start)
				if rg.Bits&Writeback == 0 {
					break
				}
			}
		}
	}
	var total int64
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s, e, ok := tr.Cluster(offs[i&(len(offs)-1)], Dirty, Writeback|Locked, 32*mib, 32*mib)
		if !ok {
			b.Fatal("no cluster")
		}
		total += e - s
	}
	b.ReportMetric(float64(total)/float64(b.N)/mib, "MiB/cluster")
	b.ReportMetric(float64(tr.Len()), "ranges")
}

// millionTree returns a tree with 1,000,000 one-block Dirty ranges on every
// other block.
func millionTree() *Tree {
	const n = 1_000_000
	tr := New(Options{Size: 2 * n * benchBS, BlockSize: benchBS})
	for x := int64(0); x < n; x++ {
		tr.Set(2*x*benchBS, (2*x+1)*benchBS, Dirty, 0)
	}
	return tr
}

// BenchmarkBulk measures whole-device mutations of a 1,000,000-range tree:
// the time the caller's lock is held by one atomic op (a full-device TRIM
// or WRITE_ZEROES). One op is one whole-device call.
func BenchmarkBulk(b *testing.B) {
	for _, tc := range []struct {
		name string
		f    func(*Tree)
	}{
		{"clear-all", func(tr *Tree) { tr.Clear(0, tr.Size(), Dirty) }},
		{"set-all", func(tr *Tree) { tr.Set(0, tr.Size(), Zeroed, 0) }},
		{"set-present", func(tr *Tree) { tr.Set(0, tr.Size()/2, Dirty|Delalloc, 0) }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			base := millionTree()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				tr := base.Clone()
				b.StartTimer()
				tc.f(tr)
			}
		})
	}
}
