package extentcache

import (
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/extentd/extentd/device"
	"github.com/extentd/extentd/device/faultdev"
	"github.com/extentd/extentd/device/memdev"
)

// TestModel runs goroutines issuing random reads, writes (aligned and not),
// trims, zeroes, flushes and range syncs against the cache, each in its own
// region of the device (region edges are not block aligned, so neighbours
// share blocks), and compares the whole device with a flat []byte model at
// quiescent points. After a Flush at a quiescent point the lower device must
// equal the model too.
func TestModel(t *testing.T) {
	for _, tc := range []struct {
		name    string
		vector  bool // lower offers WriteVAt (through faultdev)
		space   bool // with space accounting
		through bool // aligned writes of 32 KiB or more written through
	}{{"memdev", false, false, false}, {"vectored+space", true, true, false}, {"writethrough+space", true, true, true}} {
		t.Run(tc.name, func(t *testing.T) {
			seed := testSeed(t)
			const size = 4<<20 + 3000 // odd size: a short last block
			mem := memdev.New(size, memdev.Options{})
			var lower device.Device = mem
			if tc.vector {
				lower = faultdev.New(mem)
			}
			o := testOptions(t)
			if tc.space {
				o.Space = newFakeSpace(4096, size/4096+1)
			}
			if tc.through {
				o.WriteThroughMin = 32 << 10
			}
			c := newTestCache(t, lower, o)
			model := make([]byte, size)
			const workers = 4
			rounds, opsPerRound := 9, 150
			if testing.Short() {
				rounds = 4
			}
			bounds := make([]int64, workers+1)
			for i := range bounds {
				bounds[i] = int64(i) * size / workers
			}
			for round := 0; round < rounds; round++ {
				var wg sync.WaitGroup
				for w := 0; w < workers; w++ {
					wg.Add(1)
					go func(w int) {
						defer wg.Done()
						r := rand.New(rand.NewPCG(seed, uint64(round*workers+w)))
						lo, hi := bounds[w], bounds[w+1]
						mine := model[lo:hi:hi]
						for i := 0; i < opsPerRound; i++ {
							if err := modelOp(c, r, mine, lo, hi, byte(round*workers+w+1)); err != nil {
								t.Error(err)
								return
							}
						}
					}(w)
				}
				wg.Wait()
				if t.Failed() {
					t.FailNow()
				}
				verify(t, c, model, 0, size)
				if err := c.Check(); err != nil {
					t.Fatal(err)
				}
				if round%3 == 2 {
					if err := c.Flush(); err != nil {
						t.Fatalf("Flush: %v", err)
					}
					verify(t, mem, model, 0, size)
				}
			}
			st := c.Stats()
			t.Logf("stats: dirty %d, wb IOs %d (%d bytes), zero IOs %d, flushes %d, lower flushes %d, hits %d misses %d, waits %d",
				st.DirtyBytes, st.WritebackIOs, st.WritebackBytesW, st.ZeroIOs, st.Flushes, st.LowerFlushes, st.Hits, st.Misses, st.WriterWaits)
			if st.WritebackIOs == 0 || st.ZeroIOs == 0 {
				t.Errorf("model run did no writeback (%d) or no zeroing (%d)", st.WritebackIOs, st.ZeroIOs)
			}
			if tc.through != (st.WriteThroughs > 0) {
				t.Errorf("%d write-throughs with WriteThroughMin %d", st.WriteThroughs, o.WriteThroughMin)
			}
		})
	}
}

// modelOp does one random operation inside [lo, hi) of c, mirrored in
// mine (the model bytes of that region), and checks reads on the spot.
func modelOp(c *Cache, r *rand.Rand, mine []byte, lo, hi int64, tag byte) error {
	off, n := randRange(r, hi-lo)
	abs := lo + off
	switch k := r.IntN(100); {
	case k < 50:
		p := fill(tag+byte(r.IntN(8)), abs, int(n))
		if _, err := c.WriteAt(p, abs); err != nil {
			return errorf("write [%d,+%d): %v", abs, n, err)
		}
		copy(mine[off:], p)
	case k < 72:
		got := make([]byte, n)
		if _, err := c.ReadAt(got, abs); err != nil {
			return errorf("read [%d,+%d): %v", abs, n, err)
		}
		if i := firstDiff(got, mine[off:off+n]); i >= 0 {
			return errorf("read [%d,+%d): byte at %d is %d, want %d", abs, n, abs+int64(i), got[i], mine[off+int64(i)])
		}
	case k < 82:
		if err := c.Trim(abs, n); err != nil {
			return errorf("trim [%d,+%d): %v", abs, n, err)
		}
		clear(mine[off : off+n])
	case k < 92:
		if err := c.Zero(abs, n, r.IntN(2) == 0); err != nil {
			return errorf("zero [%d,+%d): %v", abs, n, err)
		}
		clear(mine[off : off+n])
	case k < 96:
		if err := c.Flush(); err != nil {
			return errorf("flush: %v", err)
		}
	default:
		if err := c.SyncRange(abs, n); err != nil {
			return errorf("sync [%d,+%d): %v", abs, n, err)
		}
	}
	return nil
}
