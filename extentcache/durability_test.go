package extentcache

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/extentd/extentd/device/faultdev"
	"github.com/extentd/extentd/device/memdev"
)

// gateDev is a crashable memdev that behaves like a buffered file on Linux
// when fdatasync fails ("fsyncgate"): an injected Flush (or SyncRange)
// failure discards everything written, trimmed or zeroed since the last
// successful sync (lower reverts to its durable image, as if the kernel had
// dropped the dirty pages and marked them clean) and reports the error once;
// the next Flush succeeds. Flush may also wait on a gate so that a test can
// act while a lower flush is in progress.
type gateDev struct {
	*memdev.Dev

	mu      sync.Mutex
	fail    int           // next Flush/SyncRange calls to fail
	entered chan struct{} // with hold: closed when a Flush starts
	hold    chan struct{} // Flush waits until it is closed
	changed []ioRange     // written since the last successful sync
	fails   int
}

func newGateDev(size int64) *gateDev {
	return &gateDev{Dev: memdev.New(size, memdev.Options{Crashable: true})}
}

func (g *gateDev) note(off, n int64) {
	g.mu.Lock()
	g.changed = append(g.changed, ioRange{off, n})
	g.mu.Unlock()
}

func (g *gateDev) WriteAt(p []byte, off int64) (int, error) {
	g.note(off, int64(len(p)))
	return g.Dev.WriteAt(p, off)
}

func (g *gateDev) Trim(off, n int64) error {
	g.note(off, n)
	return g.Dev.Trim(off, n)
}

func (g *gateDev) Zero(off, n int64, mayTrim bool) error {
	g.note(off, n)
	return g.Dev.Zero(off, n, mayTrim)
}

// SyncRange syncs everything (like alloc's fdatasync) and fails like Flush.
func (g *gateDev) SyncRange(int64, int64) error { return g.Flush() }

// failNextSync makes the next n syncs fail and drop the unsynced data.
func (g *gateDev) failNextSync(n int) {
	g.mu.Lock()
	g.fail = n
	g.mu.Unlock()
}

// holdNextFlush makes the next Flush wait until release is called; the
// returned channel is closed when that Flush has started.
func (g *gateDev) holdNextFlush() (entered chan struct{}, release func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	entered, hold := make(chan struct{}), make(chan struct{})
	g.entered, g.hold = entered, hold
	return entered, sync.OnceFunc(func() { close(hold) })
}

func (g *gateDev) Flush() error {
	g.mu.Lock()
	if g.hold != nil {
		hold := g.hold
		close(g.entered)
		g.entered, g.hold = nil, nil
		g.mu.Unlock()
		<-hold
		g.mu.Lock()
	}
	defer g.mu.Unlock()
	if g.fail > 0 {
		g.fail--
		g.fails++
		// Drop the unsynced changes: lower now holds its durable image.
		durable := g.Dev.Crash()
		for _, r := range g.changed {
			buf := make([]byte, r.n)
			if _, err := durable.ReadAt(buf, r.off); err != nil {
				return err
			}
			if _, err := g.Dev.WriteAt(buf, r.off); err != nil {
				return err
			}
		}
		if err := g.Dev.Flush(); err != nil { // same bytes as durable
			return err
		}
		g.changed = g.changed[:0]
		return syscall.EIO
	}
	if err := g.Dev.Flush(); err != nil {
		return err
	}
	g.changed = g.changed[:0]
	return nil
}

// crashImage returns n bytes at off of the durable image.
func (g *gateDev) crashImage(tb testing.TB, off, n int64) []byte {
	tb.Helper()
	buf := make([]byte, n)
	if _, err := g.Dev.Crash().ReadAt(buf, off); err != nil {
		tb.Fatal(err)
	}
	return buf
}

