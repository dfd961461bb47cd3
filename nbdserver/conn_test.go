package nbdserver

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/extentd/extentd/device"
	"github.com/extentd/extentd/device/memdev"
)

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7)
	}
	return b
}

func TestSimpleCommands(t *testing.T) {
	d := memdev.New(1<<20, memdev.Options{})
	s := newTestServer(t, Options{Exports: []Export{{Device: d}}})
	rc := pipeClient(t, s)
	size, tflags := rc.open("", false, false, false)
	if size != 1<<20 || tflags&(tflagSendFlush|tflagSendFUA|tflagSendTrim|tflagSendWriteZeroes) == 0 {
		t.Fatalf("size %d flags %#x", size, tflags)
	}
	data := pattern(8192, 1)
	steps := []struct {
		name    string
		h       requestHeader
		payload []byte
		want    Errno
		read    []byte
	}{
		{"write", requestHeader{cmd: CmdWrite, off: 4096, length: 8192}, data, 0, nil},
		{"read back", requestHeader{cmd: CmdRead, off: 4096, length: 8192}, nil, 0, data},
		{"write FUA", requestHeader{cmd: CmdWrite, flags: cmdFlagFUA, off: 0, length: 512}, data[:512], 0, nil},
		{"flush", requestHeader{cmd: CmdFlush}, nil, 0, nil},
		{"trim", requestHeader{cmd: CmdTrim, off: 4096, length: 4096}, nil, 0, nil},
		{"read trimmed", requestHeader{cmd: CmdRead, off: 4096, length: 4096}, nil, 0, make([]byte, 4096)},
		{"zero no hole", requestHeader{cmd: CmdWriteZeroes, flags: cmdFlagNoHole, off: 8192, length: 4096}, nil, 0, nil},
		{"read zeroed", requestHeader{cmd: CmdRead, off: 8192, length: 4096}, nil, 0, make([]byte, 4096)},
		{"fast zero", requestHeader{cmd: CmdWriteZeroes, flags: cmdFlagFastZero, off: 0, length: 4096}, nil, 0, nil},
		{"cache", requestHeader{cmd: CmdCache, off: 0, length: 1 << 20}, nil, 0, nil},
		{"zero-length read", requestHeader{cmd: CmdRead, off: 0, length: 0}, nil, 0, nil},
		{"unknown command", requestHeader{cmd: 42, off: 0, length: 0}, nil, EINVAL, nil},
		{"block status without contexts", requestHeader{cmd: CmdBlockStatus, length: 512}, nil, EINVAL, nil},
		{"read past end", requestHeader{cmd: CmdRead, off: 1 << 20, length: 1}, nil, EINVAL, nil},
		{"write past end", requestHeader{cmd: CmdWrite, off: 1<<20 - 1, length: 2}, []byte{1, 2}, ENOSPC, nil},
		{"still serving", requestHeader{cmd: CmdRead, off: 4096 + 4096, length: 4096}, nil, 0, make([]byte, 4096)},
	}
	for i, st := range steps {
		st.h.cookie = uint64(i) << 40
		errno, got, _ := rc.do(st.h, st.payload)
		if errno != st.want {
			t.Fatalf("%s: errno %v, want %v", st.name, errno, st.want)
		}
		if st.read != nil && !bytes.Equal(got, st.read) {
			t.Fatalf("%s: data mismatch", st.name)
		}
	}
	st := d.Stats()
	if st.Calls[memdev.OpSync]+st.Calls[memdev.OpFlush] < 2 {
		t.Fatalf("FUA and FLUSH did not reach the device: %+v", st.Calls)
	}
	rc.send(requestHeader{cmd: CmdDisc}, nil)
	if !rc.closed() {
		t.Fatal("DISC did not close the connection")
	}
}

