package extentcache

import (
	"math/rand/v2"
	"runtime"
	"testing"
)

// TestMemoryBounded: sustained random 4 KiB writes over a device 16x
// larger than MaxDirty+CacheSize keep the cache's memory (pages, index,
// tree, clean cache) within MaxDirty + CacheSize + 64 MiB of heap.
func TestMemoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 128 MiB")
	}
	const bs, dev = 4096, 256 << 20
	o := testOptions(t)
	o.MaxDirty = 8 << 20
	o.DirtyBackground = 2 << 20
	o.MaxWritebackIO = 1 << 20
	o.CacheSize = 8 << 20
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	c := newTestCache(t, nullDev{dev}, o)
	r := rand.New(rand.NewPCG(testSeed(t), 9))
	p := make([]byte, bs)
	q := make([]byte, bs)
	var peak uint64
	for i := 0; i < 16384; i++ {
		if _, err := c.WriteAt(p, r.Int64N(dev/bs)*bs); err != nil {
			t.Fatal(err)
		}
		if _, err := c.ReadAt(q, r.Int64N(dev/bs)*bs); err != nil {
			t.Fatal(err)
		}
		if i%4096 == 0 {
			var ms runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
			if st := c.Stats(); st.PageBytes > o.MaxDirty+o.MaxWritebackIO {
				t.Fatalf("page memory %d over MaxDirty %d", st.PageBytes, o.MaxDirty)
			}
		}
	}
	limit := before.HeapInuse + uint64(o.MaxDirty+o.CacheSize) + 64<<20
	t.Logf("heap in use: %d MiB before, peak %d MiB, limit %d MiB", before.HeapInuse>>20, peak>>20, limit>>20)
	if peak > limit {
		t.Fatalf("heap in use peaked at %d, over %d", peak, limit)
	}
}
