package nbdserver

import (
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/extentd/extentd/device"
)

// socketPair returns two connected Unix stream sockets as net.Conns.
func socketPair(tb testing.TB) (net.Conn, net.Conn) {
	tb.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		tb.Fatal(err)
	}
	conns := make([]net.Conn, 2)
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "socketpair")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			tb.Fatal(err)
		}
		conns[i] = c
	}
	return conns[0], conns[1]
}

// benchConn serves a flatDevice export on one end of a socketpair and
// returns a raw client in transmission on the other end. The server logs
// nothing, as in production at Info level.
func benchConn(tb testing.TB, size int, structured bool) *rawClient {
	tb.Helper()
	return benchConnDevice(tb, &flatDevice{b: make([]byte, size)}, structured)
}

func benchConnDevice(tb testing.TB, d device.Device, structured bool) *rawClient {
	tb.Helper()
	s, err := New(Options{Exports: []Export{{Device: d}}, Logger: zap.NewNop()})
	if err != nil {
		tb.Fatal(err)
	}
	cs, cc := socketPair(tb)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.ServeConn(tb.Context(), cs)
	}()
	tb.Cleanup(func() { cc.Close(); <-done })
	rc := newRawClient(tb, cc)
	rc.open("", structured, false, false)
	rc.c.SetDeadline(time.Time{})
	return rc
}

// roundTrip is a zero-allocation client step: one request, one simple
// reply, with caller-owned buffers.
type roundTrip struct {
	c     net.Conn
	req   []byte // header (+ payload)
	reply []byte // simple reply header (+ data)
}

func newRoundTrip(rc *rawClient, h requestHeader, payload []byte, readLen int) *roundTrip {
	var b [sizeExtendedRequest]byte
	n := putRequest(b[:], h, false)
	return &roundTrip{
		c:     rc.c,
		req:   append(b[:n:n], payload...),
		reply: make([]byte, sizeSimpleReply+readLen),
	}
}

func (rt *roundTrip) do(tb testing.TB) {
	if _, err := rt.c.Write(rt.req); err != nil {
		tb.Fatal(err)
	}
	if _, err := io.ReadFull(rt.c, rt.reply); err != nil {
		tb.Fatal(err)
	}
	switch rt.reply[0] {
	case 0x67: // simple reply: error field must be zero
		if rt.reply[7] != 0 {
			tb.Fatalf("bad reply %x", rt.reply[:16])
		}
	case 0x66: // structured: the first chunk must not be an error
		if rt.reply[6]&0x80 != 0 {
			tb.Fatalf("bad reply %x", rt.reply[:20])
		}
	default:
		tb.Fatalf("bad reply %x", rt.reply[:16])
	}
}

// TestZeroAllocsReadWrite pins the steady-state allocation budget of READ
// and WRITE: nothing on the server (and nothing on this client).
func TestZeroAllocsReadWrite(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation pin")
	}
	rc := benchConn(t, 8<<20, false)
	src := benchConnDevice(t, &flatExtDevice{flatDevice: flatDevice{b: make([]byte, 8<<20)}, holeEnd: 1 << 20}, true)
	structuredRead := func(off, n, replyLen int) *roundTrip {
		rt := newRoundTrip(src, requestHeader{cmd: CmdRead, cookie: 9, off: uint64(off), length: uint64(n)}, nil, 0)
		rt.reply = make([]byte, replyLen)
		return rt
	}
	for _, tc := range []struct {
		name string
		rt   *roundTrip
	}{
		{"write 4k", newRoundTrip(rc, requestHeader{cmd: CmdWrite, cookie: 1, off: 4096, length: 4096}, pattern(4096, 1), 0)},
		{"read 4k", newRoundTrip(rc, requestHeader{cmd: CmdRead, cookie: 2, off: 4096, length: 4096}, nil, 4096)},
		{"write 1m", newRoundTrip(rc, requestHeader{cmd: CmdWrite, cookie: 3, off: 1 << 20, length: 1 << 20}, pattern(1<<20, 2), 0)},
		{"read 1m", newRoundTrip(rc, requestHeader{cmd: CmdRead, cookie: 4, off: 1 << 20, length: 1 << 20}, nil, 1<<20)},
		// One OFFSET_DATA chunk.
		{"structured read 4k", structuredRead(2<<20, 4096, sizeStructuredReply+8+4096)},
		// An OFFSET_HOLE chunk, then an OFFSET_DATA chunk.
		{"sparse read 64k", structuredRead(1<<20-32<<10, 64<<10, 2*sizeStructuredReply+sizeHoleChunk+8+32<<10)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.rt.do(t) // warm the pools
			a := testing.AllocsPerRun(200, func() { tc.rt.do(t) })
			t.Logf("%s: %.3f allocs per request", tc.name, a)
			if a > 0.05 {
				t.Fatalf("%s: %.2f allocations per request, want 0", tc.name, a)
			}
		})
	}
}