func TestReadOnlyExport(t *testing.T) {
	rc := pipeClient(t, newTestServer(t, Options{}))
	_, tflags := rc.open("ro", false, false, false)
	if tflags&tflagReadOnly == 0 {
		t.Fatalf("flags %#x", tflags)
	}
	for _, h := range []requestHeader{
		{cmd: CmdWrite, length: 1},
		{cmd: CmdTrim, length: 1},
		{cmd: CmdWriteZeroes, length: 1},
	} {
		var p []byte
		if h.cmd == CmdWrite {
			p = []byte{9}
		}
		if errno, _, _ := rc.do(h, p); errno != EPERM {
			t.Fatalf("%v on read-only export: %v, want EPERM", h.cmd, errno)
		}
	}
}

func TestFastZeroNotOffered(t *testing.T) {
	d := memdev.New(1<<20, memdev.Options{})
	s := newTestServer(t, Options{Exports: []Export{{Device: slowZeroDevice{plainDevice{d}}}}})
	rc := pipeClient(t, s)
	_, tflags := rc.open("", false, false, false)
	if tflags&tflagSendFastZero != 0 || tflags&tflagSendWriteZeroes == 0 {
		t.Fatalf("flags %#x", tflags)
	}
	// nbdkit 1.32 aborted the whole server here; we answer EINVAL.
	if errno, _, _ := rc.do(requestHeader{cmd: CmdWriteZeroes, flags: cmdFlagFastZero, length: 512}, nil); errno != EINVAL {
		t.Fatalf("unoffered FAST_ZERO: %v, want EINVAL", errno)
	}
	if errno, _, _ := rc.do(requestHeader{cmd: CmdWriteZeroes, length: 512}, nil); errno != 0 {
		t.Fatalf("WRITE_ZEROES: %v", errno)
	}
	if errno, _, _ := rc.do(requestHeader{cmd: CmdTrim, length: 512}, nil); errno != EINVAL {
		t.Fatalf("unoffered TRIM: %v, want EINVAL", errno)
	}
}

func TestDeviceErrors(t *testing.T) {
	d := memdev.New(1<<20, memdev.Options{})
	d.WriteAt(pattern(4096, 1), 0) // data, so sparse reads call ReadAt
	s := newTestServer(t, Options{Exports: []Export{{Device: d}}})
	for _, structured := range []bool{false, true} {
		t.Run(fmt.Sprintf("structured=%v", structured), func(t *testing.T) {
			rc := pipeClient(t, s)
			rc.open("", structured, false, false)
			for _, tc := range []struct {
				op   memdev.Op
				err  error
				h    requestHeader
				want Errno
			}{
				{memdev.OpRead, syscall.EIO, requestHeader{cmd: CmdRead, length: 4096}, EIO},
				{memdev.OpWrite, device.ErrNoSpace, requestHeader{cmd: CmdWrite, length: 4096}, ENOSPC},
				{memdev.OpFlush, syscall.EIO, requestHeader{cmd: CmdFlush}, EIO},
				{memdev.OpTrim, syscall.EROFS, requestHeader{cmd: CmdTrim, length: 4096}, EPERM},
				{memdev.OpZero, syscall.EDQUOT, requestHeader{cmd: CmdWriteZeroes, length: 4096}, ENOSPC},
			} {
				d.InjectFault(tc.op, fmt.Errorf("injected: %w", tc.err), 1)
				var p []byte
				if tc.h.cmd == CmdWrite {
					p = make([]byte, tc.h.length)
				}
				errno, _, chunks := rc.do(tc.h, p)
				if errno != tc.want {
					t.Fatalf("%v with %v: errno %v, want %v", tc.h.cmd, tc.err, errno, tc.want)
				}
				if structured {
					if len(chunks) != 1 || chunks[0].typ != replyTypeError || chunks[0].errMsg() == "" {
						t.Fatalf("%v: want one error chunk with a message, got %+v", tc.h.cmd, chunks)
					}
				}
			}
			// The connection still serves.
			if errno, _, _ := rc.do(requestHeader{cmd: CmdRead, length: 512}, nil); errno != 0 {
				t.Fatalf("read after errors: %v", errno)
			}
		})
	}
}

