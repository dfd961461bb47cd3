package extentcache

import (
	"bytes"
	"testing"
	"time"
)

// TestIdle: Idle writes back one dirty cluster at a time, on the caller,
// only while clients flush often; it never claims while a lower sync is in
// progress; and what it wrote is durable after the next flush.
func TestIdle(t *testing.T) {
	const size, bs = 1 << 20, 4096
	lower, c, model := newQuietCache(t, size)
	mustWrite(t, c, model, fill(1, 10*bs, bs), 10*bs)
	if c.Idle() {
		t.Fatal("Idle wrote back before any client flush")
	}
	for range 3 { // a client that flushes often
		if err := c.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	lower.takeWrites()
	for i := range int64(4) {
		mustWrite(t, c, model, fill(byte(2+i), (20+2*i)*bs, bs), (20+2*i)*bs)
	}
	for i := range 4 {
		if !c.Idle() {
			t.Fatalf("Idle %d did nothing with dirty data and a syncing client", i)
		}
	}
	if c.Idle() {
		t.Fatal("Idle did something with nothing dirty")
	}
	if ws := lower.takeWrites(); len(ws) != 4 {
		t.Fatalf("Idle made %d lower writes, want 4: %v", len(ws), ws)
	}
	if st := c.Stats(); st.DirtyBytes != 0 || st.IdleIOs != 4 {
		t.Fatalf("after Idle: %d dirty bytes, %d idle I/Os; want 0 and 4", st.DirtyBytes, st.IdleIOs)
	}

	// A lower sync in progress: Idle must not claim (what it wrote could
	// be taken as synced).
	gate := make(chan struct{})
	lower.mu.Lock()
	lower.flushGate = gate
	lower.mu.Unlock()
	flushed := make(chan error, 1)
	go func() { flushed <- c.Flush() }()
	<-gate // lower Flush started
	mustWrite(t, c, model, fill(9, 40*bs, bs), 40*bs)
	if c.Idle() {
		t.Fatal("Idle wrote back during a lower sync")
	}
	gate <- struct{}{}
	if err := <-flushed; err != nil {
		t.Fatal(err)
	}
	lower.mu.Lock()
	lower.flushGate = nil
	lower.mu.Unlock()
	if !c.Idle() {
		t.Fatal("Idle did nothing after the sync ended")
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(lower.image(), model) {
		t.Fatal("lower differs from the model")
	}

	// The client stops flushing: after a few of its intervals Idle stops.
	c.mu.Lock()
	c.lastFlush = time.Now().Add(-time.Hour)
	c.mu.Unlock()
	mustWrite(t, c, model, fill(10, 50*bs, bs), 50*bs)
	if c.Idle() {
		t.Fatal("Idle wrote back for a client that stopped flushing")
	}
}
