package integration

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/extentd/extentd/nbdserver/nbdtest"
)

// Crash tests: the durability contract seen from outside the process.
// An acknowledged FLUSH makes every write completed before it (on any
// connection: the server advertises MULTI_CONN) survive kill -9; a write
// with FUA survives kill -9 as soon as it is acknowledged; a clean stop
// (SIGTERM, exit 0) writes everything back. A kill -9 leaves the host page
// cache intact, so these tests check the server process, not power loss.

const (
	crashSize    = 64 << 20 // device size
	crashDurable = 48 << 20 // [0, crashDurable) is checked after each crash
	crashRounds  = 20
)

// model is the expected device content.
type model struct{ b []byte }

func newModel(size int64) *model { return &model{b: make([]byte, size)} }

// verify reads [off, off+n) through c and compares it with the model,
// naming the first differing byte.
func (m *model) verify(c *nbdtest.Client, off, n int64) error {
	const chunk = 4 << 20
	buf := make([]byte, chunk)
	for p := off; p < off+n; p += chunk {
		l := min(chunk, off+n-p)
		if _, err := c.ReadAt(buf[:l], p); err != nil {
			return fmt.Errorf("read [%d,+%d): %w", p, l, err)
		}
		if want := m.b[p : p+l]; !bytes.Equal(buf[:l], want) {
			i := 0
			for buf[i] == want[i] {
				i++
			}
			return fmt.Errorf("data lost at byte %d: read 0x%02x, want 0x%02x", p+int64(i), buf[i], want[i])
		}
	}
	return nil
}

// fill fills p with pseudo-random bytes from seed.
func fill(seed uint64, p []byte) {
	var key [32]byte
	for i := range 8 {
		key[i] = byte(seed >> (8 * i))
	}
	rand.NewChaCha8(key).Read(p)
}

// randomWrite picks a write inside [lo, hi): mostly 512-byte aligned like
// a kernel client, sometimes unaligned (read-modify-write in the cache),
// sometimes 1 MiB or more and 4 KiB aligned (written through to the image
// by extentd serve).
func randomWrite(r *rand.Rand, lo, hi int64) (off int64, p []byte) {
	var n int64
	switch k := r.IntN(16); {
	case k < 4:
		n = 1 + r.Int64N(64<<10)
		off = lo + r.Int64N(hi-lo-n)
	case k < 6:
		n = 1<<20 + 4096*r.Int64N(256)
		off = lo + 4096*r.Int64N((hi-lo-n)/4096)
	default:
		n = 512 * (1 + r.Int64N(512)) // up to 256 KiB
		off = lo + 512*r.Int64N((hi-lo-n)/512)
	}
	p = make([]byte, n)
	fill(r.Uint64(), p)
	return off, p
}

// crashLoop runs rounds of: writes to [0, crashDurable) spread over two
// connections, made durable by one FLUSH (useFUA false) or by FUA on each
// write (useFUA true); more writes to the scratch area that are never
// flushed and still in flight; kill -9; restart; every durable byte must
// read back. It returns the first loss (nil if none); protocol errors fail
// the test.
func crashLoop(t *testing.T, s *server, rounds int, useFUA bool, seed uint64) error {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 1))
	m := newModel(crashSize)
	for round := range rounds {
		a, b := s.dial(t), s.dial(t)
		conns := []*nbdtest.Client{a, b}
		var calls []*nbdtest.Call
		for i := range 8 + r.IntN(16) {
			off, p := randomWrite(r, 0, crashDurable)
			var flags uint16
			if useFUA {
				flags = nbdtest.CmdFlagFUA
			}
			call, err := conns[i%2].Submit(nbdtest.Request{Type: nbdtest.CmdWrite, Flags: flags, Offset: uint64(off), Payload: p})
			if err != nil {
				t.Fatalf("round %d: write: %v", round, err)
			}
			// Overlapping writes in flight together have no defined
			// order: wait for each before the next.
			if err := call.Wait(30 * time.Second); err != nil {
				t.Fatalf("round %d: write [%d,+%d): %v", round, off, len(p), err)
			}
			copy(m.b[off:], p)
		}
		if !useFUA {
			if err := a.Flush(); err != nil {
				t.Fatalf("round %d: flush: %v", round, err)
			}
		}
		// Unflushed writes, some still in flight at the kill.
		for range 16 {
			off, p := randomWrite(r, crashDurable, crashSize)
			call, err := b.Submit(nbdtest.Request{Type: nbdtest.CmdWrite, Offset: uint64(off), Payload: p})
			if err != nil {
				t.Fatalf("round %d: scratch write: %v", round, err)
			}
			calls = append(calls, call)
		}
		_ = calls[0].Wait(30 * time.Second)
		s.kill()
		a.Close()
		b.Close()
		s.start()
		c := s.dial(t)
		err := m.verify(c, 0, crashDurable)
		c.Close()
		if err != nil {
			return fmt.Errorf("round %d of %d after kill -9 (%s): %w", round+1, rounds, map[bool]string{false: "FLUSH", true: "FUA"}[useFUA], err)
		}
	}
	return nil
}

// sigtermLoop runs rounds of: unflushed writes over the whole device on two
// connections, SIGTERM (must exit 0) with the clients still connected or
// not, restart, and every byte must read back. It returns the first loss or a failed clean stop.
func sigtermLoop(t *testing.T, s *server, rounds int, seed uint64) error {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 2))
	m := newModel(crashSize)
	for round := range rounds {
		conns := []*nbdtest.Client{s.dial(t), s.dial(t)}
		for i := range 32 {
			off, p := randomWrite(r, 0, crashSize)
			if _, err := conns[i%2].WriteAt(p, off); err != nil {
				t.Fatalf("round %d: write: %v", round, err)
			}
			copy(m.b[off:], p)
		}
		// Odd rounds disconnect before the stop; even rounds stop the
		// server under attached (idle) clients, as a service manager
		// stopping extentd under a mounted filesystem does (not with
		// nbdkit, which waits for its clients to leave).
		if round%2 == 1 || !s.kind.stopsUnderClients {
			for _, c := range conns {
				c.Close()
			}
		}
		if err := s.stop(); err != nil {
			return fmt.Errorf("round %d: %w", round+1, err)
		}
		for _, c := range conns {
			c.Close()
		}
		s.start()
		c := s.dial(t)
		err := m.verify(c, 0, crashSize)
		c.Close()
		if err != nil {
			return fmt.Errorf("round %d of %d after SIGTERM: %w", round+1, rounds, err)
		}
	}
	return nil
}

func TestCrashFlushSurvivesKill(t *testing.T) {
	s := startServer(t, serverUnderTest(t), filepath.Join(t.TempDir(), "disk.img"), crashSize)
	if err := crashLoop(t, s, crashRounds, false, 1); err != nil {
		t.Fatal(err)
	}
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
}

func TestCrashFUASurvivesKill(t *testing.T) {
	s := startServer(t, serverUnderTest(t), filepath.Join(t.TempDir(), "disk.img"), crashSize)
	if err := crashLoop(t, s, crashRounds, true, 2); err != nil {
		t.Fatal(err)
	}
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
}

func TestCleanStopWritesBack(t *testing.T) {
	s := startServer(t, serverUnderTest(t), filepath.Join(t.TempDir(), "disk.img"), crashSize)
	if err := sigtermLoop(t, s, 5, 3); err != nil {
		t.Fatal(err)
	}
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
}