func TestStructuredRead(t *testing.T) {
	d := memdev.New(1<<20, memdev.Options{})
	data := pattern(64<<10, 3)
	d.WriteAt(data, 128<<10) // memdev chunks are 64 KiB: [128K,192K) is data
	s := newTestServer(t, Options{Exports: []Export{{Device: d}}})
	rc := pipeClient(t, s)
	rc.open("", true, false, false)
	want := make([]byte, 256<<10)
	copy(want[64<<10:], data)

	errno, got, chunks := rc.do(requestHeader{cmd: CmdRead, cookie: 1, off: 64 << 10, length: 256 << 10}, nil)
	if errno != 0 || !bytes.Equal(got, want) {
		t.Fatalf("sparse read: errno %v, data equal %v", errno, bytes.Equal(got, want))
	}
	var types []uint16
	for _, c := range chunks {
		types = append(types, c.typ)
	}
	wantTypes := []uint16{replyTypeOffsetHole, replyTypeOffsetData, replyTypeOffsetHole}
	if fmt.Sprint(types) != fmt.Sprint(wantTypes) || chunks[2].flags&replyFlagDone == 0 {
		t.Fatalf("chunk types %v, want %v (last DONE)", types, wantTypes)
	}

	errno, got, chunks = rc.do(requestHeader{cmd: CmdRead, flags: cmdFlagDF, cookie: 2, off: 64 << 10, length: 256 << 10}, nil)
	if errno != 0 || !bytes.Equal(got, want) || len(chunks) != 1 || chunks[0].typ != replyTypeOffsetData {
		t.Fatalf("DF read: errno %v, %d chunks", errno, len(chunks))
	}

	errno, _, chunks = rc.do(requestHeader{cmd: CmdRead, cookie: 3, off: 1 << 20, length: 512}, nil)
	if errno != EINVAL || len(chunks) != 1 || chunks[0].errMsg() == "" {
		t.Fatalf("read past end: errno %v chunks %+v", errno, chunks)
	}
	errno, _, chunks = rc.do(requestHeader{cmd: CmdRead, cookie: 4, length: 0}, nil)
	if errno != 0 || len(chunks) != 1 || chunks[0].typ != replyTypeNone {
		t.Fatalf("zero-length read: errno %v chunks %+v", errno, chunks)
	}
	// Other commands get short simple replies under structured replies.
	rc.send(requestHeader{cmd: CmdFlush, cookie: 5}, nil)
	if r := rc.readReply(0); !r.simple || r.errno != 0 || r.cookie != 5 {
		t.Fatalf("flush reply %+v", r)
	}
}

// decodeExtents parses a BLOCK_STATUS(_EXT) chunk payload into
// (length, flags) pairs.
func decodeExtents(t *testing.T, r reply, extended bool) [][2]uint64 {
	t.Helper()
	var out [][2]uint64
	if binary.BigEndian.Uint32(r.data) != metaBaseAllocationID {
		t.Fatalf("context id %d", binary.BigEndian.Uint32(r.data))
	}
	p := r.data[4:]
	if extended {
		if r.typ != replyTypeBlockStatusExt || int(binary.BigEndian.Uint32(p))*16 != len(p)-4 {
			t.Fatalf("bad BLOCK_STATUS_EXT chunk %+v", r)
		}
		for p = p[4:]; len(p) > 0; p = p[16:] {
			out = append(out, [2]uint64{binary.BigEndian.Uint64(p), binary.BigEndian.Uint64(p[8:])})
		}
		return out
	}
	if r.typ != replyTypeBlockStatus || len(p)%8 != 0 {
		t.Fatalf("bad BLOCK_STATUS chunk %+v", r)
	}
	for ; len(p) > 0; p = p[8:] {
		out = append(out, [2]uint64{uint64(binary.BigEndian.Uint32(p)), uint64(binary.BigEndian.Uint32(p[4:]))})
	}
	return out
}