// TestFsyncgate: data written back before a lower flush that fails (and
// drops it, as Linux may) is written again; the next Flush succeeds only
// once it is durable, and reads never see the dropped data go missing.
func TestFsyncgate(t *testing.T) {
	const size = 1 << 20
	for _, name := range []string{"flush", "syncrange"} {
		t.Run(name, func(t *testing.T) {
			g := newGateDev(size)
			c := newTestCache(t, g, quietOptions(t))
			model := make([]byte, size)
			mustWrite(t, c, model, fill(1, 0, 256<<10), 0)
			mustWrite(t, c, model, fill(2, 600<<10, 5000), 600<<10)
			doSync := func() error {
				if name == "flush" {
					return c.Flush()
				}
				return c.SyncRange(0, size)
			}
			g.failNextSync(1)
			if err := doSync(); !errors.Is(err, syscall.EIO) {
				t.Fatalf("sync with failing lower flush: %v, want EIO", err)
			}
			if g.fails != 1 {
				t.Fatalf("lower flush failures %d, want 1", g.fails)
			}
			// Lower dropped the data; the cache must still serve it.
			verify(t, c, model, 0, size)
			// A failed sync stays pending until a Flush fully succeeds.
			if err := c.Flush(); err != nil {
				t.Fatalf("Flush after the failure: %v", err)
			}
			if got := g.crashImage(t, 0, size); !bytes.Equal(got, model) {
				t.Fatalf("crash image after a successful sync differs from the acknowledged data at byte %d", firstDiff(got, model))
			}
			if st := c.Stats(); st.UnsyncedBytes != 0 || st.PageBytes != 0 || st.StickyErr != nil {
				t.Fatalf("after a successful flush: %d unsynced bytes, %d page bytes, sticky %v", st.UnsyncedBytes, st.PageBytes, st.StickyErr)
			}
		})
	}
}

// TestFsyncgateRandom: writes racing with flushes that fail and
// drop data never lose an acknowledged write: after the faults stop, a
// successful Flush leaves exactly the model on the crash image.
func TestFsyncgateRandom(t *testing.T) {
	const size = 2 << 20
	r := rand.New(rand.NewPCG(testSeed(t), 11))
	g := newGateDev(size)
	o := testOptions(t)
	o.WritebackAge = time.Millisecond // background writeback and checkpoints all the time
	o.MaxDirty = 16 << 20             // kept pages (≤ size) never reach MaxDirty/4: none is dropped
	c := newTestCache(t, g, o)
	model := make([]byte, size)
	for i := range 300 {
		off, n := randRange(r, size)
		switch r.IntN(10) {
		case 0:
			if err := c.Trim(off, n); err != nil {
				t.Fatal(err)
			}
			clear(model[off : off+n])
		case 1:
			g.failNextSync(1 + r.IntN(2))
			_ = c.Flush()
		default:
			mustWrite(t, c, model, fill(byte(i), off, int(n)), off)
		}
		if i%25 == 0 {
			verify(t, c, model, 0, size)
		}
	}
	g.failNextSync(0)
	if err := c.Flush(); err != nil {
		t.Fatalf("Flush once faults stopped: %v", err)
	}
	if got := g.crashImage(t, 0, size); !bytes.Equal(got, model) {
		t.Fatalf("crash image differs from the model at byte %d", firstDiff(got, model))
	}
}

// TestTrimRetainedFailedFlush: a trim of a block whose written-back page is
// kept, during a lower flush that then fails, does not bring the page back;
// and a zeroing applied to lower before a failed flush is applied again, so
// the trimmed data does not come back either.
func TestTrimRetainedFailedFlush(t *testing.T) {
	const size, bs = 1 << 20, 4096
	g := newGateDev(size)
	c := newTestCache(t, g, quietOptions(t))
	model := make([]byte, size)
	old := fill(1, 0, 64<<10)
	mustWrite(t, c, model, old, 0)
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}

	// 1. A is written back and kept; the flush is held; a trim drops the
	// kept page; the flush fails and lower reverts to old.
	mustWrite(t, c, model, fill(2, 0, 64<<10), 0)
	entered, release := g.holdNextFlush()
	defer release()
	g.failNextSync(1)
	errc := make(chan error, 1)
	go func() { errc <- c.Flush() }()
	<-entered
	if st := c.Stats(); st.UnsyncedBytes != 64<<10 {
		t.Fatalf("during the flush %d bytes kept unsynced, want %d", st.UnsyncedBytes, 64<<10)
	}
	if err := c.Trim(0, 8*bs); err != nil {
		t.Fatal(err)
	}
	clear(model[:8*bs])
	release()
	if err := <-errc; !errors.Is(err, syscall.EIO) {
		t.Fatalf("Flush: %v, want EIO", err)
	}
	verify(t, c, model, 0, size)

	// 2. The trim and the rest of A are applied to lower, then the flush
	// fails again and lower reverts to old: reads stay zero and A stays.
	g.failNextSync(1)
	if err := c.Flush(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("second Flush: %v, want EIO", err)
	}
	verify(t, c, model, 0, size)
	if err := c.Flush(); err != nil {
		t.Fatalf("third Flush: %v", err)
	}
	verify(t, c, model, 0, size)
	if got := g.crashImage(t, 0, size); !bytes.Equal(got, model) {
		t.Fatalf("crash image differs from the model at byte %d", firstDiff(got, model))
	}
}

