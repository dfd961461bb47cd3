package e2e

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/extentd/extentd/device/memdev"
	"github.com/extentd/extentd/nbdserver"
	"github.com/extentd/extentd/nbdserver/nbdtest"
)

// TestTinyPipeline: with one worker and one request in flight per
// connection, 100 pipelined requests still complete (no deadlock between
// the reader, the workers and the reply writer).
func TestTinyPipeline(t *testing.T) {
	for _, cfg := range []struct{ inFlight, workers int }{{1, 1}, {2, 8}, {64, 1}} {
		e := newEnv(t, func(o *nbdserver.Options) { o.MaxInFlight, o.Workers = cfg.inFlight, cfg.workers })
		c := e.dial(defaultOpts())
		var calls []*nbdtest.Call
		for i := 0; i < 100; i++ {
			req := nbdtest.Request{Type: nbdtest.CmdWrite, Offset: uint64(i) << 16, Payload: pattern(byte(i), 1<<16)}
			if i%2 == 1 {
				req = nbdtest.Request{Type: nbdtest.CmdRead, Offset: uint64(i-1) << 16, Length: 1 << 16}
			}
			call, err := c.Submit(req)
			if err != nil {
				t.Fatal(err)
			}
			calls = append(calls, call)
		}
		for i, call := range calls {
			if err := call.Wait(20 * time.Second); err != nil {
				t.Fatalf("in-flight %d workers %d: request %d: %v", cfg.inFlight, cfg.workers, i, err)
			}
		}
		// Reads may overtake the write before them; check afterwards.
		got := make([]byte, 1<<16)
		for i := 0; i < 100; i += 2 {
			if _, err := c.ReadAt(got, int64(i)<<16); err != nil || !bytes.Equal(got, pattern(byte(i), 1<<16)) {
				t.Fatalf("in-flight %d workers %d: block %d: %v", cfg.inFlight, cfg.workers, i, err)
			}
		}
	}
}

// TestSmallMaxPayload: with Options.MaxPayload of 1 MiB the advertised
// maximum block size must not promise more, a write of exactly that size
// must work, and a bigger one (still under the 32 MiB every client may
// send) is refused without losing the connection or it is closed.
func TestSmallMaxPayload(t *testing.T) {
	e := newEnv(t, func(o *nbdserver.Options) { o.MaxPayload = 1 << 20 })
	c := e.dial(defaultOpts())
	info := c.Export()
	if !info.HasBlockSize {
		t.Fatal("no NBD_INFO_BLOCK_SIZE")
	}
	if info.MaxBlock > 1<<20 {
		t.Errorf("advertised maximum block %d exceeds MaxPayload 1 MiB", info.MaxBlock)
	}
	p := pattern(1, int(min(info.MaxBlock, 1<<20)))
	if _, err := c.WriteAt(p, 0); err != nil {
		t.Fatalf("write of the advertised maximum (%d bytes): %v", len(p), err)
	}
	_, err := c.WriteAt(make([]byte, 2<<20), 4<<20)
	switch {
	case err == nil:
		t.Fatal("2 MiB write accepted with MaxPayload 1 MiB")
	case errors.Is(err, nbdtest.ErrClosed):
		t.Logf("2 MiB write: connection closed")
		c = e.dial(defaultOpts())
	case !errors.Is(err, nbdtest.EINVAL) && !errors.Is(err, nbdtest.EOVERFLOW):
		t.Fatalf("2 MiB write: %v, want EINVAL or EOVERFLOW", err)
	}
	got := make([]byte, len(p))
	if _, err := c.ReadAt(got, 0); err != nil || !bytes.Equal(got, p) {
		t.Fatalf("read back: %v", err)
	}
}