func TestBlockStatus(t *testing.T) {
	d := memdev.New(1<<20, memdev.Options{})
	d.WriteAt(pattern(4096, 1), 64<<10)
	s := newTestServer(t, Options{Exports: []Export{{Device: d}, {Name: "plain", Device: plainDevice{d}}}})
	const hz = stateHole | stateZero
	for _, tc := range []struct {
		name     string
		export   string
		extended bool
		h        requestHeader
		want     [][2]uint64
	}{
		{"compact", "", false, requestHeader{cmd: CmdBlockStatus, off: 0, length: 256 << 10},
			[][2]uint64{{64 << 10, hz}, {64 << 10, 0}, {128 << 10, hz}}},
		{"extended", "", true, requestHeader{cmd: CmdBlockStatus, off: 0, length: 256 << 10},
			[][2]uint64{{64 << 10, hz}, {64 << 10, 0}, {128 << 10, hz}}},
		{"req one", "", false, requestHeader{cmd: CmdBlockStatus, flags: cmdFlagReqOne, off: 4096, length: 256 << 10},
			[][2]uint64{{60 << 10, hz}}},
		{"clipped to request", "", false, requestHeader{cmd: CmdBlockStatus, off: 70 << 10, length: 10 << 10},
			[][2]uint64{{10 << 10, 0}}},
		{"no extenter", "plain", true, requestHeader{cmd: CmdBlockStatus, off: 512, length: 1000},
			[][2]uint64{{1000, 0}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := pipeClient(t, s)
			rc.open(tc.export, true, true, tc.extended)
			tc.h.cookie = 77
			errno, _, chunks := rc.do(tc.h, nil)
			if errno != 0 || len(chunks) != 1 || chunks[0].flags&replyFlagDone == 0 {
				t.Fatalf("errno %v chunks %+v", errno, chunks)
			}
			if got := decodeExtents(t, chunks[0], tc.extended); fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("extents %v, want %v", got, tc.want)
			}
		})
	}
}

func TestExtendedHeaders(t *testing.T) {
	d := memdev.New(1<<20, memdev.Options{})
	s := newTestServer(t, Options{Exports: []Export{{Device: d}}})
	rc := pipeClient(t, s)
	_, tflags := rc.open("", false, false, true)
	if tflags&tflagSendDF == 0 {
		t.Fatalf("flags %#x", tflags)
	}
	data := pattern(8192, 5)
	steps := []struct {
		name    string
		h       requestHeader
		payload []byte
		want    Errno
		typ     uint16
	}{
		{"write", requestHeader{cmd: CmdWrite, flags: cmdFlagPayloadLen, off: 8192, length: 8192}, data, 0, replyTypeNone},
		{"read", requestHeader{cmd: CmdRead, off: 8192, length: 8192}, nil, 0, replyTypeOffsetData},
		{"write without PAYLOAD_LEN", requestHeader{cmd: CmdWrite, off: 0, length: 8192}, nil, EINVAL, replyTypeError},
		{"trim with payload", requestHeader{cmd: CmdTrim, flags: cmdFlagPayloadLen, off: 0, length: 16}, make([]byte, 16), EINVAL, replyTypeError},
		{"zero 64-bit past end", requestHeader{cmd: CmdWriteZeroes, off: 0, length: 1 << 33}, nil, ENOSPC, replyTypeError},
		{"flush", requestHeader{cmd: CmdFlush}, nil, 0, replyTypeNone},
		{"read again", requestHeader{cmd: CmdRead, off: 8192, length: 8192}, nil, 0, replyTypeOffsetData},
	}
	for i, st := range steps {
		st.h.cookie = uint64(100 + i)
		errno, got, chunks := rc.do(st.h, st.payload)
		if errno != st.want || len(chunks) == 0 || chunks[len(chunks)-1].typ != st.typ {
			t.Fatalf("%s: errno %v chunks %+v", st.name, errno, chunks)
		}
		if st.h.cmd == CmdRead && !bytes.Equal(got, data) {
			t.Fatalf("%s: data mismatch", st.name)
		}
	}
}

