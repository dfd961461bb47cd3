package extentcache

import (
	"errors"
	"path/filepath"
	"testing"

	"go.uber.org/zap/zaptest"

	"github.com/extentd/extentd/alloc"
	"github.com/extentd/extentd/device"
	"github.com/extentd/extentd/device/devicetest"
)

// alloc.Space and alloc.File provide what the cache looks for.
var (
	_ Space            = (*alloc.Space)(nil)
	_ vectorWriter     = (*alloc.File)(nil)
	_ writebackStarter = (*alloc.File)(nil)
)

func openAlloc(tb testing.TB, size, thin int64) *alloc.File {
	tb.Helper()
	f, err := alloc.Open(filepath.Join(tb.TempDir(), "img"), alloc.Options{
		Size: size, Create: true, ThinLimit: thin, ReserveMargin: alloc.NoReserveMargin, Logger: zaptest.NewLogger(tb),
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = f.Close() })
	return f
}

// TestOverAlloc runs the cache over the real backing file with its space
// accounting: reservations at write time, allocation at writeback, release
// on trim, and ENOSPC at the thin limit.
func TestOverAlloc(t *testing.T) {
	const bs, size, thin = 4096, 16 << 20, 1 << 20
	f := openAlloc(t, size, thin)
	o := quietOptions(t)
	o.Space = f.Space()
	o.MaxWritebackIO = 1 << 20 // no write below completes a window (that would write it back at once)
	c := newTestCache(t, f, o)
	model := make([]byte, size)
	mustWrite(t, c, model, fill(1, 0, 128*bs), 0)     // 512 KiB
	mustWrite(t, c, model, fill(2, 1000, 3*bs), 1000) // overwrite: free
	st := f.Space().Stats()
	if st.Reserved != 128*bs || st.Allocated != 0 {
		t.Fatalf("after writes: reserved %d allocated %d, want %d and 0", st.Reserved, st.Allocated, 128*bs)
	}
	if _, err := c.WriteAt(fill(3, 8<<20, 160*bs), 8<<20); !errors.Is(err, device.ErrNoSpace) {
		t.Fatalf("write past the thin limit: err %v, want ErrNoSpace", err)
	}
	verify(t, c, model, 0, size)
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	st = f.Space().Stats()
	if st.Reserved != 0 || st.Allocated != 128*bs {
		t.Fatalf("after flush: reserved %d allocated %d, want 0 and %d", st.Reserved, st.Allocated, 128*bs)
	}
	if err := c.Trim(0, 64*bs); err != nil {
		t.Fatal(err)
	}
	clear(model[:64*bs])
	mustWrite(t, c, model, fill(4, 8<<20, 100*bs), 8<<20) // 228 of 256 blocks
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	verify(t, c, model, 0, size)
	verify(t, f, model, 0, size)
	st = f.Space().Stats()
	if st.Reserved != 0 || st.Allocated != 164*bs {
		t.Fatalf("after trim+flush: reserved %d allocated %d, want 0 and %d", st.Reserved, st.Allocated, 164*bs)
	}
}

// TestConformanceOverAlloc runs the shared suite over the cache over the
// backing file.
func TestConformanceOverAlloc(t *testing.T) {
	devicetest.Run(t, func(t *testing.T, size int64) device.Device {
		f := openAlloc(t, size, 0)
		o := testOptions(t)
		o.Space = f.Space()
		return newTestCache(t, f, o)
	})
}
