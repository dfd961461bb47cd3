package extentcache

import (
	"bytes"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/extentd/extentd/device"
)

// holeyDev is a countingDev that reports as holes (device.Extenter) the
// blocks never written, like a sparse file.
type holeyDev struct {
	*countingDev
	written map[int64]bool // block → ever written; under countingDev.mu
}

func newHoleyDev(size int64) *holeyDev {
	return &holeyDev{countingDev: newCountingDev(size), written: map[int64]bool{}}
}

func (d *holeyDev) WriteAt(p []byte, off int64) (int, error) {
	return d.WriteVAt([][]byte{p}, off)
}

func (d *holeyDev) WriteVAt(bufs [][]byte, off int64) (int, error) {
	n, err := d.countingDev.WriteVAt(bufs, off)
	d.mu.Lock()
	for b := off / 4096; b < (off+int64(n)+4095)/4096; b++ {
		d.written[b] = true
	}
	d.mu.Unlock()
	return n, err
}

func (d *holeyDev) Extents(off, n int64, yield func(device.Extent) bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	for cur, end := off, off+n; cur < end; {
		data := d.written[cur/4096]
		e := cur
		for e < end && d.written[e/4096] == data {
			e = (e/4096 + 1) * 4096
		}
		e = min(e, end)
		var f device.ExtentFlags
		if !data {
			f = device.Hole | device.Zero
		}
		if !yield(device.Extent{Off: cur, Len: e - cur, Flags: f}) {
			return nil
		}
		cur = e
	}
	return nil
}

// TestWritebackFillGaps: holes of at most FillGap between dirty runs of a
// cluster go out as zeros in the same write, but only over holes of lower
// that the cache holds no state for, within one MaxWritebackIO window, and
// never writing more zeros than dirty bytes.
func TestWritebackFillGaps(t *testing.T) {
	const bs = 4096
	cases := []struct {
		name      string
		dirty     []int64
		allocated []int64 // blocks written to lower before the cache
		want      []ioRange
	}{
		{"one-block holes", []int64{0, 2, 4}, nil, []ioRange{{0, 5 * bs}}},
		{"hole over FillGap", []int64{0, 1, 7, 8}, nil, []ioRange{{0, 2 * bs}, {7 * bs, 2 * bs}}},
		{"hole at FillGap", []int64{0, 1, 2, 3, 8, 9, 10, 11}, nil, []ioRange{{0, 12 * bs}}},
		{"allocated in lower", []int64{0, 1, 4, 5}, []int64{2, 3}, []ioRange{{0, 2 * bs}, {4 * bs, 2 * bs}}},
		{"zeros up to the dirty bytes", []int64{0, 3}, nil, []ioRange{{0, 4 * bs}}},
		{"no more zeros than dirty bytes", []int64{0, 4}, nil, []ioRange{{0, bs}, {4 * bs, bs}}},
		{"window boundary", []int64{14, 15, 17, 18}, nil, []ioRange{{14 * bs, 2 * bs}, {17 * bs, 2 * bs}}},
		{"chain", []int64{0, 2, 3, 5, 6, 9}, nil, []ioRange{{0, 10 * bs}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			lower := newHoleyDev(1 << 20)
			for _, b := range tc.allocated {
				if _, err := lower.WriteAt(fill(0xEE, b*bs, bs), b*bs); err != nil {
					t.Fatal(err)
				}
			}
			lower.takeWrites()
			o := quietOptions(t) // MaxWritebackIO 16 blocks
			o.FillGap = 4 * bs
			c := newTestCache(t, lower, o)
			for _, b := range slices.Backward(tc.dirty) {
				mustWrite(t, c, nil, fill(byte(b), b*bs, bs), b*bs)
			}
			if err := c.Flush(); err != nil {
				t.Fatal(err)
			}
			got := lower.takeWrites()
			slices.SortFunc(got, func(a, b ioRange) int { return int(a.off - b.off) })
			if !slices.Equal(got, tc.want) {
				t.Fatalf("lower writes\n got %v\nwant %v", got, tc.want)
			}
			// Every block reads back as written, allocated blocks as they
			// were, and filled holes as zeros, through the cache and in lower.
			img := lower.image()
			for b := int64(0); b < 20; b++ {
				want := make([]byte, bs)
				switch {
				case slices.Contains(tc.dirty, b):
					want = fill(byte(b), b*bs, bs)
				case slices.Contains(tc.allocated, b):
					want = fill(0xEE, b*bs, bs)
				}
				if !bytes.Equal(img[b*bs:(b+1)*bs], want) {
					t.Errorf("lower block %d differs", b)
				}
				got := make([]byte, bs)
				if _, err := c.ReadAt(got, b*bs); err != nil || !bytes.Equal(got, want) {
					t.Errorf("cache block %d differs (err %v)", b, err)
				}
			}
			if st := c.Stats(); st.DirtyBytes != 0 || st.PageBytes != 0 || st.WritebackBytes != 0 {
				t.Fatalf("stats after flush: %+v", st)
			}
		})
	}
}

