package extentcache

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/extentd/extentd/device"
	"github.com/extentd/extentd/device/faultdev"
	"github.com/extentd/extentd/device/memdev"
)

// quietOptions disable background writeback (no expiry within a test, no
// background threshold) so that only Flush writes back.
func quietOptions(tb testing.TB) Options {
	o := testOptions(tb)
	o.WritebackAge = time.Hour
	o.MaxDirty = 16 << 20
	o.DirtyBackground = 16 << 20
	o.MaxWritebackIO = 64 << 10
	return o
}

// newQuietCache returns a counting lower device of size bytes, a cache
// over it with quietOptions, and a zeroed model of the device.
func newQuietCache(t *testing.T, size int64) (*countingDev, *Cache, []byte) {
	t.Helper()
	lower := newCountingDev(size)
	return lower, newTestCache(t, lower, quietOptions(t)), make([]byte, size)
}

// expectedRuns returns the writes a flush of the dirty block set must
// issue: one per maximal run of consecutive blocks, split at multiples of
// window blocks.
func expectedRuns(dirty []int64, window int64) []ioRange {
	slices.Sort(dirty)
	dirty = slices.Compact(dirty)
	var out []ioRange
	for i := 0; i < len(dirty); {
		j := i + 1
		for j < len(dirty) && dirty[j] == dirty[j-1]+1 && dirty[j]/window == dirty[i]/window {
			j++
		}
		out = append(out, ioRange{dirty[i] * 4096, int64(j-i) * 4096})
		i = j
	}
	return out
}

func TestWritebackCoalescing(t *testing.T) {
	const bs, window = 4096, 16 // MaxWritebackIO = 16 blocks
	cases := []struct {
		name  string
		dirty []int64
	}{
		{"single", []int64{7}},
		{"run", []int64{0, 1, 2, 3}},
		{"gaps", []int64{0, 1, 2, 3, 5, 9, 10}},
		{"crosses windows", seq(10, 41)},
		{"exact window", seq(16, 32)},
		{"mixed", append(append(seq(3, 5), seq(14, 50)...), 63, 64, 200)},
	}
	seed := testSeed(t)
	r := rand.New(rand.NewPCG(seed, 1))
	for i := 0; i < 5; i++ {
		var d []int64
		for range 1 + r.IntN(60) {
			d = append(d, r.Int64N(256))
		}
		cases = append(cases, struct {
			name  string
			dirty []int64
		}{"random", d})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			lower := newCountingDev(1 << 20)
			c := newTestCache(t, lower, quietOptions(t))
			order := slices.Clone(tc.dirty)
			r.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
			for _, b := range order {
				mustWrite(t, c, nil, fill(byte(b), b*bs, bs), b*bs)
			}
			if err := c.Flush(); err != nil {
				t.Fatal(err)
			}
			got := lower.takeWrites()
			slices.SortFunc(got, func(a, b ioRange) int { return int(a.off - b.off) })
			want := expectedRuns(slices.Clone(tc.dirty), window)
			if !slices.Equal(got, want) {
				t.Fatalf("lower writes\n got %v\nwant %v", got, want)
			}
			for _, b := range tc.dirty {
				if !bytes.Equal(lower.data[b*bs:(b+1)*bs], fill(byte(b), b*bs, bs)) {
					t.Fatalf("block %d not written back correctly", b)
				}
			}
			st := c.Stats()
			if st.WritebackIOs != uint64(len(want)) || st.DirtyBytes != 0 || st.PageBytes != 0 {
				t.Fatalf("stats after flush: %+v", st)
			}
		})
	}
}

func seq(from, to int64) []int64 {
	var s []int64
	for b := from; b < to; b++ {
		s = append(s, b)
	}
	return s
}