// TestKeptPagesDropped: a client that never flushes, writing far more than
// MaxDirty, neither deadlocks nor exceeds MaxDirty of page memory, and
// waits for no lower sync: kept pages over MaxDirty/4 are released without
// one. Its data is all in lower after a final Flush.
func TestKeptPagesDropped(t *testing.T) {
	const size, bs = 16 << 20, 4096
	lower := memdev.New(size, memdev.Options{Crashable: true})
	o := testOptions(t)
	o.WritebackAge = time.Hour // only memory pressure triggers anything
	o.DirtyBackground = 64 << 10
	c := newTestCache(t, lower, o)
	r := rand.New(rand.NewPCG(testSeed(t), 12))
	model := make([]byte, size)
	for i := range 8192 { // 32 MiB: 64 times MaxDirty
		off := int64(i) * bs % size
		if i%2 == 1 {
			off = r.Int64N(size/bs) * bs
		}
		mustWrite(t, c, model, fill(byte(i), off, bs), off)
		if st := c.Stats(); st.PageBytes > o.MaxDirty {
			t.Fatalf("after write %d: %d page bytes, over MaxDirty %d", i, st.PageBytes, o.MaxDirty)
		}
	}
	st := c.Stats()
	flushes := lower.Stats().Calls[memdev.OpFlush]
	t.Logf("kept bytes dropped %d, checkpoints %d, lower flushes %d, writer waits %d", st.KeptDropped, st.Checkpoints, flushes, st.WriterWaits)
	if st.KeptDropped == 0 || flushes != 0 {
		t.Fatalf("memory pressure: %d kept bytes dropped, %d lower flushes; want drops and no flush", st.KeptDropped, flushes)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	verify(t, lower.Crash(), model, 0, size)
}

// TestCheckpointAge: kept pages are released by a checkpoint once older
// than WritebackAge, without any client flush.
func TestCheckpointAge(t *testing.T) {
	const size = 1 << 20
	lower := memdev.New(size, memdev.Options{Crashable: true})
	c := newTestCache(t, lower, testOptions(t)) // WritebackAge 20 ms
	model := make([]byte, size)
	mustWrite(t, c, model, fill(3, 4096, 40000), 4096)
	waitFor(t, "checkpoint", func() bool {
		st := c.Stats()
		return st.PageBytes == 0 && st.DirtyBytes == 0 && st.Checkpoints > 0
	})
	got := make([]byte, size)
	if _, err := lower.Crash().ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, model) {
		t.Fatalf("crash image after a checkpoint differs at byte %d", firstDiff(got, model))
	}
}

// TestDroppedThenSyncFails: once kept pages were released unsynced (for
// memory), a failing lower sync may have lost their data and nothing can
// rewrite it, so every later Flush fails, also once syncs work again: the
// cache never acknowledges durability that did not happen.
func TestDroppedThenSyncFails(t *testing.T) {
	const bs = 4096
	c, g := newSyncFailCache(t, 0)
	for i := range 1024 { // 4 MiB: 8 times MaxDirty, never flushed
		off := int64(i) * bs
		if _, err := c.WriteAt(fill(byte(i), off, bs), off); err != nil {
			t.Fatal(err)
		}
	}
	if st := c.Stats(); st.KeptDropped == 0 {
		t.Fatalf("no kept page dropped: %+v", st)
	}
	checkSyncFailurePermanent(t, c, g)
}