// holeAtBlock1 returns a cache (FillGap 4 blocks) over a holey device with
// blocks 0 and 2 dirty (patterns tag0 and tag2) and block 1 a hole.
func holeAtBlock1(t *testing.T, tag0, tag2 byte) (*holeyDev, *Cache) {
	const bs = 4096
	lower := newHoleyDev(1 << 20)
	o := quietOptions(t)
	o.FillGap = 4 * bs
	c := newTestCache(t, lower, o)
	mustWrite(t, c, nil, fill(tag0, 0, bs), 0)
	mustWrite(t, c, nil, fill(tag2, 2*bs, bs), 2*bs)
	return lower, c
}

// TestWritebackFillGapNotOverZeroed: a hole the cache has state for (here
// Zeroed by a trim not yet written back) is not filled.
func TestWritebackFillGapNotOverZeroed(t *testing.T) {
	const bs = 4096
	lower, c := holeAtBlock1(t, 1, 2)
	if err := c.Trim(bs, bs); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, w := range lower.takeWrites() {
		if w.n > bs {
			t.Fatalf("write %v spans the trimmed block", w)
		}
	}
}

// TestWritebackFillGapRace: a write into a hole while the hole's zeros are
// in flight must win: it is written after the fill, never overwritten by it.
func TestWritebackFillGapRace(t *testing.T) {
	const bs = 4096
	lower, c := holeAtBlock1(t, 1, 3)
	gate := make(chan struct{})
	release := sync.OnceFunc(func() { close(gate) })
	t.Cleanup(release) // a failing check must not leave writeback stuck
	lower.setGate(gate)
	flushed := make(chan error, 1)
	go func() { flushed <- c.Flush() }()
	// Wait until the filled cluster is in flight.
	deadline := time.Now().Add(10 * time.Second)
	for c.Stats().WritebackBytes == 0 {
		if time.Now().After(deadline) {
			t.Fatal("writeback never started")
		}
		time.Sleep(time.Millisecond)
	}
	if got := c.Stats().WritebackBytes; got != 3*bs {
		t.Fatalf("%d bytes in writeback, want the filled cluster of %d", got, 3*bs)
	}
	mustWrite(t, c, nil, fill(2, bs, bs), bs) // into the hole being zeroed
	release()
	if err := <-flushed; err != nil {
		t.Fatal(err)
	}
	lower.setGate(nil)
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	img := lower.image()
	for b := int64(0); b < 3; b++ {
		if !bytes.Equal(img[b*bs:(b+1)*bs], fill(byte(b+1), b*bs, bs)) {
			t.Errorf("lower block %d lost its data", b)
		}
	}
}

// TestWritebackFilledPieces: a cluster with filled holes larger than
// filledIO goes out in aligned pieces of at most filledIO (small page-cache
// folios), adjacent and in order; a cluster without holes stays one write.
func TestWritebackFilledPieces(t *testing.T) {
	const bs = 4096
	lower := newHoleyDev(4 << 20)
	o := quietOptions(t)
	o.MaxWritebackIO = 1 << 20
	o.FillGap = 4 * bs
	c := newTestCache(t, lower, o)
	var dirty []int64
	for b := int64(0); b < 64; b += 2 { // 256 KiB of every other block
		dirty = append(dirty, b)
		mustWrite(t, c, nil, fill(byte(b), b*bs, bs), b*bs)
	}
	mustWrite(t, c, nil, fill(9, 512*bs, 64*bs), 512*bs) // 256 KiB, no hole
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	got := lower.takeWrites()
	slices.SortFunc(got, func(a, b ioRange) int { return int(a.off - b.off) })
	// The filled cluster ends with the last dirty block, 63.
	want := []ioRange{{0, 64 << 10}, {64 << 10, 64 << 10}, {128 << 10, 64 << 10}, {192 << 10, 63*bs - 192<<10}, {512 * bs, 64 * bs}}
	if !slices.Equal(got, want) {
		t.Fatalf("lower writes\n got %v\nwant %v", got, want)
	}
	img := lower.image()
	for b := int64(0); b < 64; b++ {
		w := make([]byte, bs)
		if slices.Contains(dirty, b) {
			w = fill(byte(b), b*bs, bs)
		}
		if !bytes.Equal(img[b*bs:(b+1)*bs], w) {
			t.Fatalf("block %d differs", b)
		}
	}
}
