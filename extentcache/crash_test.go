package extentcache

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/extentd/extentd/device/memdev"
)

// TestCrash runs random operations over a crashable memdev with background
// writeback running, and takes crash images at random points (whether
// writeback is idle or mid-way). Every byte that has not changed since it
// was last made durable (by a successful Flush, or a SyncRange over it)
// must be in the crash image with that value.
func TestCrash(t *testing.T) {
	t.Run("cached", func(t *testing.T) { testCrash(t, 0) })
	t.Run("writethrough", func(t *testing.T) { testCrash(t, 32<<10) })
}

// testCrash is TestCrash with Options.WriteThroughMin set to through.
func testCrash(t *testing.T, through int64) {
	seed := testSeed(t)
	r := rand.New(rand.NewPCG(seed, 7))
	const size = 2<<20 + 512
	mem := memdev.New(size, memdev.Options{Crashable: true})
	opts := testOptions(t)
	opts.WritebackAge = 2 * time.Millisecond
	opts.WriteThroughMin = through
	c := newTestCache(t, mem, opts)
	model := make([]byte, size)
	allTrue := make([]bool, size)
	for i := range allTrue {
		allTrue[i] = true
	}
	stable := slices.Clone(allTrue) // byte unchanged since it was last made durable
	markChanged := func(off, n int64) { clear(stable[off : off+n]) }
	markDurable := func(off, n int64) { copy(stable[off:off+n], allTrue) }
	ops := 1500
	if testing.Short() {
		ops = 400
	}
	crashes := 0
	for i := 0; i < ops; i++ {
		off, n := randRange(r, size)
		switch k := r.IntN(100); {
		case k < 55:
			p := fill(byte(i), off, int(n))
			mustWrite(t, c, model, p, off)
			markChanged(off, n)
		case k < 65:
			if err := c.Zero(off, n, r.IntN(3) > 0); err != nil {
				t.Fatal(err)
			}
			clear(model[off : off+n])
			markChanged(off, n)
		case k < 72:
			if err := c.Flush(); err != nil {
				t.Fatalf("Flush: %v", err)
			}
			markDurable(0, size)
		case k < 80:
			if err := c.SyncRange(off, n); err != nil {
				t.Fatalf("SyncRange: %v", err)
			}
			markDurable(off, n)
		default:
			if r.IntN(4) == 0 {
				time.Sleep(time.Duration(r.IntN(3000)) * time.Microsecond) // let writeback run
			}
		}
		if r.IntN(60) == 0 || i == ops-1 {
			crashes++
			checkCrash(t, mem.Crash(), model, stable, i)
		}
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	markDurable(0, size)
	checkCrash(t, mem.Crash(), model, stable, ops)
	t.Logf("%d crash images checked, %d write-throughs", crashes+1, c.Stats().WriteThroughs)
	if through > 0 && c.Stats().WriteThroughs == 0 {
		t.Error("no write went through: the test does not exercise write-through")
	}
}

func checkCrash(tb testing.TB, crashed *memdev.Dev, model []byte, stable []bool, op int) {
	tb.Helper()
	img := make([]byte, len(model))
	if _, err := crashed.ReadAt(img, 0); err != nil {
		tb.Fatal(err)
	}
	for c := 0; c < len(img); c += 4096 {
		e := min(c+4096, len(img))
		if bytes.Equal(img[c:e], model[c:e]) {
			continue
		}
		for i := c; i < e; i++ {
			if stable[i] && img[i] != model[i] {
				tb.Fatalf("crash after op %d: durable byte at %d is %d in the crash image, want %d", op, i, img[i], model[i])
			}
		}
	}
}
