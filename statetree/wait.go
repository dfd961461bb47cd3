package statetree

import (
	"context"
	"fmt"
)

// waiter is a goroutine blocked in WaitClear: it is woken (ch closed and the
// waiter removed from the list) when a byte of [start,end) loses a bit of
// bits.
type waiter struct {
	start, end int64
	bits       Bits
	ch         chan struct{}
}

// wake wakes the waiters that overlap [a,b) and wait for a bit of cleared.
func (t *Tree) wake(a, b int64, cleared Bits) {
	ws := t.waiters
	for i := 0; i < len(ws); {
		w := ws[i]
		if w.start < b && a < w.end && w.bits&cleared != 0 {
			close(w.ch)
			t.woken++
			last := len(ws) - 1
			ws[i] = ws[last]
			ws[last] = nil
			ws = ws[:last]
			continue
		}
		i++
	}
	t.waiters = ws
}

// removeWaiter drops w from the list if it is still there.
func (t *Tree) removeWaiter(w *waiter) {
	for i, x := range t.waiters {
		if x == w {
			last := len(t.waiters) - 1
			t.waiters[i] = t.waiters[last]
			t.waiters[last] = nil
			t.waiters = t.waiters[:last]
			return
		}
	}
}

// Waiters returns the number of goroutines blocked in WaitClear or Lock.
func (t *Tree) Waiters() int { return len(t.waiters) }

func (t *Tree) needLocker(op string) {
	if t.locker == nil {
		panic("statetree: " + op + " requires Options.Locker (the mutex guarding the tree)")
	}
}

// WaitClear blocks until no byte of [start,end) has any bit of b. It must be
// called with Options.Locker held; it releases the locker while it sleeps
// and holds it again when it returns, like sync.Cond.Wait. It is woken only
// when a mutation clears one of b on a byte of the range, and then re-checks.
// If ctx is done first it returns an error wrapping ctx.Err().
func (t *Tree) WaitClear(ctx context.Context, start, end int64, b Bits) error {
	t.checkRange("wait", start, end)
	t.needLocker("WaitClear")
	for {
		if !t.TestAny(start, end, b) {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("statetree: wait [%d,%d) for %v clear: %w", start, end, b, err)
		}
		t.sleep(ctx, start, end, b)
	}
}

// sleep registers a waiter for [start,end) and b, releases the locker until
// it is woken or ctx is done, and takes the locker again.
func (t *Tree) sleep(ctx context.Context, start, end int64, b Bits) {
	w := &waiter{start: start, end: end, bits: b, ch: make(chan struct{})}
	t.waiters = append(t.waiters, w)
	t.locker.Unlock()
	select {
	case <-w.ch:
	case <-ctx.Done():
	}
	t.locker.Lock()
	t.removeWaiter(w)
}

// Lock sets Locked with owner over [start,end), waiting while any byte of
// the range is already Locked. Like Set, it makes owner the owner of every
// byte of the range (whatever other bits they have); Unlock keeps it. It acquires all or nothing: it tries an
// exclusive set, and on conflict waits (holding nothing) until the
// conflicting block is unlocked, then retries the whole range. There is no
// fairness or FIFO order, as in btrfs. It must be called with
// Options.Locker held (released while waiting, held on return). If ctx is
// done before the range is free it returns an error wrapping ctx.Err() and
// nothing is locked; a range that is free is locked even if ctx is done.
//
// Lock order: a caller must not hold another Locked range, or any resource
// the holder of this range may need, while it calls Lock.
func (t *Tree) Lock(ctx context.Context, start, end int64, owner uint32) error {
	t.checkRange("lock", start, end)
	t.needLocker("Lock")
	for {
		ok, at := t.TrySetExclusive(start, end, Locked, owner)
		if ok {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("statetree: lock [%d,%d): %w", start, end, err)
		}
		// Wait for the first conflicting block only: once it is
		// unlocked the whole range is retried.
		t.sleep(ctx, at, min(at+t.blockSize, end), Locked)
	}
}

// Unlock clears Locked over [start,end) and wakes the waiters it unblocks.
// Unlocking bytes that are not locked is allowed and changes nothing.
func (t *Tree) Unlock(start, end int64) {
	t.checkRange("unlock", start, end)
	t.apply(start, end, op{clear: Locked})
}
