package statetree

import (
	"context"
	"errors"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"
)

// lockedTree is a tree guarded by mu, as extentcache guards its tree.
type lockedTree struct {
	mu sync.Mutex
	tr *Tree
}

func newLockedTree(tb testing.TB, blocks, bs int64) *lockedTree {
	lt := &lockedTree{}
	lt.tr = New(Options{Size: blocks * bs, BlockSize: bs, Locker: &lt.mu})
	tb.Cleanup(func() {
		lt.mu.Lock()
		defer lt.mu.Unlock()
		if err := lt.tr.Check(); err != nil {
			tb.Error(err)
		}
	})
	return lt
}

// waitFor polls cond under the mutex until it holds, failing after a long
// deadline (a deadlock detector, not a timing assertion).
func (lt *lockedTree) waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		lt.mu.Lock()
		ok := cond()
		lt.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestWaitClearWakesOnlyOverlapping(t *testing.T) {
	lt := newLockedTree(t, 64, K)
	lt.mu.Lock()
	lt.tr.Set(0, 4*K, Writeback, 0)
	lt.tr.Set(8*K, 12*K, Writeback, 0)
	lt.mu.Unlock()

	done := make(chan string, 2)
	wait := func(name string, s, e int64) {
		lt.mu.Lock()
		defer lt.mu.Unlock()
		if err := lt.tr.WaitClear(context.Background(), s, e, Writeback); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if lt.tr.TestAny(s, e, Writeback) {
			t.Errorf("%s returned while Writeback is still set", name)
		}
		done <- name
	}
	go wait("A", 0, 4*K)
	go wait("B", 8*K, 12*K)
	lt.waitFor(t, "two waiters", func() bool { return lt.tr.Waiters() == 2 })

	lt.mu.Lock()
	lt.tr.Clear(4*K, 8*K, Writeback|Dirty) // touches neither waiter's bytes
	lt.tr.Set(16*K, 20*K, Writeback, 0)
	lt.tr.Clear(16*K, 20*K, Writeback) // not overlapping either
	lt.tr.Clear(0, 4*K, Dirty)         // overlaps A, but not the bit it waits for
	if lt.tr.woken != 0 {
		t.Errorf("non-overlapping clears woke %d waiters", lt.tr.woken)
	}
	lt.tr.Convert(0, 4*K, Dirty, Writeback) // completes A's range
	if lt.tr.woken != 1 {
		t.Errorf("clearing A's range woke %d waiters, want 1", lt.tr.woken)
	}
	lt.mu.Unlock()
	if got := <-done; got != "A" {
		t.Fatalf("%s returned first, want A", got)
	}
	lt.mu.Lock()
	if lt.tr.Waiters() != 1 {
		t.Errorf("Waiters = %d, want 1 (B)", lt.tr.Waiters())
	}
	lt.tr.Clear(8*K, 10*K, Writeback) // half of B: B wakes, re-checks, sleeps again
	lt.mu.Unlock()
	lt.waitFor(t, "B to sleep again", func() bool { return lt.tr.woken == 2 && lt.tr.Waiters() == 1 })
	select {
	case name := <-done:
		t.Fatalf("%s returned while its range still has Writeback", name)
	default:
	}
	lt.mu.Lock()
	lt.tr.Clear(10*K, 12*K, Writeback)
	lt.mu.Unlock()
	if got := <-done; got != "B" {
		t.Fatalf("got %s, want B", got)
	}
}

func TestLockCancelLeavesNothingLocked(t *testing.T) {
	lt := newLockedTree(t, 64, K)
	lt.mu.Lock()
	if err := lt.tr.Lock(context.Background(), 0, 8*K, 1); err != nil {
		t.Fatal(err)
	}
	lt.mu.Unlock()

	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		lt.mu.Lock()
		defer lt.mu.Unlock()
		errc <- lt.tr.Lock(ctx, 4*K, 12*K, 2)
	}()
	lt.waitFor(t, "a waiter", func() bool { return lt.tr.Waiters() == 1 })
	cancel()
	err := <-errc
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Lock after cancel = %v, want context.Canceled", err)
	}
	lt.mu.Lock()
	defer lt.mu.Unlock()
	if lt.tr.TestAny(8*K, 64*K, Locked) || lt.tr.Waiters() != 0 {
		t.Fatalf("cancelled Lock left state behind: %v, %d waiters", records(lt.tr), lt.tr.Waiters())
	}
	wantRecords(t, lt.tr, Range{0, 8 * K, Locked, 1})
}