// TestNoDropNoLoss: the same failing sync without any dropped page (the
// data fit in the kept cushion) is repaired by rewriting: the next Flush
// succeeds and lower holds everything.
func TestNoDropNoLoss(t *testing.T) {
	const bs = 4096
	c, g := newSyncFailCache(t, 0)
	model := make([]byte, g.Size())
	for i := range 16 { // 64 KiB, under MaxDirty/4
		mustWrite(t, c, model, fill(byte(i), int64(i)*bs, bs), int64(i)*bs)
	}
	checkSyncFailureRepaired(t, c, g, model)
	if st := c.Stats(); st.KeptDropped != 0 {
		t.Fatalf("kept bytes dropped: %d", st.KeptDropped)
	}
}

// newSyncFailCache returns a cache over a 4 MiB gateDev whose data never
// expires (only Flush and memory pressure write it back), with
// WriteThroughMin through.
func newSyncFailCache(t *testing.T, through int64) (*Cache, *gateDev) {
	g := newGateDev(4 << 20)
	o := testOptions(t)
	o.WritebackAge = time.Hour
	o.WriteThroughMin = through
	return newTestCache(t, g, o), g
}

// checkSyncFailurePermanent fails the next lower sync of g and checks that
// the Flush over it and every later one fail, also once syncs work again,
// that writes and reads still work, and that Close fails too.
func checkSyncFailurePermanent(t *testing.T, c *Cache, g *gateDev) {
	t.Helper()
	g.failNextSync(1)
	if err := c.Flush(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Flush over a failing sync: %v, want EIO", err)
	}
	for i := range 3 {
		if err := c.Flush(); !errors.Is(err, ErrWriteback) || !errors.Is(err, syscall.EIO) {
			t.Fatalf("Flush %d once syncs work again: %v, want the permanent error", i, err)
		}
	}
	// Writes and reads still work; only durability is refused, by Close too.
	mustWrite(t, c, nil, fill(7, 0, 4096), 0)
	verify(t, c, fill(7, 0, 4096), 0, 4096)
	if err := c.Close(); !errors.Is(err, ErrWriteback) {
		t.Fatalf("Close: %v, want the permanent error", err)
	}
}

// checkSyncFailureRepaired fails the next lower sync of g and checks that
// the Flush over it fails, the next one succeeds, and lower's durable image
// then equals model.
func checkSyncFailureRepaired(t *testing.T, c *Cache, g *gateDev, model []byte) {
	t.Helper()
	g.failNextSync(1)
	if err := c.Flush(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Flush over a failing sync: %v, want EIO", err)
	}
	if err := c.Flush(); err != nil {
		t.Fatalf("Flush once syncs work: %v", err)
	}
	if got := g.crashImage(t, 0, int64(len(model))); !bytes.Equal(got, model) {
		t.Fatalf("crash image differs from the model at byte %d", firstDiff(got, model))
	}
}

// TestFsyncgateFaultdev is TestFsyncgate over faultdev's Drop fault, with
// writeback, trims and zeroes in the dropped set.
func TestFsyncgateFaultdev(t *testing.T) {
	const size = 1 << 20
	m := memdev.New(size, memdev.Options{Crashable: true})
	d := faultdev.New(m)
	d.RecordUndo()
	c := newTestCache(t, d, quietOptions(t))
	model := make([]byte, size)
	mustWrite(t, c, model, fill(1, 0, 512<<10), 0)
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, c, model, fill(2, 100<<10, 200<<10), 100<<10)
	if err := c.Trim(384<<10, 64<<10); err != nil {
		t.Fatal(err)
	}
	clear(model[384<<10 : 448<<10])
	if err := c.Zero(256<<10, 8<<10, false); err != nil {
		t.Fatal(err)
	}
	clear(model[256<<10 : 264<<10])
	d.Inject(faultdev.OpFlush, faultdev.Drop, nil, 1)
	if err := c.Flush(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Flush with a dropping lower flush: %v, want EIO", err)
	}
	verify(t, c, model, 0, size)
	if err := c.Flush(); err != nil {
		t.Fatalf("Flush after: %v", err)
	}
	got := make([]byte, size)
	if _, err := m.Crash().ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, model) {
		t.Fatalf("crash image differs from the model at byte %d", firstDiff(got, model))
	}
}
