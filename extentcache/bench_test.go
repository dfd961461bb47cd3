package extentcache

import (
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/extentd/extentd/device/memdev"
)

// nullDev is a lower device that stores nothing and reads zeros: it
// isolates the cache's own cost.
type nullDev struct{ size int64 }

func (d nullDev) Size() int64                           { return d.size }
func (d nullDev) ReadAt(p []byte, _ int64) (int, error) { clear(p); return len(p), nil }
func (d nullDev) WriteAt(p []byte, _ int64) (int, error) {
	return len(p), nil
}
func (d nullDev) WriteVAt(bufs [][]byte, _ int64) (int, error) {
	n := 0
	for _, b := range bufs {
		n += len(b)
	}
	return n, nil
}
func (d nullDev) Flush() error { return nil }

// cpuMeter reports the process CPU time (user+system, every goroutine,
// writeback included) per operation as "cpu-ns/op": unlike ns/op it does not
// grow when the machine is busy with other work.
type cpuMeter struct{ start int64 }

func cpuNow() int64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}

func startCPU(b *testing.B) *cpuMeter {
	b.Helper()
	b.ResetTimer()
	return &cpuMeter{start: cpuNow()}
}

func (m *cpuMeter) stop(b *testing.B) {
	b.StopTimer()
	b.ReportMetric(float64(cpuNow()-m.start)/float64(b.N), "cpu-ns/op")
}

func benchOptions() Options {
	return Options{Logger: zap.NewNop(), WritebackAge: time.Hour}
}

func newBenchCache(b *testing.B, lower interface {
	Size() int64
}, opts Options) *Cache {
	b.Helper()
	var c *Cache
	var err error
	switch l := lower.(type) {
	case nullDev:
		c, err = New(l, opts)
	case *memdev.Dev:
		c, err = New(l, opts)
	}
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close() })
	return c
}

// BenchmarkWriteAt measures 4 KiB writes at random aligned offsets over a
// 1 GiB device (null lower): steady state with writeback running.
func BenchmarkWriteAt(b *testing.B) {
	for _, tc := range []struct {
		name string
		size int
		odd  bool
	}{{"4k-aligned", 4096, false}, {"4k-unaligned", 4096, true}, {"512-unaligned", 512, true}, {"64k-aligned", 64 << 10, false}} {
		b.Run(tc.name, func(b *testing.B) {
			const dev = 1 << 30
			c := newBenchCache(b, nullDev{dev}, benchOptions())
			p := make([]byte, tc.size)
			r := rand.New(rand.NewPCG(1, 2))
			b.SetBytes(int64(tc.size))
			b.ReportAllocs()
			m := startCPU(b)
			for i := 0; i < b.N; i++ {
				off := r.Int64N(dev/int64(tc.size)-1) * int64(tc.size)
				if tc.odd {
					off += 333
				}
				if _, err := c.WriteAt(p, off); err != nil {
					b.Fatal(err)
				}
			}
			m.stop(b)
		})
	}
}

// BenchmarkReadAt measures 4 KiB reads: of dirty blocks (memory), of
// clean blocks in the clean cache (hit), and of clean blocks from lower
// (miss: memdev, which copies).
func BenchmarkReadAt(b *testing.B) {
	const bs, span = 4096, 16 << 20
	b.Run("dirty", func(b *testing.B) {
		c := newBenchCache(b, nullDev{1 << 30}, benchOptions())
		p := make([]byte, bs)
		for off := int64(0); off < span; off += bs {
			if _, err := c.WriteAt(p, off); err != nil {
				b.Fatal(err)
			}
		}
		benchReads(b, c, span)
	})
	b.Run("hit", func(b *testing.B) {
		o := benchOptions()
		o.CacheSize = 2 * span
		c := newBenchCache(b, memdev.New(1<<30, memdev.Options{}), o)
		p := make([]byte, bs)
		for off := int64(0); off < span; off += bs {
			if _, err := c.ReadAt(p, off); err != nil {
				b.Fatal(err)
			}
		}
		c.clean.Wait()
		for off := int64(0); off < span; off += bs { // admitted after a second touch
			if _, err := c.ReadAt(p, off); err != nil {
				b.Fatal(err)
			}
		}
		c.clean.Wait()
		benchReads(b, c, span)
		if st := c.Stats(); b.N > 1000 && st.Hits < st.Misses {
			b.Logf("hits %d < misses %d", st.Hits, st.Misses)
		}
	})
	b.Run("miss", func(b *testing.B) {
		o := benchOptions()
		o.CacheSize = -1
		c := newBenchCache(b, memdev.New(1<<30, memdev.Options{}), o)
		benchReads(b, c, 1<<30)
	})
}

func benchReads(b *testing.B, c *Cache, span int64) {
	p := make([]byte, 4096)
	r := rand.New(rand.NewPCG(3, 4))
	b.SetBytes(4096)
	b.ReportAllocs()
	m := startCPU(b)
	for i := 0; i < b.N; i++ {
		if _, err := c.ReadAt(p, r.Int64N(span/4096)*4096); err != nil {
			b.Fatal(err)
		}
	}
	m.stop(b)
}

// BenchmarkWritebackCluster measures writing 8 MiB of contiguous dirty
// data back (one cluster: 2048 pages, 2 vectored writes of 1024 iovecs)
// to a null device, via Flush.
func BenchmarkWritebackCluster(b *testing.B) {
	const n = 8 << 20
	c := newBenchCache(b, nullDev{1 << 30}, benchOptions())
	p := make([]byte, n)
	b.SetBytes(n)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		if _, err := c.WriteAt(p, 0); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if err := c.Flush(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFlushW5 mimics fio W5: 32 random 4 KiB writes, then a Flush.
func BenchmarkFlushW5(b *testing.B) {
	c := newBenchCache(b, nullDev{4 << 30}, benchOptions())
	p := make([]byte, 4096)
	r := rand.New(rand.NewPCG(5, 6))
	b.SetBytes(32 * 4096)
	b.ReportAllocs()
	m := startCPU(b)
	defer m.stop(b)
	for i := 0; i < b.N; i++ {
		for range 32 {
			if _, err := c.WriteAt(p, r.Int64N(1<<20)*4096); err != nil {
				b.Fatal(err)
			}
		}
		if err := c.Flush(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReadAtMissFill measures 4 KiB random reads of written, clean
// data over a 1 GiB memdev, with the clean cache on (every miss fills it)
// and off.
func BenchmarkReadAtMissFill(b *testing.B) {
	const span = 256 << 20
	mem := memdev.New(1<<30, memdev.Options{})
	p := make([]byte, 1<<20)
	for off := int64(0); off < span; off += int64(len(p)) {
		if _, err := mem.WriteAt(p, off); err != nil {
			b.Fatal(err)
		}
	}
	for _, cs := range []int64{-1, 64 << 20} {
		b.Run(map[bool]string{true: "cache-on", false: "cache-off"}[cs > 0], func(b *testing.B) {
			o := benchOptions()
			o.CacheSize = cs
			c := newBenchCache(b, mem, o)
			benchReads(b, c, span)
		})
	}
}