func TestOversizedWrite(t *testing.T) {
	d := memdev.New(64<<20, memdev.Options{})
	s := newTestServer(t, Options{Exports: []Export{{Device: d}}, MaxPayload: 1 << 20})
	rc := pipeClient(t, s)
	rc.open("", false, false, false)
	big := make([]byte, 2<<20+1)
	// The payload is drained, the request refused, the next one served.
	go rc.send(requestHeader{cmd: CmdWrite, cookie: 1, length: uint64(len(big))}, big)
	if r := rc.readReply(0); r.errno != EINVAL || r.cookie != 1 {
		t.Fatalf("oversized write: %+v", r)
	}
	if errno, _, _ := rc.do(requestHeader{cmd: CmdRead, cookie: 2, length: 4096}, nil); errno != 0 {
		t.Fatalf("read after oversized write: %v", errno)
	}
	if errno, _, _ := rc.do(requestHeader{cmd: CmdRead, cookie: 3, length: 1<<20 + 1}, nil); errno != EINVAL {
		t.Fatalf("oversized read: %v", errno)
	}
	// A payload too large to drain ends the connection.
	var hb [sizeRequest]byte
	putRequest(hb[:], requestHeader{cmd: CmdWrite, cookie: 4, length: 1 << 31}, false)
	rc.write(hb[:])
	if !rc.closed() {
		t.Fatal("connection survived a 2 GiB write")
	}
}

func TestBadRequestMagicCloses(t *testing.T) {
	rc := pipeClient(t, newTestServer(t, Options{}))
	rc.open("", false, false, false)
	rc.write(make([]byte, sizeRequest))
	if !rc.closed() {
		t.Fatal("bad request magic did not close the connection")
	}
}

// TestOutOfOrder holds a READ in the device and checks a later request is
// answered first.
func TestOutOfOrder(t *testing.T) {
	g := &gateDevice{Device: memdev.New(1<<20, memdev.Options{}), entered: make(chan struct{}, 1), gate: make(chan struct{})}
	rc := pipeClient(t, newTestServer(t, Options{Exports: []Export{{Device: g}}}))
	rc.open("", false, false, false)
	rc.send(requestHeader{cmd: CmdRead, cookie: 1, length: 512}, nil)
	<-g.entered
	rc.send(requestHeader{cmd: CmdFlush, cookie: 2}, nil)
	if r := rc.readReply(0); r.cookie != 2 {
		t.Fatalf("first reply for cookie %d, want 2", r.cookie)
	}
	close(g.gate)
	if r := rc.readReply(512); r.cookie != 1 || r.errno != 0 {
		t.Fatalf("read reply %+v", r)
	}
}

// TestShutdown checks that Shutdown answers new requests with ESHUTDOWN,
// lets the request in flight finish and then closes the connection.
func TestShutdown(t *testing.T) {
	mem := memdev.New(1<<20, memdev.Options{})
	mem.WriteAt(pattern(512, 9), 0)
	g := &gateDevice{Device: mem, entered: make(chan struct{}, 1), gate: make(chan struct{})}
	s, addr := startServer(t, Options{Exports: []Export{{Device: g}}})
	rc := dialRaw(t, addr)
	rc.open("", false, false, false)
	rc.send(requestHeader{cmd: CmdRead, cookie: 1, length: 512}, nil)
	<-g.entered

	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(context.Background()) }()
	// Wait until the server refuses new work.
	for !s.shuttingDown.Load() {
		time.Sleep(time.Millisecond)
	}
	rc.send(requestHeader{cmd: CmdFlush, cookie: 2}, nil)
	if r := rc.readReply(0); r.cookie != 2 || r.errno != ESHUTDOWN {
		t.Fatalf("request during shutdown: %+v, want ESHUTDOWN", r)
	}
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v with a request in flight", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(g.gate)
	if r := rc.readReply(512); r.cookie != 1 || r.errno != 0 || !bytes.Equal(r.data, pattern(512, 9)) {
		t.Fatalf("in-flight read: %+v", r)
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if !rc.closed() {
		t.Fatal("connection still open after Shutdown")
	}
	// New connections are refused.
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Fatal("dial succeeded after Shutdown")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(l); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve after Shutdown: %v", err)
	}
}

