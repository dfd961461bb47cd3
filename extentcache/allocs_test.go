package extentcache

import (
	"testing"

	"github.com/extentd/extentd/device/memdev"
)

// TestAllocs pins the steady-state allocation budget of the data path:
// WriteAt (new and already-dirty blocks, aligned or not) and ReadAt (dirty,
// zeroed, clean-cache hit) allocate nothing.
func TestAllocs(t *testing.T) {
	if testing.CoverMode() != "" || raceEnabled {
		t.Skip("coverage and race instrumentation allocate")
	}
	const bs = 4096
	o := quietOptions(t)
	o.CacheSize = 4 << 20
	c := newTestCache(t, memdev.New(64<<20, memdev.Options{}), o)
	p := make([]byte, bs)
	small := make([]byte, 100)
	// Warm up: pages, index chunks, tree leaves and the age queue exist.
	for round := 0; round < 2; round++ {
		for b := int64(0); b < 512; b++ {
			mustWrite(t, c, nil, p, b*2*bs)
		}
		if err := c.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	var next int64
	check := func(name string, want float64, fn func()) {
		t.Helper()
		if got := testing.AllocsPerRun(200, fn); got > want {
			t.Errorf("%s: %.2f allocs per call, want <= %v", name, got, want)
		}
	}
	check("WriteAt new block", 0, func() {
		next = (next + 1) % 512
		if _, err := c.WriteAt(p, next*2*bs); err != nil {
			t.Fatal(err)
		}
	})
	check("WriteAt dirty block", 0, func() {
		if _, err := c.WriteAt(p, 2*bs); err != nil {
			t.Fatal(err)
		}
	})
	check("WriteAt unaligned dirty", 0, func() {
		if _, err := c.WriteAt(small, 2*bs+77); err != nil {
			t.Fatal(err)
		}
	})
	check("TryWriteAt dirty block", 0, func() {
		if done, err := c.TryWriteAt(p, 2*bs); !done || err != nil {
			t.Fatalf("TryWriteAt: %v %v", done, err)
		}
	})
	check("TryReadAt dirty", 0, func() {
		if done, err := c.TryReadAt(p, 2*bs); !done || err != nil {
			t.Fatalf("TryReadAt: %v %v", done, err)
		}
	})
	check("ReadAt dirty", 0, func() {
		if _, err := c.ReadAt(p, 2*bs); err != nil {
			t.Fatal(err)
		}
	})
	check("ReadAt unaligned dirty", 0, func() {
		if _, err := c.ReadAt(small, 2*bs+1000); err != nil {
			t.Fatal(err)
		}
	})
	if err := c.Trim(40<<20, 1<<20); err != nil {
		t.Fatal(err)
	}
	check("ReadAt zeroed", 0, func() {
		if _, err := c.ReadAt(p, 40<<20+bs); err != nil {
			t.Fatal(err)
		}
	})
	// Clean-cache hits: fill, wait for admission, then read.
	for i := 0; i < 3; i++ {
		if _, err := c.ReadAt(p, 50<<20); err != nil {
			t.Fatal(err)
		}
		c.clean.Wait()
	}
	h := c.Stats().Hits
	check("ReadAt clean hit", 0, func() {
		if _, err := c.ReadAt(p, 50<<20); err != nil {
			t.Fatal(err)
		}
	})
	if c.Stats().Hits == h {
		t.Error("clean-hit case did not hit the clean cache")
	}
}