func TestLockWaitsForUnlockThenAcquires(t *testing.T) {
	lt := newLockedTree(t, 64, K)
	lt.mu.Lock()
	lt.tr.Set(0, 4*K, Locked, 1)
	lt.tr.Set(8*K, 12*K, Locked, 1)
	lt.mu.Unlock()
	got := make(chan error, 1)
	go func() {
		lt.mu.Lock()
		defer lt.mu.Unlock()
		got <- lt.tr.Lock(context.Background(), 2*K, 10*K, 2)
	}()
	lt.waitFor(t, "a waiter", func() bool { return lt.tr.Waiters() == 1 })
	lt.mu.Lock()
	lt.tr.Unlock(0, 4*K) // the first conflict goes; the second remains
	lt.mu.Unlock()
	lt.waitFor(t, "the retry to wait on the second conflict", func() bool {
		return lt.tr.woken == 1 && lt.tr.Waiters() == 1
	})
	lt.mu.Lock()
	if lt.tr.TestAny(2*K, 8*K, Locked) {
		t.Errorf("Lock took part of its range while waiting: %v", records(lt.tr))
	}
	lt.tr.Unlock(8*K, 12*K)
	lt.mu.Unlock()
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	lt.mu.Lock()
	defer lt.mu.Unlock()
	wantRecords(t, lt.tr, Range{2 * K, 10 * K, Locked, 2})
}

// TestLockStress runs goroutines that lock, wait and cancel at random over a
// small device. Each checks that its locked range is exclusively its own; a
// lost wake-up would leave a goroutine blocked forever with a background
// context, which the deadline reports.
func TestLockStress(t *testing.T) {
	const (
		blocks  = 32
		workers = 6
		iters   = 300
	)
	lt := newLockedTree(t, blocks, K)
	holder := make([]int, blocks) // guarded by lt.mu; 0 = free
	var wg sync.WaitGroup
	for w := 1; w <= workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 99))
			for range iters {
				a := r.Int64N(blocks)
				b := min(a+1+r.Int64N(6), blocks)
				ctx, cancel := context.Background(), context.CancelFunc(func() {})
				switch r.IntN(4) {
				case 0:
					ctx, cancel = context.WithTimeout(ctx, time.Duration(r.IntN(200))*time.Microsecond)
				case 1:
					ctx, cancel = context.WithCancel(ctx)
					go func() { runtime.Gosched(); cancel() }()
				}
				lt.mu.Lock()
				var err error
				if r.IntN(5) == 0 {
					// Wait for Writeback instead, which others set
					// and clear below.
					err = lt.tr.WaitClear(ctx, a*K, b*K, Writeback)
					if err == nil && lt.tr.TestAny(a*K, b*K, Writeback) {
						t.Errorf("WaitClear returned with Writeback set")
					}
					lt.mu.Unlock()
					cancel()
					continue
				}
				err = lt.tr.Lock(ctx, a*K, b*K, uint32(w))
				if err != nil {
					if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
						t.Errorf("Lock: %v", err)
					}
					lt.mu.Unlock()
					cancel()
					continue
				}
				for i := a; i < b; i++ {
					if holder[i] != 0 {
						t.Errorf("block %d locked by %d and %d", i, holder[i], w)
					}
					holder[i] = w
				}
				lt.tr.Set(a*K, b*K, Writeback, uint32(w))
				lt.mu.Unlock()
				runtime.Gosched()
				lt.mu.Lock()
				for i := a; i < b; i++ {
					holder[i] = 0
				}
				lt.tr.Clear(a*K, b*K, Writeback)
				lt.tr.Unlock(a*K, b*K)
				lt.mu.Unlock()
				cancel()
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		buf := make([]byte, 1<<20)
		t.Fatalf("deadlock or lost wake-up; goroutines:\n%s", buf[:runtime.Stack(buf, true)])
	}
	lt.mu.Lock()
	defer lt.mu.Unlock()
	if lt.tr.Len() != 0 || lt.tr.Waiters() != 0 {
		t.Fatalf("after all workers: records %v, %d waiters", records(lt.tr), lt.tr.Waiters())
	}
	t.Logf("%d wake-ups", lt.tr.woken)
}