// TestOverflowRanges: offset+length wrapping around 2^64 with extended
// headers (64-bit lengths) must be refused, not wrap.
func TestOverflowRanges(t *testing.T) {
	e := newEnv(t)
	c := e.dial(nbdtest.Options{ExtendedHeaders: true, MetaContexts: []string{nbdtest.ContextBaseAllocation}})
	r := func(typ uint16, off, n uint64) nbdtest.Request {
		return nbdtest.Request{Type: typ, Offset: off, Length: n}
	}
	anyErr := []nbdtest.Errno{nbdtest.EINVAL, nbdtest.ENOSPC, nbdtest.EOVERFLOW}
	runErrCases(t, c, []errCase{
		{"block status wraps", r(nbdtest.CmdBlockStatus, 4096, 1<<64-1), []nbdtest.Errno{nbdtest.EINVAL}},
		{"trim wraps", r(nbdtest.CmdTrim, 4096, 1<<64-4096), []nbdtest.Errno{nbdtest.EINVAL}},
		{"zero wraps", r(nbdtest.CmdWriteZeroes, 4096, 1<<64-4096), anyErr},
		{"cache wraps", r(nbdtest.CmdCache, 1<<63, 1<<63), []nbdtest.Errno{nbdtest.EINVAL}},
		{"read wraps", r(nbdtest.CmdRead, 1<<64-1, 2), anyErr},
		{"trim 2^63", r(nbdtest.CmdTrim, 0, 1<<63), []nbdtest.Errno{nbdtest.EINVAL}},
	})
}

// TestShutdownUnderLoad: Shutdown while clients connect, negotiate and
// write; no panic or race, Shutdown returns, Serve returns
// ErrServerClosed.
func TestShutdownUnderLoad(t *testing.T) {
	srv, addr, served := serve(t, "tcp", nbdserver.Options{
		Exports: []nbdserver.Export{{Name: "", Device: memdev.New(defaultSize, memdev.Options{}), MultiConn: true}},
		Logger:  zaptest.NewLogger(t),
	})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				c, err := nbdtest.Dial(ctx, "tcp", addr, nbdtest.Options{StructuredReplies: g%2 == 0, Timeout: 5 * time.Second})
				cancel()
				if err != nil {
					continue // refused or closed during shutdown
				}
				for j := 0; j < 8; j++ {
					if _, err := c.WriteAt(pattern(byte(j), 4096), int64(g*8+j)*4096); err != nil {
						break
					}
				}
				_ = c.Close()
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown under load: %v", err)
	}
	close(stop)
	wg.Wait()
	if err := serveResult(served); err != nil {
		t.Fatal(err)
	}
}

// TestExtendedBigRead: with extended headers a READ may exceed the
// maximum payload; the server either answers it correctly (in several
// chunks) or refuses it with EINVAL/EOVERFLOW, and the connection stays
// usable.
func TestExtendedBigRead(t *testing.T) {
	e := newEnv(t)
	w := e.dial(defaultOpts())
	p := pattern(77, 1<<20)
	if _, err := w.WriteAt(p, 47<<20); err != nil {
		t.Fatal(err)
	}
	c := e.dial(nbdtest.Options{ExtendedHeaders: true})
	call, err := c.Do(nbdtest.Request{Type: nbdtest.CmdRead, Offset: 0, Length: 48 << 20})
	switch {
	case err == nil:
		if !bytes.Equal(call.Data[47<<20:], p) || !bytes.Equal(call.Data[:1<<20], make([]byte, 1<<20)) {
			t.Fatal("48 MiB extended read returned wrong data")
		}
		t.Logf("48 MiB extended read answered in %d chunks", len(call.Chunks))
	case errors.Is(err, nbdtest.EINVAL), errors.Is(err, nbdtest.EOVERFLOW):
		t.Logf("48 MiB extended read refused: %v", err)
	default:
		t.Fatalf("48 MiB extended read: %v", err)
	}
	got := make([]byte, len(p))
	if _, err := c.ReadAt(got, 47<<20); err != nil || !bytes.Equal(got, p) {
		t.Fatalf("read after big read: %v", err)
	}
}
