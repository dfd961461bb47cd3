package e2e

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/extentd/extentd/nbdserver"
	"github.com/extentd/extentd/nbdserver/nbdtest"
)

// closeWait is how long a test waits for the server to drop a hostile
// connection.
const closeWait = 5 * time.Second

// seeded starts a server and writes a known pattern that every hostile
// test checks afterwards.
func seeded(t *testing.T, cfgs ...envConfig) (*env, []byte) {
	e := newEnv(t, cfgs...)
	return e, e.writeSeed(0x5e, 1<<20, 256<<10)
}

func TestHostileGarbageInsteadOfFlags(t *testing.T) {
	e, seed := seeded(t)
	h, err := nbdtest.NewHandshake(e.conn())
	if err != nil {
		t.Fatal(err)
	}
	if err := h.WriteRaw([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	if err := h.ExpectClosed(closeWait); err != nil {
		t.Fatalf("HTTP request as client flags: %v", err)
	}
	e.checkAlive(seed, 1<<20)
}

func TestHostileOptionMagic(t *testing.T) {
	e, seed := seeded(t)
	h := e.handshake()
	b := binary.BigEndian.AppendUint64(nil, 0x1122334455667788)
	b = binary.BigEndian.AppendUint32(b, nbdtest.OptList)
	b = binary.BigEndian.AppendUint32(b, 0)
	if err := h.WriteRaw(b); err != nil {
		t.Fatal(err)
	}
	if err := h.ExpectClosed(closeWait); err != nil {
		t.Fatalf("bad option magic: %v", err)
	}
	e.checkAlive(seed, 1<<20)
}

// TestHostileHugeOptionLength declares 4 GiB of option data and sends
// none: the server must neither allocate it nor wait for it forever.
func TestHostileHugeOptionLength(t *testing.T) {
	e, seed := seeded(t)
	for _, opt := range []uint32{nbdtest.OptGo, nbdtest.OptList, 77} {
		h := e.handshake()
		if err := h.SendOptionHeader(opt, 0xffffffff, []byte("abc")); err != nil {
			t.Fatal(err)
		}
		if err := h.ExpectClosed(closeWait); err != nil {
			t.Errorf("%s with 4 GiB length: %v", nbdtest.OptName(opt), err)
		}
	}
	e.checkAlive(seed, 1<<20)
}

// TestHostileOversizeOption sends a complete 100 KiB option (over the 64
// KiB MaxOptionLen): it must be refused with an error reply and the stream
// must stay in sync, or the connection dropped.
func TestHostileOversizeOption(t *testing.T) {
	e, seed := seeded(t)
	h := e.handshake()
	data := InfoOf("", 100<<10)
	if err := h.SendOption(nbdtest.OptInfo, data); err != nil {
		t.Fatal(err)
	}
	rep, err := h.ReadOptionReply()
	switch {
	case err != nil:
		if cerr := h.ExpectClosed(closeWait); cerr != nil {
			t.Fatalf("oversize option: read %v, then %v", err, cerr)
		}
	case !rep.IsError():
		t.Fatalf("oversize option answered with %s", nbdtest.RepName(rep.Type))
	default:
		t.Logf("oversize option refused with %s", nbdtest.RepName(rep.Type))
		if _, err := h.Go("", nil); err != nil {
			t.Fatalf("GO after refused oversize option: %v", err)
		}
	}
	e.checkAlive(seed, 1<<20)
}

// InfoOf returns an INFO payload whose export name is n bytes of 'a'
// (which exceeds the 4096-byte string limit when n is large).
func InfoOf(prefix string, n int) []byte {
	return nbdtest.InfoPayload(prefix+string(bytes.Repeat([]byte{'a'}, n)), nil)
}

// TestHostileLongExportName: names over the spec's 4096-byte limit are
// refused politely (or the connection dropped); the server survives.
func TestHostileLongExportName(t *testing.T) {
	e, seed := seeded(t)
	h := e.handshake()
	_, err := h.Option(nbdtest.OptGo, InfoOf("", 5000))
	var oe *nbdtest.OptionError
	if errors.As(err, &oe) {
		if _, err := h.Go("", nil); err != nil {
			t.Fatalf("GO after refused long name: %v", err)
		}
	} else if err == nil {
		t.Fatalf("GO with 5000-byte export name succeeded")
	}
	e.checkAlive(seed, 1<<20)
}

// TestHostileTooManyOptions: a client that never picks an export is cut
// off after Options.MaxOptions options (and every reply before is sane).
func TestHostileTooManyOptions(t *testing.T) {
	e, seed := seeded(t)
	h := e.handshake()
	n := 0
	for ; n < 200; n++ {
		if _, err := h.Option(77, nil); !errors.Is(err, nbdtest.RepErrUnsup) {
			t.Logf("option %d: %v", n+1, err)
			break
		}
	}
	if n >= 200 {
		t.Fatalf("server answered 200 options without choosing an export; want a cap (MaxOptions 32)")
	}
	if err := h.ExpectClosed(closeWait); err != nil {
		t.Fatalf("after %d options: %v", n, err)
	}
	e.checkAlive(seed, 1<<20)
}

// TestHostileHandshakeTimeout: a silent client is dropped after
// HandshakeTimeout, in the greeting and half way through an option.
func TestHostileHandshakeTimeout(t *testing.T) {
	e, seed := seeded(t, func(o *nbdserver.Options) { o.HandshakeTimeout = 300 * time.Millisecond })
	h, err := nbdtest.NewHandshake(e.conn())
	if err != nil {
		t.Fatal(err)
	}
	if err := h.ExpectClosed(closeWait); err != nil {
		t.Fatalf("silent client: %v", err)
	}
	h = e.handshake()
	if err := h.SendOptionHeader(nbdtest.OptGo, 100, []byte("partial")); err != nil {
		t.Fatal(err)
	}
	if err := h.ExpectClosed(closeWait); err != nil {
		t.Fatalf("stalled option: %v", err)
	}
	e.checkAlive(seed, 1<<20)
}

// TestHostileRequestMagic: a bad request magic in transmission ends the
// connection (the stream cannot be resynchronised).
func TestHostileRequestMagic(t *testing.T) {
	e, seed := seeded(t)
	for _, b := range [][]byte{
		bytes.Repeat([]byte{0xff}, 28),
		// Extended request magic without negotiating extended headers.
		binary.BigEndian.AppendUint32(nil, nbdtest.MagicExtRequest),
	} {
		r := e.raw("", false)
		if err := r.Write(append(b, make([]byte, 32)...)); err != nil {
			t.Fatal(err)
		}
		if err := r.ExpectClosed(closeWait); err != nil {
			t.Fatalf("bad request magic %x: %v", b[:4], err)
		}
	}
	e.checkAlive(seed, 1<<20)
}

// TestHostileTruncatedWrite: the client dies in the middle of a WRITE
// payload. The server drops the connection; nothing else changes.
func TestHostileTruncatedWrite(t *testing.T) {
	e, seed := seeded(t)
	r := e.raw("", true)
	if err := r.WriteRequest(nbdtest.Request{Type: nbdtest.CmdWrite, Cookie: 1, Offset: 8 << 20, Length: 64 << 10, Payload: make([]byte, 1000)}); err != nil {
		t.Fatal(err)
	}
	r.Close()
	// Half-closed variant: the server sees EOF mid-payload.
	r = e.raw("", false)
	if err := r.WriteRequest(nbdtest.Request{Type: nbdtest.CmdWrite, Cookie: 2, Offset: 8 << 20, Length: 64 << 10, Payload: make([]byte, 1000)}); err != nil {
		t.Fatal(err)
	}
	if uc, ok := r.Conn().(*net.TCPConn); ok {
		_ = uc.CloseWrite()
	}
	if err := r.ExpectClosed(closeWait); err != nil {
		t.Fatalf("truncated write: %v", err)
	}
	e.checkAlive(seed, 1<<20)
}

// TestHostileOversizeWrite sends a 48 MiB WRITE (over the 32 MiB max
// payload). The server answers with an error and carries on, or closes
// this connection; another connection is unaffected either way.
func TestHostileOversizeWrite(t *testing.T) {
	e, seed := seeded(t)
	other := e.dial(nbdtest.Options{})
	for _, structured := range []bool{false, true} {
		r := e.raw("", structured)
		const n = 48 << 20
		sent := make(chan error, 1)
		go func() {
			sent <- r.WriteRequest(nbdtest.Request{Type: nbdtest.CmdWrite, Cookie: 7, Offset: 0, Length: n, Payload: make([]byte, n)})
		}()
		_ = r.SetDeadline(time.Now().Add(20 * time.Second))
		reps, errno, err := r.ReadUntilDone(7, 0)
		if err != nil {
			// Closed: the write side fails or finishes; either is fine.
			<-sent
			t.Logf("structured=%v: connection closed after oversize write (%v)", structured, err)
		} else {
			<-sent
			if errno == 0 {
				t.Fatalf("structured=%v: 48 MiB write succeeded (%d replies); MaxPayload is 32 MiB", structured, len(reps))
			}
			t.Logf("structured=%v: oversize write refused with %v", structured, errno)
			// The stream must be in sync: a READ still works.
			if err := r.WriteRequest(nbdtest.Request{Type: nbdtest.CmdRead, Cookie: 8, Offset: 1 << 20, Length: 4096}); err != nil {
				t.Fatal(err)
			}
			if _, errno, err := r.ReadUntilDone(8, 4096); err != nil || errno != 0 {
				t.Fatalf("read after refused oversize write: %v %v", errno, err)
			}
		}
		r.Close()
	}
	got := make([]byte, len(seed))
	if _, err := other.ReadAt(got, 1<<20); err != nil || !bytes.Equal(got, seed) {
		t.Fatalf("other connection after oversize write: %v", err)
	}
	e.checkAlive(seed, 1<<20)
}

// TestHostileHugeLengthNoPayload declares a 4 GiB-1 WRITE and a 4 GiB-1
// READ and sends no payload: the server must not allocate or wait
// forever holding memory; it errors or drops the connection.
func TestHostileHugeLengthNoPayload(t *testing.T) {
	e, seed := seeded(t)
	for _, typ := range []uint16{nbdtest.CmdWrite, nbdtest.CmdRead} {
		r := e.raw("", true)
		if err := r.WriteRequest(nbdtest.Request{Type: typ, Cookie: 3, Length: 0xffffffff}); err != nil {
			t.Fatal(err)
		}
		_ = r.SetDeadline(time.Now().Add(closeWait))
		_, errno, err := r.ReadUntilDone(3, 0)
		if err == nil && errno == 0 {
			t.Fatalf("%s of 4 GiB-1 succeeded", nbdtest.CmdName(typ))
		}
		t.Logf("%s of 4 GiB-1: errno %v, err %v", nbdtest.CmdName(typ), errno, err)
		r.Close()
	}
	e.checkAlive(seed, 1<<20)
}

// TestHostileExtendedOversizePayload: with extended headers, a
// PAYLOAD_LEN beyond the maximum payload SHOULD make the server hang up.
func TestHostileExtendedOversizePayload(t *testing.T) {
	e, seed := seeded(t)
	r := e.rawAfter("", (*nbdtest.Handshake).ExtendedHeaders)
	if err := r.WriteRequest(nbdtest.Request{Type: nbdtest.CmdWrite, Flags: nbdtest.CmdFlagPayloadLen, Cookie: 1, Length: 1 << 40}); err != nil {
		t.Fatal(err)
	}
	_ = r.SetDeadline(time.Now().Add(closeWait))
	_, errno, err := r.ReadUntilDone(1, 0)
	if err == nil && errno == 0 {
		t.Fatal("1 TiB payload accepted")
	}
	e.checkAlive(seed, 1<<20)
}

// TestHostileCompactHeaderAfterExtended: once extended headers are
// negotiated a compact request is a framing error; the server drops the
// connection.
func TestHostileCompactHeaderAfterExtended(t *testing.T) {
	e, seed := seeded(t)
	r := e.rawAfter("", (*nbdtest.Handshake).ExtendedHeaders)
	if err := r.WriteRequestStyle(nbdtest.Request{Type: nbdtest.CmdRead, Cookie: 1, Length: 4096}, false); err != nil {
		t.Fatal(err)
	}
	_ = r.Write(make([]byte, 8)) // fill a 32-byte header's worth
	if err := r.ExpectClosed(closeWait); err != nil {
		t.Fatalf("compact request under extended headers: %v", err)
	}
	e.checkAlive(seed, 1<<20)
}

// TestHostileAbandonInFlight: a client queues many requests and vanishes
// without reading replies.
func TestHostileAbandonInFlight(t *testing.T) {
	e, seed := seeded(t)
	for i := 0; i < 4; i++ {
		r := e.raw("", i%2 == 0)
		var buf bytes.Buffer
		for j := 0; j < 256; j++ {
			req := nbdtest.Request{Type: nbdtest.CmdRead, Cookie: uint64(j), Offset: uint64(j) << 16, Length: 1 << 16}
			if j%2 == 1 {
				req = nbdtest.Request{Type: nbdtest.CmdWrite, Cookie: uint64(j), Offset: 32<<20 + uint64(j)<<12, Length: 4096, Payload: make([]byte, 4096)}
			}
			w := &rawBuf{&buf}
			_ = w.write(req)
		}
		_ = r.SetDeadline(time.Now().Add(closeWait))
		_ = r.Write(buf.Bytes())
		r.Close()
	}
	e.checkAlive(seed, 1<<20)
}

// rawBuf encodes requests into a buffer via a Raw over a pipe-less writer.
type rawBuf struct{ b *bytes.Buffer }

func (w *rawBuf) write(req nbdtest.Request) error {
	hdr := binary.BigEndian.AppendUint32(nil, nbdtest.MagicRequest)
	hdr = binary.BigEndian.AppendUint16(hdr, req.Flags)
	hdr = binary.BigEndian.AppendUint16(hdr, req.Type)
	hdr = binary.BigEndian.AppendUint64(hdr, req.Cookie)
	hdr = binary.BigEndian.AppendUint64(hdr, req.Offset)
	hdr = binary.BigEndian.AppendUint32(hdr, uint32(req.Length))
	w.b.Write(hdr)
	w.b.Write(req.Payload)
	return nil
}

// TestHostileConnectionFlood opens 200 connections that drop at every
// stage: right away, after the greeting, mid-option, after GO, and
// mid-request.
func TestHostileConnectionFlood(t *testing.T) {
	e, seed := seeded(t)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 50)
	for i := 0; i < 200; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := net.DialTimeout(e.Network, e.Addr, 5*time.Second)
			if err != nil {
				t.Errorf("dial %d: %v", i, err)
				return
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			stage := i % 5
			if stage == 0 {
				return
			}
			h, err := nbdtest.NewHandshake(c)
			if err != nil {
				t.Errorf("conn %d greeting: %v", i, err)
				return
			}
			if stage == 1 {
				return
			}
			_ = h.SendClientFlags(h.DefaultClientFlags())
			if stage == 2 {
				_ = h.SendOptionHeader(nbdtest.OptGo, 64, []byte("half"))
				return
			}
			if _, err := h.Go("", nil); err != nil {
				t.Errorf("conn %d GO: %v", i, err)
				return
			}
			if stage == 3 {
				return
			}
			r, _ := h.Raw()
			_ = r.WriteRequest(nbdtest.Request{Type: nbdtest.CmdWrite, Cookie: 1, Offset: 40 << 20, Length: 1 << 20, Payload: make([]byte, 512)})
		}()
	}
	wg.Wait()
	e.checkAlive(seed, 1<<20)
}