// TestPipelinedLargeReads sends bursts of READs of every size around
// directData (large payloads leave from the request's buffer, small ones
// through the reply buffer) mixed with writes, without waiting for
// replies (the writes go to the upper half, which no READ of the burst
// touches: requests in flight are not ordered), and checks every reply's
// data in each reply mode: the replies
// queued in the buffer must go out whole and before a large payload's
// header, and no payload may be cut or interleaved.
func TestPipelinedLargeReads(t *testing.T) {
	const size = 4 << 20
	for _, mode := range []struct {
		name                 string
		structured, extended bool
	}{{"simple", false, false}, {"structured", true, false}, {"extended", true, true}} {
		t.Run(mode.name, func(t *testing.T) {
			d := memdev.New(size, memdev.Options{})
			model := pattern(size, 5)
			d.WriteAt(model, 0)
			_, addr := startServer(t, Options{Exports: []Export{{Device: d}}})
			rc := dialRaw(t, addr)
			rc.open("", mode.structured, false, mode.extended)
			lengths := []uint64{512, 4096, directData - 1, directData, directData + 4096, 256 << 10, 1 << 20}
			type want struct {
				off  uint64
				data []byte // nil for a write
				got  []byte
			}
			for round := range 4 {
				pending := map[uint64]*want{}
				cookie := uint64(round * 1000)
				for i := range 40 {
					cookie++
					n := lengths[(i+round)%len(lengths)]
					off := uint64(i*37*4096+round*512) % (size/2 - n)
					if i%5 == 4 { // a write among the reads
						var flags uint16
						if mode.extended {
							flags = cmdFlagPayloadLen
						}
						rc.send(requestHeader{cmd: CmdWrite, flags: flags, cookie: cookie, off: size/2 + off, length: n}, pattern(int(n), byte(i+round)))
						pending[cookie] = &want{off: size/2 + off}
						continue
					}
					rc.send(requestHeader{cmd: CmdRead, cookie: cookie, off: off, length: n}, nil)
					pending[cookie] = &want{off: off, data: append([]byte(nil), model[off:off+n]...), got: make([]byte, n)}
				}
				for len(pending) > 0 {
					r := rc.readReplyFor(func(cookie uint64) int {
						if w := pending[cookie]; w != nil && w.data != nil {
							return len(w.data)
						}
						return 0
					})
					w := pending[r.cookie]
					if w == nil || r.errno != 0 {
						t.Fatalf("reply for cookie %d: errno %v (pending %v)", r.cookie, r.errno, w != nil)
					}
					switch {
					case r.simple:
						copy(w.got, r.data)
					case r.typ == replyTypeOffsetData:
						copy(w.got[binary.BigEndian.Uint64(r.data)-w.off:], r.data[8:])
					}
					if !r.simple && r.flags&replyFlagDone == 0 {
						continue
					}
					if w.data != nil && !bytes.Equal(w.got, w.data) {
						t.Fatalf("READ cookie %d (%d bytes at %d): data differs", r.cookie, len(w.data), w.off)
					}
					delete(pending, r.cookie)
				}
			}
		})
	}
}