// TestWritebackRedirty rewrites blocks while their writeback is in flight:
// the old buffers must reach lower unchanged (copy-on-write), the new data
// must stay dirty and readable, and a second flush must write it.
func TestWritebackRedirty(t *testing.T) {
	const bs = 4096
	lower := newCountingDev(1 << 20)
	c := newTestCache(t, lower, quietOptions(t))
	model := make([]byte, 1<<20)
	mustWrite(t, c, model, fill(1, 0, 4*bs), 0)
	old := bytes.Clone(model[:4*bs])

	gate := make(chan struct{})
	lower.setGate(gate)
	done := make(chan error, 1)
	go func() { done <- c.Flush() }()
	waitFor(t, "writeback in flight", func() bool { return c.Stats().WritebackBytes == 4*bs })
	mustWrite(t, c, model, fill(2, bs, bs), bs)             // whole block under writeback
	mustWrite(t, c, model, fill(3, 2*bs+100, 10), 2*bs+100) // partial block under writeback
	verify(t, c, model, 0, 8*bs)
	close(gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if img := lower.image(); !bytes.Equal(img[:4*bs], old) {
		t.Fatalf("first writeback did not write the buffers as claimed (copy-on-write broken)")
	}
	verify(t, c, model, 0, 8*bs)
	if st := c.Stats(); st.DirtyBytes != 2*bs {
		t.Fatalf("re-dirtied bytes %d, want %d", st.DirtyBytes, 2*bs)
	}
	lower.setGate(nil)
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	if img := lower.image(); !bytes.Equal(img[:8*bs], model[:8*bs]) {
		t.Fatalf("second flush did not write the new data")
	}
	if w := lower.takeWrites(); len(w) != 2 || w[1] != (ioRange{bs, 2 * bs}) {
		t.Fatalf("lower writes %v, want the cluster then [4096,+8192)", w)
	}
}

// waitFor polls cond until it holds or 10 s pass.
func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestTrimAfterWriteInFlight trims a range whose older write is being
// written back: the punch must come after that write, so lower ends up
// zero and reads are zero throughout.
func TestTrimAfterWriteInFlight(t *testing.T) {
	const bs = 4096
	for _, mayTrim := range []bool{true, false} {
		lower := newCountingDev(1 << 20)
		c := newTestCache(t, lower, quietOptions(t))
		model := make([]byte, 1<<20)
		mustWrite(t, c, model, fill(1, 0, 4*bs), 0)
		gate := make(chan struct{})
		lower.setGate(gate)
		done := make(chan error, 1)
		go func() { done <- c.Flush() }()
		waitFor(t, "writeback in flight", func() bool { return c.Stats().WritebackBytes > 0 })
		if err := c.Zero(0, 4*bs, mayTrim); err != nil {
			t.Fatal(err)
		}
		clear(model[:4*bs])
		verify(t, c, model, 0, 4*bs)
		close(gate)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		lower.setGate(nil)
		if err := c.Flush(); err != nil {
			t.Fatal(err)
		}
		if img := lower.image(); !bytes.Equal(img[:4*bs], model[:4*bs]) {
			t.Fatalf("mayTrim=%v: lower not zero after trim that followed a write", mayTrim)
		}
		verify(t, c, model, 0, 4*bs)
	}
}

// TestWriteAfterTrimInFlight writes into a range whose zeroing is in
// flight: the write must land after the zeroing.
func TestWriteAfterTrimInFlight(t *testing.T) {
	const bs = 4096
	lower := newCountingDev(1 << 20)
	c := newTestCache(t, lower, quietOptions(t))
	model := make([]byte, 1<<20)
	mustWrite(t, c, model, fill(1, 0, 8*bs), 0)
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := c.Trim(0, 8*bs); err != nil {
		t.Fatal(err)
	}
	clear(model[:8*bs])
	gate := make(chan struct{})
	lower.setGate(gate) // countingDev has no Trim: the zeroing is a write
	done := make(chan error, 1)
	go func() { done <- c.Flush() }()
	waitFor(t, "zeroing in flight", func() bool { return c.Stats().WritebackBytes > 0 })
	mustWrite(t, c, model, fill(2, bs, bs), bs)
	mustWrite(t, c, model, fill(3, 5*bs+7, 3), 5*bs+7) // partial: zeroed block, no read from lower
	verify(t, c, model, 0, 8*bs)
	close(gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	lower.setGate(nil)
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	if img := lower.image(); !bytes.Equal(img[:8*bs], model[:8*bs]) {
		t.Fatalf("lower does not hold the write that followed the trim")
	}
	verify(t, c, model, 0, 8*bs)
}

// TestWriteThenTrimBeforeWriteback: a trim of dirty data that was never
// written back drops it; lower (with old data) is then zeroed.
func TestWriteThenTrimBeforeWriteback(t *testing.T) {
	const bs = 4096
	lower := newCountingDev(1 << 20)
	copy(lower.data, fill(9, 0, 8*bs))
	c := newTestCache(t, lower, quietOptions(t))
	model := bytes.Clone(lower.data)
	mustWrite(t, c, model, fill(1, 0, 8*bs), 0)
	if err := c.Trim(bs+1, 6*bs); err != nil { // partial edges
		t.Fatal(err)
	}
	clear(model[bs+1 : 7*bs+1])
	verify(t, c, model, 0, 16*bs)
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	if img := lower.image(); !bytes.Equal(img, model) {
		t.Fatalf("lower differs from model after flush")
	}
	if st := c.Stats(); st.DirtyBytes != 0 || st.ZeroedBytes != 0 || st.PageBytes != 0 {
		t.Fatalf("stats after flush: %+v", st)
	}
}

// TestClose: Close writes everything back and flushes; afterwards every
// call fails with device.ErrClosed and none hangs.
func TestClose(t *testing.T) {
	const bs = 4096
	mem := memdev.New(1<<20, memdev.Options{Crashable: true})
	c, err := New(mem, quietOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	model := make([]byte, 1<<20)
	mustWrite(t, c, model, fill(1, 3, 10*bs), 3)
	if err := c.Zero(20*bs, 4*bs, false); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	verify(t, mem.Crash(), model, 0, 1<<20)
	p := make([]byte, 10)
	for name, err := range map[string]error{
		"Close": c.Close(), "Flush": c.Flush(), "SyncRange": c.SyncRange(0, 1),
		"Trim": c.Trim(0, bs), "Zero": c.Zero(0, bs, true),
		"WriteAt": second(c.WriteAt(p, 0)), "ReadAt": second(c.ReadAt(p, 0)),
		"Extents": c.Extents(0, bs, func(device.Extent) bool { return true }),
	} {
		if !errors.Is(err, device.ErrClosed) {
			t.Errorf("%s after Close: err %v, want ErrClosed", name, err)
		}
	}
}

func second(_ int, err error) error { return err }

// TestNoPreallocation: writeback never preallocates (fallocate) a cluster
// before writing it; the host's delayed allocation lays a cluster written
// in one call out contiguously, and preallocation fragmented the image.
func TestNoPreallocation(t *testing.T) {
	const bs = 4096
	fd := faultdev.New(memdev.New(4<<20, memdev.Options{}))
	o := quietOptions(t)
	o.MaxWritebackIO = 1 << 20
	c := newTestCache(t, fd, o)
	mustWrite(t, c, nil, fill(1, 0, bs), 0)               // 1 block
	mustWrite(t, c, nil, fill(3, 256*bs, 64*bs), 256*bs)  // 256 KiB
	mustWrite(t, c, nil, fill(4, 512*bs, 300*bs), 512*bs) // 1.2 MiB: two clusters
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	st := fd.Stats()
	if st.Calls[faultdev.OpAllocate] != 0 || st.Calls[faultdev.OpWrite] != 4 {
		t.Fatalf("allocate calls %d, writes %d; want 0 and 4", st.Calls[faultdev.OpAllocate], st.Calls[faultdev.OpWrite])
	}
}

// TestFullWindowWrittenAtOnce: a write that completes an aligned
// MaxWritebackIO window of dirty data starts its writeback at once, as one
// full-size write, even far below DirtyBackground and WritebackAge; a
// window with a hole waits.
func TestFullWindowWrittenAtOnce(t *testing.T) {
	const bs = 4096
	lower := newCountingDev(1 << 20)
	o := quietOptions(t) // MaxWritebackIO 64 KiB, no background, no expiry
	c := newTestCache(t, lower, o)
	for off := int64(0); off < 15*bs; off += bs { // window 0 but its last block
		mustWrite(t, c, nil, fill(1, off, bs), off)
	}
	mustWrite(t, c, nil, fill(2, 16*bs, 15*bs), 16*bs) // window 1 but its last block
	mustWrite(t, c, nil, fill(1, 15*bs, bs), 15*bs)    // completes window 0
	waitFor(t, "window 0 written back", func() bool { return writtenBack(c, 15*bs) })
	if got, want := lower.takeWrites(), []ioRange{{0, 16 * bs}}; !slices.Equal(got, want) {
		t.Fatalf("lower writes %v, want %v", got, want)
	}
	time.Sleep(20 * time.Millisecond)
	if got := lower.takeWrites(); len(got) != 0 {
		t.Fatalf("the incomplete window was written: %v", got)
	}
}

// writtenBack reports whether dirty bytes are down to dirty with no
// backing write in flight: a claimed cluster stops counting as dirty
// before its write reaches lower.
func writtenBack(c *Cache, dirty int64) bool {
	s := c.Stats()
	return s.DirtyBytes == dirty && s.WritebackBytes == 0
}

// TestFullWindowOutOfOrder: a window completed by a write in its middle
// (requests completing out of order, as under a queue depth) is written
// back at once too.
func TestFullWindowOutOfOrder(t *testing.T) {
	const bs = 4096
	lower := newCountingDev(1 << 20)
	o := quietOptions(t) // MaxWritebackIO 64 KiB, no background, no expiry
	c := newTestCache(t, lower, o)
	mustWrite(t, c, nil, fill(1, 8*bs, 8*bs), 8*bs) // the second half first
	mustWrite(t, c, nil, fill(1, 0, 7*bs), 0)
	mustWrite(t, c, nil, fill(1, 7*bs, bs), 7*bs) // completes window 0, ending mid-window
	waitFor(t, "window 0 written back", func() bool { return writtenBack(c, 0) })
	if got, want := lower.takeWrites(), []ioRange{{0, 16 * bs}}; !slices.Equal(got, want) {
		t.Fatalf("lower writes %v, want %v", got, want)
	}
}

// TestFullWindowBacklogThrottles: a sequential writer that completes
// windows faster than writeback writes them waits once more than
// WritebackInFlight whole windows are queued, and goes on as they drain.
func TestFullWindowBacklogThrottles(t *testing.T) {
	const win = 64 << 10
	lower := newCountingDev(2 << 20)
	o := quietOptions(t) // MaxWritebackIO 64 KiB, WritebackInFlight 3
	c := newTestCache(t, lower, o)
	gate := make(chan struct{})
	release := sync.OnceFunc(func() { close(gate) })
	t.Cleanup(release)
	lower.setGate(gate)
	done := make(chan error, 1)
	go func() {
		for i := int64(0); i < 16; i++ {
			if _, err := c.WriteAt(fill(byte(i), i*win, win), i*win); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	waitFor(t, "the writer to wait", func() bool { return c.Stats().WriterWaits > 0 })
	select {
	case err := <-done:
		t.Fatalf("writer finished (%v) while writeback was stalled", err)
	case <-time.After(20 * time.Millisecond):
	}
	if st := c.Stats(); st.DirtyBytes > int64(2*o.WritebackInFlight+2)*win {
		t.Fatalf("%d bytes dirty behind a stalled writeback, want a few windows", st.DirtyBytes)
	}
	release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	img := lower.image()
	for i := int64(0); i < 16; i++ {
		if !bytes.Equal(img[i*win:(i+1)*win], fill(byte(i), i*win, win)) {
			t.Fatalf("window %d differs in lower", i)
		}
	}
}

// TestAgeMarksBounded: marks of blocks written back before they expire
// (memory pressure, here a flush) do not pile up for WritebackAge: the
// queue stays within twice MaxDirty's pages (plus slack) however many
// blocks were dirtied, and marks of blocks still dirty survive compaction.
func TestAgeMarksBounded(t *testing.T) {
	const bs = 4096
	lower := newCountingDev(64 << 20)
	o := quietOptions(t)
	o.MaxDirty = 256 << 10 // 64 pages
	o.DirtyBackground = o.MaxDirty
	c := newTestCache(t, lower, o)
	for i := int64(0); i < 8192; i++ {
		b := i * 7919 % 16384 // scattered: no window completes
		mustWrite(t, c, nil, fill(byte(i), b*bs, bs), b*bs)
		if i%32 == 31 {
			if err := c.Flush(); err != nil {
				t.Fatal(err)
			}
		}
	}
	mustWrite(t, c, nil, fill(1, 0, bs), 99*bs) // still dirty at the end
	c.mu.Lock()
	n := c.ages.len()
	kept := false
	for _, m := range c.ages.q[c.ages.head:] {
		kept = kept || m.off == 99*bs
	}
	c.mu.Unlock()
	if limit := 2*64 + 1024 + 1; n > limit {
		t.Fatalf("%d age marks after 8192 dirtied blocks, want at most %d", n, limit)
	}
	if !kept {
		t.Fatal("the mark of a dirty block was dropped")
	}
}

// TestFlushBatchesSmallClusters: a flush after scattered one-block writes
// writes them with one worker, one after the other in offset order (one
// batch), not with a hand-off and a concurrent write each.
func TestFlushBatchesSmallClusters(t *testing.T) {
	const size, bs = 4 << 20, 4096
	lower, c, model := newQuietCache(t, size)
	for i := range int64(40) {
		off := (i*37%256)*2*bs + 1<<20 // scattered, never adjacent
		mustWrite(t, c, model, fill(byte(i), off, bs), off)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	ws := lower.takeWrites()
	var small []ioRange
	for _, w := range ws {
		if w.n == bs {
			small = append(small, w)
		}
	}
	if len(small) != 40 {
		t.Fatalf("%d one-block writes, want 40: %v", len(small), ws)
	}
	for i := 1; i < len(small); i++ {
		if small[i].off <= small[i-1].off {
			t.Fatalf("one-block writes out of order (not one batch): %v", small)
		}
	}
	lower.mu.Lock()
	conc := lower.maxConc
	lower.mu.Unlock()
	if conc != 1 {
		t.Fatalf("%d lower writes at once, want 1", conc)
	}
	if !bytes.Equal(lower.image(), model) {
		t.Fatal("lower differs from the model after flush")
	}
}

// TestOneLargeWrite: with OneLargeWrite, writeback's writes of 1 MiB or more
// reach lower one at a time (a buffered file serializes them on its inode
// lock anyway); without it the workers write several whole windows at
// once. Everything reaches lower either way.
func TestOneLargeWrite(t *testing.T) {
	const size, win = 8 << 20, 1 << 20
	for _, one := range []bool{false, true} {
		lower := newCountingDev(size)
		o := quietOptions(t)
		o.MaxWritebackIO, o.MaxDirty, o.DirtyBackground = win, size, size
		o.WritebackInFlight = 4
		o.OneLargeWrite = one
		c := newTestCache(t, lower, o)
		gate := make(chan struct{})
		var once sync.Once
		release := func() { once.Do(func() { close(gate) }) }
		t.Cleanup(release) // runs before the cache's cleanup closes it
		lower.setGate(gate)
		model := bytes.Clone(lower.data)
		for off := int64(0); off < 4*win; off += win { // four whole windows
			mustWrite(t, c, model, fill(byte(1+off/win), off, win), off)
		}
		inLower := func() int {
			lower.mu.Lock()
			defer lower.mu.Unlock()
			return lower.active
		}
		if one {
			waitFor(t, "a write in lower", func() bool { return inLower() == 1 })
			time.Sleep(30 * time.Millisecond) // room for a second one to enter
		} else {
			waitFor(t, "two writes in lower at once", func() bool { return inLower() >= 2 })
		}
		release()
		if err := c.Flush(); err != nil {
			t.Fatal(err)
		}
		lower.mu.Lock()
		conc := lower.maxConc
		lower.mu.Unlock()
		if one && conc != 1 || !one && conc < 2 {
			t.Fatalf("OneLargeWrite %v: %d large writes in lower at once", one, conc)
		}
		if !bytes.Equal(lower.image(), model) {
			t.Fatalf("OneLargeWrite %v: lower differs from the model", one)
		}
	}
}