// TestHostileDiscWithPending: DISC right behind writes; the server must
// finish them before closing (spec: handle all outstanding requests).
func TestHostileDiscWithPending(t *testing.T) {
	e := newEnv(t)
	r := e.raw("", false)
	var buf bytes.Buffer
	w := &rawBuf{&buf}
	want := pattern(0x77, 64<<10)
	for j := 0; j < 16; j++ {
		_ = w.write(nbdtest.Request{Type: nbdtest.CmdWrite, Cookie: uint64(j + 1), Offset: uint64(j) * 64 << 10, Length: 64 << 10, Payload: want})
	}
	_ = w.write(nbdtest.Request{Type: nbdtest.CmdDisc, Cookie: 99})
	if err := r.Write(buf.Bytes()); err != nil {
		t.Fatal(err)
	}
	_ = r.SetDeadline(time.Now().Add(closeWait))
	replies := 0
	for {
		rep, err := r.ReadReply(0)
		if err != nil {
			if !errors.Is(err, io.EOF) {
				t.Logf("after DISC: %v", err)
			}
			break
		}
		if rep.Error != 0 {
			t.Fatalf("write cookie %d failed: %v", rep.Cookie, rep.Error)
		}
		replies++
	}
	t.Logf("%d of 16 write replies before close", replies)
	c := e.dial(nbdtest.Options{})
	got := make([]byte, len(want))
	for j := 0; j < 16; j++ {
		if _, err := c.ReadAt(got, int64(j)*64<<10); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("write %d before DISC was not applied (%v)", j, err)
		}
	}
}
