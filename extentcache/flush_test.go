package extentcache

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
)

// TestFlushShared: flushes that arrive while one is running share the next
// pass and one lower flush.
func TestFlushShared(t *testing.T) {
	const bs = 4096
	lower := newCountingDev(1 << 20)
	c := newTestCache(t, lower, quietOptions(t))
	mustWrite(t, c, nil, fill(1, 0, bs), 0)
	gate := make(chan struct{})
	lower.setGate(gate)
	first := make(chan error, 1)
	go func() { first <- c.Flush() }()
	waitFor(t, "the first flush's writeback", func() bool { return c.Stats().WritebackBytes > 0 })
	mustWrite(t, c, nil, fill(2, 8*bs, bs), 8*bs)
	before := lower.flushCount()
	const n = 8
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() { defer wg.Done(); errs <- c.Flush() }()
	}
	waitFor(t, "the flushes to queue", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.reqs) == n
	})
	close(gate)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := lower.flushCount() - before; got != 2 {
		t.Fatalf("%d lower flushes for 1 + %d concurrent Flush calls, want 2 (one per pass)", got, n)
	}
}

// TestFlushNotStarved: a Flush returns while writers keep dirtying data.
func TestFlushNotStarved(t *testing.T) {
	const bs = 4096
	lower := newCountingDev(8 << 20)
	c := newTestCache(t, lower, quietOptions(t))
	var stop atomic.Bool
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 5))
			p := make([]byte, bs)
			for !stop.Load() {
				if _, err := c.WriteAt(p, r.Int64N(2048)*bs); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	for i := 0; i < 5; i++ {
		done := make(chan error, 1)
		go func() { done <- c.Flush() }()
		waitFor(t, "Flush to return under a write stream", func() bool {
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
				return true
			default:
				return false
			}
		})
	}
	stop.Store(true)
	wg.Wait()
}
