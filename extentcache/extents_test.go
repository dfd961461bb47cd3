package extentcache

import (
	"slices"
	"testing"

	"github.com/extentd/extentd/device"
	"github.com/extentd/extentd/device/memdev"
)

// TestExtentsMerge: dirty data is data, pending trims are hole|zero,
// pending NO_HOLE zeroes are zero, and the rest is what lower reports.
func TestExtentsMerge(t *testing.T) {
	const bs = 4096
	mem := memdev.New(64*bs, memdev.Options{})
	if _, err := mem.WriteAt(fill(1, 0, 8*bs), 0); err != nil { // lower data [0,8)
		t.Fatal(err)
	}
	c := newTestCache(t, mem, quietOptions(t))
	mustWrite(t, c, nil, fill(2, 16*bs, 4*bs), 16*bs) // dirty [16,20)
	if err := c.Trim(2*bs, 2*bs); err != nil {        // pending trim [2,4) over lower data
		t.Fatal(err)
	}
	if err := c.Zero(30*bs, 2*bs, false); err != nil { // pending NO_HOLE zero [30,32)
		t.Fatal(err)
	}
	var got []device.Extent
	if err := c.Extents(0, 64*bs, func(e device.Extent) bool { got = append(got, e); return true }); err != nil {
		t.Fatal(err)
	}
	// memdev reports holes in its own chunk size; normalize by checking
	// the flags of chosen blocks instead of exact boundaries.
	flagsAt := func(b int64) device.ExtentFlags {
		for _, e := range got {
			if b*bs >= e.Off && b*bs < e.Off+e.Len {
				return e.Flags
			}
		}
		t.Fatalf("block %d not covered by %v", b, got)
		return 0
	}
	for _, w := range []struct {
		b    int64
		want device.ExtentFlags
	}{{0, 0}, {2, device.Hole | device.Zero}, {3, device.Hole | device.Zero}, {5, 0}, {17, 0}, {30, device.Zero}, {31, device.Zero}} {
		if f := flagsAt(w.b); f != w.want {
			t.Errorf("block %d: %v, want %v (extents %v)", w.b, f, w.want, got)
		}
	}
	for i := 1; i < len(got); i++ {
		if got[i].Off != got[i-1].Off+got[i-1].Len {
			t.Fatalf("extents not consecutive: %v", got)
		}
		if got[i].Flags == got[i-1].Flags {
			t.Fatalf("adjacent extents with equal flags not merged: %v", got)
		}
	}
	if got[0].Off != 0 || slices.ContainsFunc(got, func(e device.Extent) bool { return e.Len <= 0 }) {
		t.Fatalf("bad extents %v", got)
	}
}
